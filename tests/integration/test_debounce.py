"""debounce over the real broker and Redis: one burst per quiet period, surviving restarts and replicas."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from faststream.asgi import AsgiFastStream

from papo_common.topology import LLM
from papo_debounce.app import create_app
from papo_debounce.settings import DebounceSettings
from papo_testing.factories import audio_message, text_message, transcript
from papo_testing.rabbit import depth, depths, publish_all, take

AppFactory = Callable[[], AsgiFastStream]


@pytest.fixture
async def debounce(rabbitmq_url: str) -> AsyncIterator[AppFactory]:
    settings = DebounceSettings(
        rabbitmq_url=rabbitmq_url,  # type: ignore[arg-type]
        redis_key_prefix=f"papo-test-{uuid.uuid4().hex[:10]}",
        debounce_seconds=0.5,
        debounce_max_wait_seconds=3,
        debounce_transcription_timeout_seconds=3,
        debounce_poll_interval_ms=50,
        log_format="text",
    )
    started: list[AsgiFastStream] = []

    def start() -> AsgiFastStream:
        app = create_app(settings)
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()


async def test_burst_with_duplicate_and_reordering_reaches_llm_once(
    rabbitmq_url: str, debounce: AppFactory
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
    await asyncio.sleep(1.0)
    assert await depth(rabbitmq_url, LLM.name) == 0, "exactly one burst"
    assert all(count == 0 for name, count in (await depths(rabbitmq_url)).items() if name != "papo.persist")


async def test_restart_inside_the_window_loses_nothing(rabbitmq_url: str, debounce: AppFactory) -> None:
    first = debounce()
    await first.start()
    await publish_all(
        rabbitmq_url, text_message("A", "oi", seconds=1), text_message("B", "tudo bem?", seconds=2)
    )
    await asyncio.sleep(0.2)
    await first.stop()  # the process dies mid-burst
    second = debounce()
    await second.start()
    await publish_all(rabbitmq_url, text_message("C", "e aí?", seconds=3))
    [burst] = await take(rabbitmq_url, LLM.name, 1)
    assert [item["message_id"] for item in burst["items"]] == ["A", "B", "C"]


async def test_two_replicas_flush_each_burst_once(rabbitmq_url: str, debounce: AppFactory) -> None:
    replicas = [debounce(), debounce()]
    for replica in replicas:
        await replica.start()
    await publish_all(rabbitmq_url, *(text_message(f"m{i}", f"parte {i}", seconds=i) for i in range(6)))
    [burst] = await take(rabbitmq_url, LLM.name, 1)
    assert len(burst["items"]) == 6
    await asyncio.sleep(1.0)
    assert await depth(rabbitmq_url, LLM.name) == 0


async def test_voice_note_joins_its_burst_in_order(rabbitmq_url: str, debounce: AppFactory) -> None:
    app = debounce()
    await app.start()
    await publish_all(
        rabbitmq_url,
        text_message("t1", "oi", seconds=1),
        audio_message("v1", seconds=2),
        text_message("t2", "e aí?", seconds=3),
    )
    await asyncio.sleep(1.0)
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
