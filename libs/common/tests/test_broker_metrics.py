"""papo's broker metrics keep FastStream's series names and labels, and make each label child once."""

from __future__ import annotations

import pytest
from faststream.rabbit import RabbitBroker, RabbitQueue, TestRabbitBroker

from papo_common.broker import BrokerMetrics
from papo_common.metrics import REGISTRY

QUEUE = RabbitQueue("metrics-test")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"app_name": "papo-test", "broker": "rabbitmq", **labels}) or 0.0


async def test_consumed_and_published_messages_are_counted_under_faststreams_names() -> None:
    metrics = BrokerMetrics("papo-test")
    broker = RabbitBroker(middlewares=(metrics,))

    @broker.subscriber(QUEUE)
    async def handle(body: dict[str, int]) -> None:
        if body["n"] < 0:
            raise ValueError("negative")

    handler = "default.metrics-test"
    received = sample("faststream_received_messages_total", handler=handler)
    acked = sample("faststream_received_processed_messages_total", handler=handler, status="acked")
    published = sample("faststream_published_messages_total", destination=handler, status="success")
    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish({"n": 1}, QUEUE)
        await test_broker.publish({"n": 2}, QUEUE)
        with pytest.raises(ValueError, match="negative"):
            await test_broker.publish({"n": -1}, QUEUE)

    assert sample("faststream_received_messages_total", handler=handler) - received == 3
    assert (
        sample("faststream_received_processed_messages_total", handler=handler, status="acked") - acked == 2
    )
    assert (
        sample(
            "faststream_received_processed_messages_exceptions_total",
            handler=handler,
            exception_type="ValueError",
        )
        >= 1
    )
    # the in-memory test broker hands the handler's error back to the publisher
    assert (
        sample("faststream_published_messages_total", destination=handler, status="success") - published == 2
    )
    assert sample("faststream_received_messages_in_process", handler=handler) == 0
    assert sample("faststream_received_processed_messages_duration_seconds_count", handler=handler) >= 3


def test_each_destinations_children_are_made_once() -> None:
    metrics = BrokerMetrics("papo-test")

    assert metrics.consumed("papo.inbound.text") is metrics.consumed("papo.inbound.text")
    assert metrics.published("papo.reply.ready") is metrics.published("papo.reply.ready")
    children = metrics.consumed("papo.inbound.text")
    assert children.status("acked") is children.status("acked")
