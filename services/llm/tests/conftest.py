"""Unit-test fixtures: a real local Redis under a key prefix of the test's own, contract builders, and a
tiny chat model for the local engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from papo_common.contracts import Burst, BurstItem, ConversationRef
from papo_common.redis import make_redis
from papo_testing.tiny_models import build_tiny_chat_model

# Tests never reach a model hub: every model they load is on this machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


_NETWORKED_FIXTURES = frozenset({"redis", "engine", "database_url", "ai"})
"""Fixtures that reach a real Redis, PostgreSQL or HTTP server: a test using one is an integration test."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _NETWORKED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def prefix() -> str:
    return f"papo-llm-unit-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    client = make_redis(os.environ.get("PAPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    yield client
    async for key in client.scan_iter(match=f"{prefix}:*"):
        await client.delete(key)
    await client.aclose()


CONVERSATION = ConversationRef(instance="acme", user_id="5511999990000@s.whatsapp.net")
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def item(message_id: str, text: str, *, seconds: int = 0, transcribed: bool = False) -> BurstItem:
    return BurstItem(
        message_id=message_id,
        kind="audio" if transcribed else "text",
        text=text,
        sent_at=T0 + timedelta(seconds=seconds),
        transcribed=transcribed,
    )


def burst(
    *items: BurstItem,
    seq: int = 1,
    conversation: ConversationRef = CONVERSATION,
    push_name: str | None = None,
) -> Burst:
    return Burst(
        burst_id=f"{conversation.key}:{seq}",
        conversation=conversation,
        chat_id=conversation.user_id,
        push_name=push_name,
        items=items,
        inbound_seq=seq,
        reason="quiet",
        first_received_at=items[0].sent_at,
        flushed_at=items[-1].sent_at + timedelta(seconds=3),
    )


@pytest.fixture
def make_item() -> Callable[..., BurstItem]:
    return item


@pytest.fixture
def make_burst() -> Callable[..., Burst]:
    return burst


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))


@pytest.fixture(scope="session")
def tiny_silent_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose every answer is the end-of-turn token: no text at all."""
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-silent-model"), first_token="<|im_end|>")
