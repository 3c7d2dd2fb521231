"""The `papo` command line: migrations on a fresh database, and the service registry."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg

from papo_common.cli import SERVICE_ORDER, installed_services
from papo_testing.infra import postgres_database


def test_every_service_is_registered() -> None:
    assert set(installed_services()) == set(SERVICE_ORDER)


def test_migrate_creates_the_schema_and_is_idempotent() -> None:
    with postgres_database(migrate=False) as url:
        env = {**os.environ, "PAPO_DATABASE_URL": url, "PAPO_LOG_FORMAT": "text"}
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-m", "papo_common.cli", "migrate"], env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            assert "migrated to head" in done.stdout

        async def tables() -> set[str]:
            connection = await asyncpg.connect(url.replace("+asyncpg", ""))
            try:
                rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            finally:
                await connection.close()
            return {row["tablename"] for row in rows}

        assert {"conversations", "messages", "alembic_version"} <= asyncio.run(tables())


def test_unknown_service_is_a_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "papo_common.cli", "run", "nope"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "not installed" in done.stderr
