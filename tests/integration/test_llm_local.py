"""llm with the local engine over the real RabbitMQ, Redis and PostgreSQL: a tiny random chat model, built
here, answers a burst; `/readyz` is "not ready" until the model has loaded."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from faststream.rabbit import RabbitBroker

from papo_common.broker import make_broker, publish
from papo_common.contracts import Burst, BurstItem, ConversationRef, Reply
from papo_common.topology import EXCHANGE, RoutingKey, declare_topology
from papo_llm.app import create_app
from papo_llm.settings import LlmSettings
from papo_testing.tiny_models import build_tiny_chat_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer random Llama whose greedy answer repeats "papo"."""
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))


@pytest.fixture
async def publisher(rabbitmq_url: str) -> AsyncIterator[RabbitBroker]:
    broker = make_broker(LlmSettings(rabbitmq_url=rabbitmq_url), app_id="papo-test-debounce")
    await broker.connect()
    await declare_topology(broker)
    yield broker
    await broker.stop()


@pytest.fixture
async def replies(rabbitmq_url: str, publisher: RabbitBroker) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect_robust(rabbitmq_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EXCHANGE.name, routing_key=RoutingKey.REPLY_READY)
    yield queue
    await connection.close()


def a_burst() -> Burst:
    who = ConversationRef(instance="acme", user_id=f"55119{uuid.uuid4().int % 10**8:08d}@s.whatsapp.net")
    item = BurstItem(message_id=f"local-{uuid.uuid4().hex[:8]}", kind="text", text="oi", sent_at=T0)
    return Burst(
        burst_id=f"{who.key}:1",
        conversation=who,
        chat_id=who.user_id,
        items=(item,),
        inbound_seq=1,
        reason="quiet",
        first_received_at=T0,
        flushed_at=T0 + timedelta(seconds=3),
    )


async def take_reply(queue: aio_pika.abc.AbstractQueue, timeout: float = 30.0) -> Reply:
    deadline = asyncio.get_running_loop().time() + timeout
    while (message := await queue.get(no_ack=True, fail=False)) is None:
        assert asyncio.get_running_loop().time() < deadline, "no reply in time"
        await asyncio.sleep(0.05)
    return Reply.model_validate_json(message.body)


async def test_a_burst_is_answered_by_the_local_model_once_it_has_loaded(
    rabbitmq_url: str,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tiny_model: Path,
    publisher: RabbitBroker,
    replies: aio_pika.abc.AbstractQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from papo_llm.engines import local

    loaded = threading.Event()
    real_load = local.load_model

    def held_load(*args: Any, **kwargs: Any) -> Any:
        loaded.wait(30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(local, "load_model", held_load)
    settings = LlmSettings(
        rabbitmq_url=rabbitmq_url,
        database_url=database_url,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        llm_engine="local",
        llm_local_model=str(tiny_model),
        llm_device="cpu",
        llm_temperature=0,
        llm_max_tokens=3,
        log_format="text",
    )
    burst = a_burst()
    app = create_app(settings)

    async with (
        app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://llm") as http,
    ):
        loading = await http.get("/readyz")
        await publish(publisher, burst)  # arrives while the model loads: it waits for it
        await asyncio.sleep(0.5)
        assert await replies.get(no_ack=True, fail=False) is None
        loaded.set()
        reply = await take_reply(replies)
        ready = await http.get("/readyz")

    assert loading.status_code == 503
    assert loading.json()["checks"]["model"] == f"error: ModelLoading: {tiny_model.name} is loading"
    assert ready.status_code == 200 and ready.json()["checks"]["model"] == "ok"
    assert reply.burst_id == burst.burst_id and reply.text == "papo papo papo"
    assert reply.model == tiny_model.name
    assert reply.usage.completion_tokens == 3 and reply.usage.prompt_tokens > 10
