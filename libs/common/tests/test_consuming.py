"""The message-by-message consumer without a broker: how each outcome of a handler settles its delivery."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from papo_common.consuming import MessageConsumer
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.metrics import DEAD_LETTERS
from papo_common.resilience import FIRST_FAILED_HEADER, REDELIVERIES_HEADER
from papo_common.telemetry import setup_tracing, tracer
from papo_common.topology import ServiceQueue
from papo_testing.amqp import FakeChannel, delivered

QUEUE = ServiceQueue("consuming-test", binds=(), retry_delays_seconds=(1, 5))
NOW_S = 1_750_000_000.0
HORIZON_S = 60.0


class Order(BaseModel):
    n: int


class Recording(MessageConsumer[Order]):
    """Parks its redelivery copies in a list instead of a broker (or fails to, when `broker_down`)."""

    def __init__(self, handle: Any, **options: Any) -> None:
        super().__init__(
            "amqp://unused", QUEUE, handle, contract=Order, prefetch=8, redelivery_horizon_seconds=HORIZON_S,
            app_name="papo-test", clock=lambda: NOW_S, **options,
        )  # fmt: skip
        self.parked: list[tuple[str, aio_pika.Message]] = []
        self.broker_down = False

    async def _publish(self, message: aio_pika.Message, *, routing_key: str) -> None:
        if self.broker_down:
            raise ConnectionError("broker unreachable")
        self.parked.append((routing_key, message))


def failing(error: Exception | None) -> Any:
    async def handle(order: Order) -> None:
        if error is not None:
            raise error

    return handle


@pytest.fixture
def channel() -> FakeChannel:
    return FakeChannel([])


async def test_a_handled_message_is_acked(channel: FakeChannel) -> None:
    handled: list[int] = []

    async def handle(order: Order) -> None:
        handled.append(order.n)

    await Recording(handle).receive(delivered(channel, 1, b'{"n": 7}'))

    assert handled == [7]
    assert channel.settled == [("ack", 1, False)]


@pytest.mark.parametrize(
    ("payload", "error"),
    [(b'{"n": "seven"}', None), (b"not json", None), (b'{"n": 7}', PermanentError("never valid"))],
    ids=["not-the-contract", "not-json", "permanent-error"],
)
async def test_what_can_never_be_handled_is_dead_lettered_at_once(
    channel: FakeChannel, payload: bytes, error: Exception | None
) -> None:
    reason = "PermanentError" if error else "ValidationError"
    before = DEAD_LETTERS.labels(queue=QUEUE.name, reason=reason)._value.get()

    await Recording(failing(error)).receive(delivered(channel, 1, payload))

    assert channel.settled == [("reject", 1, False)]
    assert DEAD_LETTERS.labels(queue=QUEUE.name, reason=reason)._value.get() == before + 1


async def test_an_unexpected_failure_is_requeued(channel: FakeChannel) -> None:
    await Recording(failing(RuntimeError("a bug"))).receive(delivered(channel, 1, b'{"n": 7}'))

    assert channel.settled == [("nack", 1, True)]


async def test_an_outage_parks_a_copy_in_the_retry_queue_then_acks_the_original(channel: FakeChannel) -> None:
    consumer = Recording(failing(DependencyUnavailable("Redis is down")))
    delivery = delivered(
        channel, 1, b'{"n": 7}', {"traceparent": "00-abc-def-01"},
        message_id="M1", message_type="Order", content_type="application/json",
    )  # fmt: skip

    await consumer.receive(delivery)

    [(queue, copy)] = consumer.parked
    assert queue == QUEUE.retry_queue_name(1)
    assert copy.body == b'{"n": 7}'
    assert (copy.message_id, copy.type, copy.content_type) == ("M1", "Order", "application/json")
    assert copy.delivery_mode is aio_pika.DeliveryMode.PERSISTENT
    assert copy.headers == {
        "traceparent": "00-abc-def-01", FIRST_FAILED_HEADER: int(NOW_S * 1000), REDELIVERIES_HEADER: 1,
    }  # fmt: skip
    assert channel.settled == [("ack", 1, False)]


async def test_a_later_outage_waits_longer(channel: FakeChannel) -> None:
    consumer = Recording(failing(DependencyUnavailable("Redis is down")))
    headers = {FIRST_FAILED_HEADER: int(NOW_S * 1000) - 10_000, REDELIVERIES_HEADER: 1}

    await consumer.receive(delivered(channel, 1, b'{"n": 7}', headers))

    [(queue, copy)] = consumer.parked
    assert queue == QUEUE.retry_queue_name(5)
    assert copy.headers is not None and copy.headers[REDELIVERIES_HEADER] == 2


async def test_an_outage_past_the_horizon_dead_letters(channel: FakeChannel) -> None:
    consumer = Recording(failing(DependencyUnavailable("still down")))
    first_failed = int((NOW_S - HORIZON_S) * 1000)

    await consumer.receive(delivered(channel, 1, b'{"n": 7}', {FIRST_FAILED_HEADER: first_failed}))

    assert consumer.parked == []
    assert channel.settled == [("reject", 1, False)]


async def test_an_outage_that_cannot_be_parked_is_requeued_not_lost(channel: FakeChannel) -> None:
    consumer = Recording(failing(DependencyUnavailable("Redis is down")))
    consumer.broker_down = True

    await consumer.receive(delivered(channel, 1, b'{"n": 7}'))

    assert channel.settled == [("nack", 1, True)]


async def test_a_channel_gone_before_the_ack_costs_a_redelivery_not_a_crash(channel: FakeChannel) -> None:
    async def handle(order: Order) -> None:
        channel.closed = True  # the connection dropped while the handler ran

    await Recording(handle).receive(delivered(channel, 1, b'{"n": 7}'))

    assert channel.settled == []


async def test_stop_lets_the_message_being_handled_finish_first(channel: FakeChannel) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def handle(order: Order) -> None:
        started.set()
        await release.wait()

    consumer = Recording(handle)
    receiving = asyncio.create_task(consumer.receive(delivered(channel, 1, b'{"n": 7}')))
    await started.wait()
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0)
    assert not stopping.done(), "stop waits for the handler"

    release.set()
    await stopping
    assert receiving.done()
    assert channel.settled == [("ack", 1, False)]


async def test_stop_gives_up_on_a_handler_past_the_graceful_timeout(channel: FakeChannel) -> None:
    started = asyncio.Event()

    async def handle(order: Order) -> None:
        started.set()
        await asyncio.Event().wait()

    consumer = Recording(handle, graceful_timeout_s=0)
    receiving = asyncio.create_task(consumer.receive(delivered(channel, 1, b'{"n": 7}')))
    await started.wait()

    await consumer.stop()  # the connection closes: RabbitMQ takes the delivery back

    assert channel.settled == []
    receiving.cancel()


async def test_with_tracing_on_the_handler_runs_in_a_span_under_its_publishers(channel: FakeChannel) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("consuming-test", processor=SimpleSpanProcessor(exporter))
    seen: list[int] = []

    async def handle(order: Order) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    with tracer("publisher").start_as_current_span("publish") as publishing:
        carrier: dict[str, Any] = {}
        propagate.inject(carrier)
    await Recording(handle, tracing=True).receive(delivered(channel, 1, b'{"n": 7}', carrier))

    trace_id = publishing.get_span_context().trace_id
    assert seen == [trace_id]
    [span] = [span for span in exporter.get_finished_spans() if span.name == f"{QUEUE.name} process"]
    assert span.parent is not None and span.context.trace_id == trace_id
