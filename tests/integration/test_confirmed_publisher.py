"""`ConfirmedPublisher` puts on the wire what FastStream's publish does, counted in the same series, on the real
broker: the consumers cannot tell which path a message took."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker

from papo_common import broker as broker_module
from papo_common.broker import ConfirmedPublisher, make_broker, publish
from papo_common.metrics import REGISTRY
from papo_common.settings import PapoSettings
from papo_common.topology import EXCHANGE, RoutingKey, declare_topology
from papo_testing import infra
from papo_testing.factories import text_message

pytestmark = pytest.mark.integration


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """A vhost of these tests' own: what they publish lands in the services' queues too, and must not reach
    the next test file's consumers."""
    with infra.rabbitmq_vhost() as url:
        yield url


@pytest.fixture
async def broker(rabbitmq_url: str) -> AsyncIterator[RabbitBroker]:
    connected = make_broker(PapoSettings(rabbitmq_url=rabbitmq_url), app_id="papo-test")  # type: ignore[arg-type]
    async with connected:
        await declare_topology(connected)
        yield connected


@pytest.fixture
async def inbound_text(rabbitmq_url: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue of this test's own on `inbound.text`, beside the services' queues."""
    connection = await aio_pika.connect_robust(rabbitmq_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(f"test.confirmed-{uuid.uuid4().hex[:8]}", exclusive=True)
    await queue.bind(await channel.get_exchange(EXCHANGE.name), routing_key=RoutingKey.INBOUND_TEXT)
    try:
        yield queue
    finally:
        await connection.close()


async def received(
    queue: aio_pika.abc.AbstractQueue, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    messages: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with asyncio.timeout(10), queue.iterator() as deliveries:
        async for delivery in deliveries:
            await delivery.ack()
            messages.append(delivery)
            if len(messages) == count:
                return messages
    return messages


def published(outcome: str) -> float:
    labels = {
        "app_name": "papo-test",
        "broker": "rabbitmq",
        "destination": f"papo.{RoutingKey.INBOUND_TEXT}",
        "status": outcome,
    }
    return REGISTRY.get_sample_value("faststream_published_messages_total", labels) or 0.0


async def test_its_messages_carry_what_faststreams_publish_sets_and_are_counted_alike(
    broker: RabbitBroker, inbound_text: aio_pika.abc.AbstractQueue
) -> None:
    publisher = ConfirmedPublisher(broker)
    message = text_message("m-fast", "oi")
    before = published("success")

    await publisher(message)
    await publish(broker, message)  # FastStream's path, for comparison

    fast, framework = await received(inbound_text, 2)
    for attribute in ("content_type", "delivery_mode", "type"):
        assert getattr(fast, attribute) == getattr(framework, attribute), attribute
    assert fast.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert fast.app_id == "papo-test"
    assert fast.correlation_id and fast.timestamp is not None
    assert type(message).model_validate_json(fast.body) == message
    assert published("success") - before == 1


async def test_each_message_gets_ids_of_its_own_and_keeps_its_headers(
    broker: RabbitBroker, inbound_text: aio_pika.abc.AbstractQueue
) -> None:
    """aiormq matches a returned message to its publish by message id: two publishes never share one."""
    publisher = ConfirmedPublisher(broker)

    for index in range(3):
        await publisher(text_message(f"m-ids-{index}", "oi"), headers={"x-papo-attempt": index})

    messages = await received(inbound_text, 3)
    assert len({m.message_id for m in messages}) == 3
    assert len({m.correlation_id for m in messages}) == 3
    assert all(len(m.message_id or "") == 32 for m in messages), "the shape of FastStream's uuid4 ids"
    assert [m.headers["x-papo-attempt"] for m in messages] == [0, 1, 2]


async def test_a_message_no_queue_takes_raises_instead_of_vanishing(rabbitmq_url: str) -> None:
    """`mandatory` and the channel's `on_return_raises`: the exchange exists, nothing is bound to it."""
    bare = make_broker(PapoSettings(rabbitmq_url=rabbitmq_url), app_id="papo-test")  # type: ignore[arg-type]
    async with bare:
        await bare.declare_exchange(EXCHANGE)
        publisher = ConfirmedPublisher(bare)
        before = published("error")

        with pytest.raises(aio_pika.exceptions.PublishError):
            await publisher(text_message("m-unroutable", "oi"))

        assert published("error") - before == 1


async def test_publishes_that_start_together_look_the_exchange_up_once(
    broker: RabbitBroker, inbound_text: aio_pika.abc.AbstractQueue, rabbitmq_url: str
) -> None:
    """On a broker that has not declared the exchange itself (the topology came from another connection),
    the first flush pass's publishes all start before the lookup returns."""
    fresh = make_broker(PapoSettings(rabbitmq_url=rabbitmq_url), app_id="papo-test")  # type: ignore[arg-type]
    async with fresh:
        lookups = 0
        declare = fresh.declare_exchange

        async def counted(exchange: Any) -> Any:
            nonlocal lookups
            lookups += 1
            return await declare(exchange)

        fresh.declare_exchange = counted  # type: ignore[method-assign]
        publisher = ConfirmedPublisher(fresh)

        await asyncio.gather(*(publisher(text_message(f"m{i}", "oi")) for i in range(50)))

        assert len(await received(inbound_text, 50)) == 50
        assert lookups == 1


async def test_with_tracing_on_it_publishes_through_the_declared_publisher(
    broker: RabbitBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_module, "tracing_enabled", lambda: True)
    calls: list[Any] = []

    class Declared:
        async def publish(self, message: Any, headers: Any = None) -> None:
            calls.append(message)

    publisher = ConfirmedPublisher(broker, declared=Declared())  # type: ignore[arg-type]
    message = text_message("m-traced", "oi")

    await publisher(message)

    assert calls == [message], "FastStream's path carries the trace context and makes the span"


async def test_a_publish_on_a_broker_that_is_not_connected_fails(rabbitmq_url: str) -> None:
    """ingest answers 503 on it: the message was not taken."""
    idle = make_broker(PapoSettings(rabbitmq_url=rabbitmq_url), app_id="papo-test")  # type: ignore[arg-type]
    publisher = ConfirmedPublisher(idle)

    with pytest.raises(Exception):  # noqa: B017 - FastStream raises its own "not connected" error
        await publisher(text_message("m-lost", "oi"))
