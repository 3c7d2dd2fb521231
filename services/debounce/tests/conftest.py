from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from papo_common.redis import make_redis
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = make_redis("redis://127.0.0.1:6379/0")
    yield client
    await client.aclose()


@pytest.fixture
def settings() -> DebounceSettings:
    """Short windows so the tests run in about a second each; the logic is the same at 15 s."""
    return DebounceSettings(
        redis_key_prefix=f"papo-test-{uuid.uuid4().hex[:10]}",
        debounce_seconds=0.4,
        debounce_max_wait_seconds=1.2,
        debounce_max_messages=5,
        debounce_transcription_timeout_seconds=1.0,
        debounce_claim_lease_seconds=0.5,
        debounce_poll_interval_ms=50,
    )


@pytest.fixture
async def store(redis: Redis, settings: DebounceSettings) -> AsyncIterator[DebounceStore]:
    yield DebounceStore(redis, settings)
    async for key in redis.scan_iter(match=f"{settings.redis_key_prefix}:*"):
        await redis.delete(key)
