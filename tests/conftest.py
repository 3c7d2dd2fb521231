"""Fixtures shared by the cross-service tests: isolated slices of the real RabbitMQ, Redis and PostgreSQL.

Each test session gets its own RabbitMQ virtual host and its own PostgreSQL database, and each test its own
Redis key prefix, so test runs (and tests) never see each other's messages, rows or keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from papo_testing import infra


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    with infra.rabbitmq_vhost() as url:
        yield url


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with infra.postgres_database() as url:
        yield url


@pytest.fixture
def redis_prefix() -> str:
    return f"papo-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_url() -> str:
    return os.environ.get("PAPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_client(redis_url: str, redis_prefix: str) -> AsyncIterator[object]:
    from papo_common.redis import make_redis

    client = make_redis(redis_url)
    yield client
    async for key in client.scan_iter(match=f"{redis_prefix}:*"):
        await client.delete(key)
    await client.aclose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Cross-service tests talk to the real broker, Redis and PostgreSQL: all of them are integration, or
    e2e and chaos where they run the services as processes. Contract tests read files only."""
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents or here / "contract" in item.path.parents:
            continue  # the hook sees every collected test; unit tests elsewhere keep their own marks
        path = str(item.path)
        if "/e2e/" in path:
            item.add_marker(pytest.mark.e2e)
        if not any(item.get_closest_marker(name) for name in ("e2e", "chaos")):
            item.add_marker(pytest.mark.integration)
