"""Isolated slices of the real RabbitMQ, Redis and PostgreSQL on the test machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator

RABBITMQ_HOST = os.environ.get("PAPO_TEST_RABBITMQ_HOST", "127.0.0.1:5672")
RABBITMQ_USER = os.environ.get("PAPO_TEST_RABBITMQ_USER", "guest")
POSTGRES_ADMIN_URL = os.environ.get("PAPO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    """Run `rabbitmqctl` and return what it printed. It runs in a session of its own, and on a timeout the
    whole session is killed: `rabbitmqctl` starts a shell, `su` and an Erlang VM, and an orphaned VM keeps
    one of the CLI's few distribution ports, so enough of them lock every later call out."""
    binary = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    process = subprocess.Popen(
        [binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, [binary, *args], out, err)
    return out


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh RabbitMQ virtual host; yields its AMQP URL and deletes it afterwards."""
    vhost = f"papo-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, RABBITMQ_USER, ".*", ".*", ".*")
    try:
        yield f"amqp://{RABBITMQ_USER}:{RABBITMQ_USER}@{RABBITMQ_HOST}/{vhost}"
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            rabbitmqctl("delete_vhost", vhost)


@contextlib.contextmanager
def redis_prefix(url: str = "redis://127.0.0.1:6379/0") -> Iterator[str]:
    """A fresh Redis key prefix; yields it and deletes every key under it afterwards (a benchmark leaves
    hundreds of thousands of dedupe marks with a two-day TTL, and every later SCAN walks them)."""
    prefix = f"papo-bench-{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        asyncio.run(_delete_prefixed(url, prefix))


async def _delete_prefixed(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await redis.unlink(*batch)
                batch = []
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()


async def admin_sql(statement: str) -> None:
    """Run one statement as the PostgreSQL superuser (databases, backends)."""
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def postgres_database(*, migrate: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL database with papo's migrations applied; yields its SQLAlchemy asyncpg URL."""
    name = f"papo_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"
    try:
        if migrate:
            from papo_common.db.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
