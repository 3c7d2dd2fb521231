"""Fixtures of deliver's unit tests: a fake Evolution API, an isolated Redis key space, and a reply."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, Reply
from papo_common.evolution import EvolutionClient, RetryPolicy
from papo_common.redis import make_redis
from papo_deliver.sending import TypingPace
from papo_testing.fake_evolution import FakeEvolution

INSTANCE = "acme"
API_KEY = "acme-key"
"""The fake Evolution's one instance and its key; tests spell them out as literals (conftest is not importable
under importlib mode)."""


def _make_reply(
    text: str = "Olá! Como posso ajudar?", *, chat_id: str = "5511987654321@s.whatsapp.net"
) -> Reply:
    return Reply(
        reply_id=f"{INSTANCE}:{chat_id}:{uuid.uuid4().hex[:8]}",
        burst_id="burst-1",
        conversation=ConversationRef(instance=INSTANCE, user_id=chat_id),
        chat_id=chat_id,
        text=text,
        in_reply_to=("ABCD1234",),
        model="test-model",
        created_at=datetime.now(UTC),
    )


@pytest.fixture
def make_reply() -> Callable[..., Reply]:
    """Builds a `Reply` to `5511987654321@s.whatsapp.net` (or `chat_id=`) through instance `acme`."""
    return _make_reply


@pytest.fixture
def policy() -> RetryPolicy:
    """Three attempts with millisecond backoff."""
    return RetryPolicy(attempts=3, base_seconds=0.01, max_seconds=0.02)


@pytest.fixture
def pace() -> TypingPace:
    """100 chars/s, between 50 and 300 ms."""
    return TypingPace(chars_per_second=100, min_ms=50, max_ms=300)


@pytest.fixture
async def evolution() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution(api_keys={INSTANCE: API_KEY}) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def client(evolution: FakeEvolution, http: httpx.AsyncClient) -> EvolutionClient:
    return EvolutionClient(http, evolution.url, SecretStr(API_KEY), timeout_seconds=2.0)


@pytest.fixture
def redis_prefix() -> str:
    return f"papo-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(redis_prefix: str) -> AsyncIterator[Redis]:
    client = make_redis(os.environ.get("PAPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    yield client
    async for key in client.scan_iter(match=f"{redis_prefix}:*"):
        await client.delete(key)
    await client.aclose()
