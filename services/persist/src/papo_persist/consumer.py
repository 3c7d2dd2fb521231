"""persist's consumer: takes deliveries off `papo.persist`, writes them in batches, and acknowledges a whole
batch with one `basic.ack(multiple=True)` once the transaction holding its rows has committed.

It consumes below FastStream, through `papo_common.consuming.QueueConsumer`: persist's whole work, COPY
included, is under 30 µs a row, and FastStream's per-message path alone cost about 150 µs a message and capped
one consumer at 3-5k messages/s (docs/performance.md). FastStream's Prometheus series are kept, counted per
batch.

- One loop gathers up to `batch_size` deliveries, or whatever arrived within `batch_wait_s` of the first,
  while the broker keeps up to `prefetch` unacknowledged (twice a batch lets the next gather during a commit).
- A body that is no contract of persist is rejected alone: dead-lettered at once.
- A batch the database refuses is retried message by message, so only the row that cannot be written is
  dead-lettered (`PermanentError`) or redelivered (any other error); its batch-mates are written and acked.
- While PostgreSQL is unreachable (`DependencyUnavailable`) the batch is retried under papo's one retry
  policy (`papo_common.resilience.retry_transient`, full jitter) for as long as it takes, unacknowledged:
  an outage costs latency, never a dead letter. On a stop during an outage the deliveries are left
  unacknowledged and RabbitMQ redelivers them.
- With tracing on, each message gets a span, a child of the one that published it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiormq.abc
from opentelemetry.trace import SpanKind
from pydantic import TypeAdapter, ValidationError

from papo_common.broker import BrokerMetrics, count_dead_letter
from papo_common.consuming import Delivery, QueueConsumer, published_context, short_error
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.resilience import retry_transient
from papo_common.telemetry import tracer, tracing_enabled
from papo_common.topology import ServiceQueue
from papo_persist.rows import PersistedContract, PersistedMessage

logger = logging.getLogger(__name__)

_CONTRACTS: TypeAdapter[PersistedContract] = TypeAdapter(PersistedMessage)


class BatchWriter(Protocol):
    async def write(self, contracts: Sequence[PersistedContract]) -> None:
        """Write every contract in one transaction, or none of them (raising)."""


@dataclass
class ConsumerStats:
    batches: int = 0
    """Transactions committed, message-by-message retries included."""
    items: int = 0
    """Messages whose rows committed and that were acknowledged."""
    fallbacks: int = 0
    """Batches the database refused, retried message by message."""
    outage_retries: int = 0
    """Writes retried because PostgreSQL was unavailable."""


@dataclass(frozen=True, slots=True)
class _Held:
    """A delivery with the channel it came on and its tag: it is settled on that channel, which may have
    closed since (a connection drop mid-batch), and settling must then cost a redelivery, not a crash."""

    delivery: Delivery
    channel: aiormq.abc.AbstractChannel
    tag: int


class BatchConsumer(QueueConsumer):
    """Consumes one queue in batches through `writer`; `start` after the topology is declared."""

    def __init__(
        self,
        rabbitmq_url: str,
        queue: ServiceQueue,
        writer: BatchWriter,
        *,
        batch_size: int,
        batch_wait_s: float,
        prefetch: int,
        max_backoff_s: float = 5.0,
        app_name: str = "papo-persist",
        tracing: bool | None = None,
    ) -> None:
        super().__init__(rabbitmq_url, queue, prefetch=prefetch)
        self._writer = writer
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._max_backoff_s = max_backoff_s
        self._inbox: asyncio.Queue[_Held | None] = asyncio.Queue()
        self._unsettled: dict[Any, set[int]] = {}
        """Delivery tags handed over and not yet settled, per channel: a multiple ack must not cover one."""
        self._loop_task: asyncio.Task[None] | None = None
        self._metrics = _BrokerMetrics(app_name)
        self._tracing = tracing_enabled() if tracing is None else tracing
        self.stats = ConsumerStats()

    async def start(self) -> None:
        """Start the batching loop, connect and start consuming."""
        self.begin()
        await super().start()

    def begin(self) -> None:
        """Start the batching loop alone; `start` does it, tests hand deliveries to `receive` themselves."""
        self._stopping.clear()
        self._loop_task = asyncio.create_task(self._run(), name="persist-consumer")

    async def stop(self) -> None:
        """Stop taking deliveries, write what was already gathered (unless PostgreSQL is away), then close:
        whatever is still unacknowledged goes back to the queue."""
        await self._cancel()
        self._inbox.put_nowait(None)
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        await self._close()

    async def receive(self, delivery: Delivery) -> None:
        """Take one delivery; it is settled once its batch is."""
        held = _Held(delivery, delivery.channel, int(getattr(delivery.delivery, "delivery_tag", 0) or 0))
        self._unsettled.setdefault(held.channel, set()).add(held.tag)
        self._inbox.put_nowait(held)

    async def _run(self) -> None:
        while batch := await self._gather():
            try:
                await self._handle(batch)
            except Exception:  # a bug must not kill the loop: what is still open is redelivered
                logger.exception("persist batch failed unexpectedly")
                await self._requeue_open(batch)

    async def _requeue_open(self, batch: list[_Held]) -> None:
        for held in batch:
            if held.tag in self._unsettled.get(held.channel, set()):
                await self._settle(
                    held.channel, [held], "error", held.channel.basic_nack(held.tag, requeue=True)
                )

    async def _gather(self) -> list[_Held]:
        first = await self._inbox.get()
        if first is None:  # stopping: write what is left, a batch at a time
            rest = self._take_waiting()
            if rest:
                self._inbox.put_nowait(None)
            return rest
        batch = [first]
        deadline = asyncio.get_running_loop().time() + self._batch_wait_s
        while len(batch) < self._batch_size:
            if self._inbox.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or self._stopping.is_set():
                    break
                try:
                    async with asyncio.timeout(remaining):
                        delivery = await self._inbox.get()
                except TimeoutError:
                    break
            else:
                delivery = self._inbox.get_nowait()
            if delivery is None:
                self._inbox.put_nowait(None)  # the stop: let the next gather see it too
                break
            batch.append(delivery)
        return batch

    def _take_waiting(self) -> list[_Held]:
        waiting: list[_Held] = []
        while len(waiting) < self._batch_size and not self._inbox.empty():
            if (delivery := self._inbox.get_nowait()) is not None:
                waiting.append(delivery)
        return waiting

    async def _handle(self, batch: list[_Held]) -> None:
        started = time.perf_counter()
        started_ns = time.time_ns()
        self._metrics.received(batch)
        valid: list[tuple[_Held, PersistedContract]] = []
        for held in batch:
            try:
                valid.append((held, _CONTRACTS.validate_json(held.delivery.body)))
            except ValidationError as error:
                await self._dead_letter(held, error)
        written, failed = await self._write(valid)
        for held, failure in failed:
            if isinstance(failure, PermanentError):
                await self._dead_letter(held, failure)
            else:
                logger.warning("persist write failed, redelivering", extra={"error": short_error(failure)})
                await self._settle(
                    held.channel, [held], "nacked", held.channel.basic_nack(held.tag, requeue=True)
                )
        await self._ack(written)
        self._metrics.processed(batch, time.perf_counter() - started)
        if self._tracing:
            _trace(batch, started_ns)

    async def _write(
        self, batch: list[tuple[_Held, PersistedContract]]
    ) -> tuple[list[_Held], list[tuple[_Held, Exception]]]:
        """The deliveries whose rows committed, and those that failed with their error; deliveries in
        neither were cut short by a stop during an outage and stay unacknowledged."""
        if not batch:
            return [], []
        try:
            await self._ride_out_outage([contract for _, contract in batch])
        except DependencyUnavailable:
            return [], []
        except Exception as error:
            if len(batch) == 1:
                return [], [(batch[0][0], error)]
            logger.warning(
                "persist batch refused, retrying message by message",
                extra={"size": len(batch), "error": short_error(error)},
            )
            self.stats.fallbacks += 1
            return await self._write_one_by_one(batch)
        self._committed(len(batch))
        return [held for held, _ in batch], []

    async def _write_one_by_one(
        self, batch: list[tuple[_Held, PersistedContract]]
    ) -> tuple[list[_Held], list[tuple[_Held, Exception]]]:
        written: list[_Held] = []
        failed: list[tuple[_Held, Exception]] = []
        for held, contract in batch:
            try:
                await self._ride_out_outage([contract])
            except DependencyUnavailable:
                break
            except Exception as error:
                failed.append((held, error))
            else:
                self._committed(1)
                written.append(held)
        return written, failed

    async def _ride_out_outage(self, contracts: list[PersistedContract]) -> None:
        """Write, retrying for as long as PostgreSQL is unavailable; on a stop, `DependencyUnavailable`."""
        retrying = retry_transient(
            attempts=None,
            base_wait=0.1,
            max_wait=self._max_backoff_s,
            transient=(DependencyUnavailable,),
            what="PostgreSQL write",
            sleep=self._pause,
            stop_when=self._stopping.is_set,
            on_retry=self._outage,
        )
        await retrying(self._writer.write, contracts)

    def _outage(self) -> None:
        self.stats.outage_retries += 1

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def _committed(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.items += size

    async def _ack(self, written: list[_Held]) -> None:
        if not written:
            return
        by_channel: dict[Any, list[_Held]] = {}
        for held in written:
            by_channel.setdefault(held.channel, []).append(held)
        for channel, group in by_channel.items():
            last = max(group, key=lambda held: held.tag)
            unsettled = self._unsettled.get(channel, set())
            covered = sum(1 for tag in unsettled if tag <= last.tag)
            if covered == len(group):  # nothing else below the last tag is still open
                await self._settle(channel, group, "acked", channel.basic_ack(last.tag, multiple=True))
            else:
                for held in group:
                    await self._settle(channel, [held], "acked", channel.basic_ack(held.tag))

    async def _dead_letter(self, held: _Held, error: Exception) -> None:
        count_dead_letter(self.queue.name, error)
        await self._settle(
            held.channel, [held], "rejected", held.channel.basic_reject(held.tag, requeue=False)
        )

    async def _settle(self, channel: Any, group: list[_Held], status: str, outcome: Awaitable[None]) -> None:
        self._unsettled.get(channel, set()).difference_update(held.tag for held in group)
        try:
            await outcome
        except Exception as error:  # the channel went away: RabbitMQ redelivers, and a rewrite is a no-op
            logger.warning("acknowledgement lost with its channel", extra={"error": short_error(error)})
            self._unsettled.pop(channel, None)
            return
        self._metrics.settled(group, status)


def _trace(batch: list[_Held], started_ns: int) -> None:
    """One span per message, a child of the span that published it, so each trace runs through persist."""
    spans = tracer(__name__)
    for delivery in (held.delivery for held in batch):
        span = spans.start_span(
            f"{delivery.routing_key} process",
            context=published_context(delivery),
            kind=SpanKind.CONSUMER,
            start_time=started_ns,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation": "process",
                "messaging.destination.name": str(delivery.routing_key),
                "messaging.batch.message_count": len(batch),
            },
        )
        span.end()


class _BrokerMetrics:
    """FastStream's `faststream_received_*` series, counted a batch at a time."""

    def __init__(self, app_name: str) -> None:
        self._metrics = BrokerMetrics(app_name)

    def received(self, batch: list[_Held]) -> None:
        for handler, deliveries in _by_handler(batch).items():
            children = self._metrics.consumed(handler)
            children.received.inc(len(deliveries))
            children.in_process.inc(len(deliveries))
            for held in deliveries:
                children.size.observe(len(held.delivery.body))

    def processed(self, batch: list[_Held], seconds: float) -> None:
        for handler, deliveries in _by_handler(batch).items():
            children = self._metrics.consumed(handler)
            children.in_process.dec(len(deliveries))
            for _ in deliveries:
                children.duration.observe(seconds)

    def settled(self, deliveries: list[_Held], status: str) -> None:
        for handler, grouped in _by_handler(deliveries).items():
            self._metrics.consumed(handler).status(status).inc(len(grouped))


def _by_handler(batch: list[_Held]) -> dict[str, list[_Held]]:
    grouped: dict[str, list[_Held]] = {}
    for held in batch:
        delivery = held.delivery
        grouped.setdefault(f"{delivery.exchange or 'default'}.{delivery.routing_key}", []).append(held)
    return grouped
