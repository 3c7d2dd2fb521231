"""debounce over the real broker and Redis: one burst per quiet period, surviving restarts and replicas."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from faststream.asgi import AsgiFastStream
from redis.asyncio import Redis

from papo_common.redis import ConversationKeys, make_redis
from papo_common.topology import LLM
from papo_debounce.app import create_app
from papo_debounce.settings import DebounceSettings
from papo_testing.factories import ANA, T0, audio_message, text_message, transcript
from papo_testing.rabbit import depth, depths, publish_all, take

AppFactory = Callable[..., AsgiFastStream]


async def until(check: Callable[[Redis], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait for a state of debounce's Redis, not for a while."""
    redis = make_redis("redis://127.0.0.1:6379/0")
    try:
        async with asyncio.timeout(timeout):
            while not await check(redis):
                await asyncio.sleep(0.02)
    finally:
        await redis.aclose()


def flushes_finished(prefix: str) -> Callable[[Redis], Awaitable[bool]]:
    """Nothing due, nothing claimed: every burst cut so far was published and completed."""

    async def check(redis: Redis) -> bool:
        due = await redis.zcard(f"{prefix}:debounce:due")
        return due == await redis.zcard(f"{prefix}:debounce:claims") == 0

    return check


def buffered(prefix: str, count: int) -> Callable[[Redis], Awaitable[bool]]:
    async def check(redis: Redis) -> bool:
        return int(await redis.hlen(ConversationKeys(prefix, ANA).scoped("debounce:items"))) == count

    return check


@pytest.fixture
def prefix() -> str:
    return f"papo-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def debounce(rabbitmq_url: str, prefix: str) -> AsyncIterator[AppFactory]:
    settings = DebounceSettings(
        rabbitmq_url=rabbitmq_url,  # type: ignore[arg-type]
        redis_key_prefix=prefix,
        debounce_seconds=0.5,
        debounce_max_wait_seconds=3,
        debounce_transcription_timeout_seconds=3,
        debounce_poll_interval_ms=50,
        log_format="text",
    )
    started: list[AsgiFastStream] = []

    def start(**overrides: Any) -> AsgiFastStream:
        app = create_app(settings.model_copy(update=overrides))
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()


async def test_burst_with_duplicate_and_reordering_reaches_llm_once(
    rabbitmq_url: str, debounce: AppFactory, prefix: str
) -> None:
    app = debounce()
    await app.start()
    await publish_all(
        rabbitmq_url,
        text_message("C", "quero encomendar", seconds=3),
        text_message("A", "oi", seconds=1),
        text_message("A", "oi", seconds=1),
        text_message("B", "tudo bem?", seconds=2),
    )
    [burst] = await take(rabbitmq_url, LLM.name, 1)
    assert [item["text"] for item in burst["items"]] == ["oi", "tudo bem?", "quero encomendar"]
    await until(flushes_finished(prefix))
    assert await depth(rabbitmq_url, LLM.name) == 0, "exactly one burst"
    assert all(count == 0 for name, count in (await depths(rabbitmq_url)).items() if name != "papo.persist")


async def test_messages_said_in_one_second_keep_the_order_ingest_received_them_in(
    rabbitmq_url: str, debounce: AppFactory, prefix: str
) -> None:
    # WhatsApp's timestamps have whole seconds; debounce's concurrent handlers and replicas may take the
    # messages of one second in any order (here: the reverse of how ingest received them)
    received = T0 + timedelta(seconds=2)
    said = [("A", "hi"), ("B", "do you deliver on sundays?"), ("C", "to the city centre")]
    messages = [
        text_message(mid, text, seconds=1, received_at=received + timedelta(milliseconds=100 * i))
        for i, (mid, text) in enumerate(said)
    ]
    app = debounce()
    await app.start()
    await publish_all(rabbitmq_url, *reversed(messages))
    [burst] = await take(rabbitmq_url, LLM.name, 1)
    assert [item["text"] for item in burst["items"]] == [text for _, text in said]


async def test_restart_inside_the_window_loses_nothing(
    rabbitmq_url: str, debounce: AppFactory, prefix: str
) -> None:
    # a window that outlasts a slow stop, so the first process cannot flush before it dies
    first = debounce(debounce_seconds=3)
    await first.start()
    await publish_all(
        rabbitmq_url, text_message("A", "oi", seconds=1), text_message("B", "tudo bem?", seconds=2)
    )
    await until(buffered(prefix, 2))
    await first.stop()  # the process dies mid-burst
    second = debounce(debounce_seconds=3)
    await second.start()
    await publish_all(rabbitmq_url, text_message("C", "e aí?", seconds=3))
    [burst] = await take(rabbitmq_url, LLM.name, 1)
    assert [item["message_id"] for item in burst["items"]] == ["A", "B", "C"]


async def test_two_replicas_flush_each_burst_once(
    rabbitmq_url: str, debounce: AppFactory, prefix: str
) -> None:
    replicas = [debounce(), debounce()]
    for replica in replicas:
        await replica.start()
    await publish_all(rabbitmq_url, *(text_message(f"m{i}", f"parte {i}", seconds=i) for i in range(6)))
    [burst] = await take(rabbitmq_url, LLM.name, 1)
    assert len(burst["items"]) == 6
    await until(flushes_finished(prefix))
    assert await depth(rabbitmq_url, LLM.name) == 0


async def test_voice_note_joins_its_burst_in_order(
    rabbitmq_url: str, debounce: AppFactory, prefix: str
) -> None:
    app = debounce()
    await app.start()
    await publish_all(
        rabbitmq_url,
        text_message("t1", "oi", seconds=1),
        audio_message("v1", seconds=2),
        text_message("t2", "e aí?", seconds=3),
    )
    await until(buffered(prefix, 3))
    await asyncio.sleep(1.0)  # past the quiet window: only the missing transcript holds the burst now
    assert await depth(rabbitmq_url, LLM.name) == 0, "held while the voice note is transcribed"
    await publish_all(rabbitmq_url, transcript("v1", "queria um bolo de cenoura", seconds=2))
    [burst] = await take(rabbitmq_url, LLM.name, 1)
    assert [item["text"] for item in burst["items"]] == ["oi", "queria um bolo de cenoura", "e aí?"]


async def test_message_that_breaks_its_contract_is_dead_lettered(
    rabbitmq_url: str, debounce: AppFactory
) -> None:
    import aio_pika

    app = debounce()
    await app.start()
    connection = await aio_pika.connect(rabbitmq_url)
    channel = await connection.channel()
    exchange = await channel.get_exchange("papo")
    await exchange.publish(aio_pika.Message(b'{"type": "inbound_message", "kind": "text"}'), "inbound.text")
    await connection.close()
    [dead] = await take(rabbitmq_url, "papo.debounce.dlq", 1)
    assert dead["kind"] == "text"
    assert await depth(rabbitmq_url, "papo.debounce") == 0
