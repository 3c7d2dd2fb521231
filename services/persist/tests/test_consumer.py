"""The batch consumer without a broker or a database: what it acknowledges, rejects and holds, and when."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.telemetry import setup_tracing, tracer
from papo_common.topology import PERSIST
from papo_persist.consumer import BatchConsumer
from papo_persist.rows import PersistedContract
from papo_testing.amqp import FakeChannel, delivered

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
REF = ConversationRef(instance="shop", user_id="5511@s.whatsapp.net")


def body(message_id: str, text: str = "oi") -> bytes:
    return InboundMessage(
        conversation=REF, message_id=message_id, chat_id=REF.user_id, kind="text", text=text,
        sent_at=NOW, received_at=NOW,
    ).model_dump_json().encode()  # fmt: skip


@dataclass
class FakeWriter:
    """Commits, or fails: `unavailable` times first, and always for texts in `refused`."""

    unavailable: int = 0
    refused: set[str] = field(default_factory=set)
    committed: list[list[str]] = field(default_factory=list)
    attempts: int = 0
    attempted: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, contracts: Sequence[PersistedContract]) -> None:
        self.attempts += 1
        self.attempted.set()
        if self.unavailable:
            self.unavailable -= 1
            raise DependencyUnavailable("PostgreSQL unreachable")
        if any(getattr(c, "text", None) in self.refused for c in contracts):
            raise PermanentError("PostgreSQL refused the row")
        self.committed.append([cast(InboundMessage, c).message_id for c in contracts])


class Harness:
    def __init__(self, writer: FakeWriter, batch_size: int, *, tracing: bool = False) -> None:
        self.writer = writer
        self.settled: list[tuple[str, int, bool]] = []
        self.consumer = BatchConsumer(
            "amqp://unused", PERSIST, writer, batch_size=batch_size, batch_wait_s=60, prefetch=batch_size * 2,
            max_backoff_s=0.001, tracing=tracing,
        )  # fmt: skip
        self.channel = FakeChannel(self.settled)

    async def deliver(self, tag: int, payload: bytes, headers: dict[str, Any] | None = None) -> None:
        await self.consumer.receive(delivered(self.channel, tag, payload, headers or {}))

    def reconnect(self) -> None:
        """The connection dropped: its channel is closed, and deliveries now come on a new one."""
        self.channel.closed = True
        self.channel = FakeChannel(self.settled)

    async def until_settled(self, count: int) -> None:
        while len(self.settled) < count:
            await asyncio.sleep(0)


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


@pytest.fixture
async def harness(writer: FakeWriter) -> AsyncIterator[Harness]:
    harness = Harness(writer, batch_size=3)
    harness.consumer.begin()
    yield harness
    await harness.consumer.stop()


async def test_a_full_batch_is_written_once_and_acked_with_one_multiple_ack(harness: Harness) -> None:
    for tag in (1, 2, 3):
        await harness.deliver(tag, body(f"M{tag}"))
    await harness.until_settled(1)

    assert harness.writer.committed == [["M1", "M2", "M3"]]
    assert harness.settled == [("ack", 3, True)]


async def test_nothing_is_acked_before_its_batch_commits(harness: Harness) -> None:
    await harness.deliver(1, body("M1"))
    await harness.deliver(2, body("M2"))
    for _ in range(20):
        await asyncio.sleep(0)

    assert harness.writer.attempts == 0, "the batch is still gathering (its wait is a minute)"
    assert harness.settled == []


async def test_a_body_that_is_no_contract_is_dead_lettered_alone(harness: Harness) -> None:
    await harness.deliver(1, body("M1"))
    await harness.deliver(2, b'{"type": "inbound_message", "version": 1}')
    await harness.deliver(3, body("M3"))
    await harness.until_settled(2)

    assert harness.settled == [("reject", 2, False), ("ack", 3, True)]
    assert harness.writer.committed == [["M1", "M3"]]


async def test_a_row_the_database_refuses_is_dead_lettered_and_its_batch_mates_are_written(
    harness: Harness, writer: FakeWriter
) -> None:
    writer.refused = {"poison"}
    await harness.deliver(1, body("M1"))
    await harness.deliver(2, body("BAD", text="poison"))
    await harness.deliver(3, body("M3"))
    await harness.until_settled(2)

    assert writer.committed == [["M1"], ["M3"]]
    assert harness.settled == [("reject", 2, False), ("ack", 3, True)]
    assert harness.consumer.stats.fallbacks == 1


async def test_an_outage_is_ridden_out_without_nacking_or_dead_lettering(
    harness: Harness, writer: FakeWriter
) -> None:
    writer.unavailable = 6
    for tag in (1, 2, 3):
        await harness.deliver(tag, body(f"M{tag}"))
    await harness.until_settled(1)

    assert writer.attempts == 7
    assert harness.consumer.stats.outage_retries == 6
    assert harness.settled == [("ack", 3, True)]


async def test_a_stop_during_an_outage_leaves_the_batch_unacknowledged_for_redelivery(
    writer: FakeWriter,
) -> None:
    writer.unavailable = 10**9
    harness = Harness(writer, batch_size=2)
    harness.consumer.begin()
    await harness.deliver(1, body("M1"))
    await harness.deliver(2, body("M2"))
    await writer.attempted.wait()

    await harness.consumer.stop()

    assert harness.settled == []
    assert writer.committed == []


async def test_a_multiple_ack_never_covers_an_earlier_delivery_still_open(harness: Harness) -> None:
    await harness.deliver(2, body("M2"))
    await harness.deliver(3, body("M3"))
    await harness.deliver(4, body("M4"))  # the batch is full: 2, 3, 4
    await harness.deliver(1, body("M1"))  # a lower tag, not in it
    await harness.until_settled(3)

    assert harness.settled[:3] == [("ack", 2, False), ("ack", 3, False), ("ack", 4, False)]


async def test_a_stop_writes_what_was_gathered_before_closing(writer: FakeWriter) -> None:
    harness = Harness(writer, batch_size=10)
    harness.consumer.begin()
    await harness.deliver(1, body("M1"))
    await harness.deliver(2, body("M2"))

    await harness.consumer.stop()

    assert writer.committed == [["M1", "M2"]]
    assert harness.settled == [("ack", 2, True)]


async def test_with_tracing_on_each_message_gets_a_span_under_its_publishers(writer: FakeWriter) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("persist-test", processor=SimpleSpanProcessor(exporter))
    harness = Harness(writer, batch_size=2, tracing=True)
    harness.consumer.begin()
    with tracer("publisher").start_as_current_span("publish") as publishing:
        carrier: dict[str, Any] = {}
        propagate.inject(carrier)
    await harness.deliver(1, body("M1"), headers=carrier)
    await harness.deliver(2, body("M2"))
    await harness.until_settled(1)
    await harness.consumer.stop()

    spans = [span for span in exporter.get_finished_spans() if span.name == "inbound.text process"]
    assert len(spans) == 2
    [child] = [span for span in spans if span.parent is not None]
    assert child.context.trace_id == publishing.get_span_context().trace_id


async def test_a_bug_in_a_batch_requeues_what_is_still_open_and_the_loop_goes_on(
    harness: Harness, writer: FakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(contracts: Sequence[PersistedContract]) -> None:
        raise AssertionError("a bug outside the writer")

    monkeypatch.setattr(harness.consumer, "_write", broken)
    for tag in (1, 2, 3):
        await harness.deliver(tag, body(f"M{tag}"))
    await harness.until_settled(3)
    monkeypatch.undo()
    for tag in (4, 5, 6):
        await harness.deliver(tag, body(f"M{tag}"))
    await harness.until_settled(4)

    assert harness.settled == [("nack", 1, True), ("nack", 2, True), ("nack", 3, True), ("ack", 6, True)]
    assert writer.committed == [["M4", "M5", "M6"]]


@dataclass
class HeldWriter(FakeWriter):
    """Commits only once `release` is set, so a test can act while a batch is being written."""

    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, contracts: Sequence[PersistedContract]) -> None:
        self.attempted.set()
        await self.release.wait()
        await super().write(contracts)


async def test_a_channel_lost_while_its_batch_is_written_costs_a_redelivery_and_the_loop_goes_on() -> None:
    writer = HeldWriter()
    harness = Harness(writer, batch_size=3)
    harness.consumer.begin()
    for tag in (1, 2, 3):
        await harness.deliver(tag, body(f"M{tag}"))
    await writer.attempted.wait()

    harness.reconnect()  # RabbitMQ takes 1-3 back and will redeliver them on the new channel
    writer.release.set()
    for tag in (1, 2, 3):
        await harness.deliver(tag, body(f"M{tag}"))
    await harness.until_settled(1)
    await harness.consumer.stop()

    assert writer.committed == [["M1", "M2", "M3"], ["M1", "M2", "M3"]], (
        "the rewrite is a no-op in PostgreSQL"
    )
    assert harness.settled == [("ack", 3, True)], "only the new channel's deliveries could be acked"
