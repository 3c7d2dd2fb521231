from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from papo_common.redis import make_redis
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore
from papo_testing.factories import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = make_redis("redis://127.0.0.1:6379/0")
    yield client
    await client.aclose()


@pytest.fixture
def settings() -> DebounceSettings:
    """The production windows: the clock is injected, so no test waits for them."""
    return DebounceSettings(
        redis_key_prefix=f"papo-test-{uuid.uuid4().hex[:10]}",
        debounce_seconds=15,
        debounce_max_wait_seconds=60,
        debounce_max_messages=5,
        debounce_transcription_timeout_seconds=120,
        debounce_claim_lease_seconds=30,
    )


@pytest.fixture
async def store(redis: Redis, settings: DebounceSettings, clock: FakeClock) -> AsyncIterator[DebounceStore]:
    yield DebounceStore(redis, settings, clock=clock)
    async for key in redis.scan_iter(match=f"{settings.redis_key_prefix}:*"):
        await redis.delete(key)
