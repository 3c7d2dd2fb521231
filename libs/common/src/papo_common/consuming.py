"""Consuming a service's queue below FastStream, on the AMQP channel itself, for the services whose own work
per message is smaller than FastStream's path to it.

Measured on one 2-CPU machine (docs/performance.md), FastStream's per-message path (context, logging,
dependency injection, the middleware chain) costs 150-200 µs of CPU a message, where debounce's whole work,
its one Lua call included, is about 250 µs and persist's under 30 µs a row. aio-pika's `IncomingMessage`,
which copies every property of every delivery into an object of its own, costs more again. So:

- `QueueConsumer` holds aio-pika's robust connection (it reconnects and restores the QoS) and takes
  deliveries from its underlying aiormq channel as they arrive, consuming again whenever the channel is
  reopened after a reconnect, and declaring its queue again when RabbitMQ cancelled the consumer because
  the queue was deleted.
- `MessageConsumer` handles one delivery at a time per task (aiormq runs each in its own, up to the
  prefetch) with the guarantees FastStream's stack gave every service (`papo_common.broker`): acked once
  the handler returned; a body that is no contract of the queue, or a `PermanentError`, dead-lettered at
  once; a dependency outage (`OUTAGES`) redelivered later through the retry queues; any other failure
  requeued. FastStream's `faststream_received_*` series keep their names and labels, and with tracing on
  each message is handled inside a span that is a child of the one that published it.

The FastStream subscriber stays declared on a specification broker, so that the service's AsyncAPI document
shows its queue and contracts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

import aio_pika
import aiormq.abc
import tenacity
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from faststream.prometheus.types import ProcessingStatus
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from pydantic import TypeAdapter, ValidationError

from papo_common.broker import BrokerMetrics, count_dead_letter
from papo_common.errors import PermanentError
from papo_common.resilience import OUTAGES, log_past_horizon, log_redelivery, redelivery_plan
from papo_common.telemetry import tracer, tracing_enabled
from papo_common.topology import ServiceQueue, declare_service_queue_on

logger = logging.getLogger(__name__)

Delivery = aiormq.abc.DeliveredMessage
T = TypeVar("T")


class QueueConsumer:
    """Takes the deliveries of one queue on a robust connection and hands each to `receive`; `start` once
    the topology is declared, `stop` to cancel the consumer and close the connection (RabbitMQ takes back
    whatever is still unacknowledged)."""

    def __init__(self, rabbitmq_url: str, queue: ServiceQueue, *, prefetch: int) -> None:
        self._url = rabbitmq_url
        self.queue = queue
        self._prefetch = prefetch
        self._stopping = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._consuming: tuple[aiormq.abc.AbstractChannel, str] | None = None
        """The underlying channel deliveries come on, and the consumer tag there."""
        self._resuming: asyncio.Task[None] | None = None
        """Declaring the queue again and consuming it, after RabbitMQ cancelled the consumer."""

    async def receive(self, delivery: Delivery) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Connect and start consuming."""
        self._stopping.clear()
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        await channel.declare_queue(self.queue.name, passive=True)
        self._channel = channel
        await self._consume()
        channel.reopen_callbacks.add(self._consume_again)

    async def _consume(self) -> None:
        if self._channel is None or self._stopping.is_set():
            return
        underlay = await self._channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._cancelled_by_broker)
        started = await underlay.basic_consume(self.queue.name, self.receive)
        self._consuming = (underlay, str(started.consumer_tag))

    async def _consume_again(self, channel: object) -> None:
        """The robust channel was reopened (a reconnect): the new underlying channel has no consumer yet."""
        self._consuming = None
        try:
            await self._consume()
        except Exception as error:  # the channel closed again at once; its next reopen consumes
            logger.warning(
                "could not consume on the reopened channel",
                extra={"queue": self.queue.name, "error": short_error(error)},
            )

    async def _cancelled_by_broker(self, frame: Any) -> None:
        """RabbitMQ cancelled the consumer (`basic.cancel`): its queue was deleted, by an operator or a reset.
        Nothing else would ever consume again, and the service would look healthy, so the queue is declared
        again, as the topology has it, and consumed, retried with backoff until it works."""
        consuming = self._consuming
        if self._stopping.is_set() or consuming is None or str(frame.consumer_tag) != consuming[1]:
            return
        self._consuming = None
        logger.error(
            "RabbitMQ cancelled the consumer (was the queue deleted?): declaring it again",
            extra={"queue": self.queue.name},
        )
        self._resuming = asyncio.create_task(self._declare_and_consume())

    async def _declare_and_consume(self) -> None:
        retrying = tenacity.AsyncRetrying(
            wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=30),
            retry=tenacity.retry_if_exception_type(Exception),
            before_sleep=self._log_not_yet,
        )
        async for attempt in retrying:
            with attempt:
                if self._stopping.is_set() or self._channel is None:
                    return
                await declare_service_queue_on(self._channel, self.queue)
                if self._consuming is None:  # a reconnect meanwhile consumed already
                    await self._consume()
        logger.info("consuming again", extra={"queue": self.queue.name})

    def _log_not_yet(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "could not consume the queue again yet",
            extra={"queue": self.queue.name, "error": short_error(error) if error else "unknown"},
        )

    async def _cancel(self) -> None:
        """Take no more deliveries."""
        self._stopping.set()
        if self._resuming is not None:
            self._resuming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._resuming
            self._resuming = None
        if self._consuming is not None:
            underlay, tag = self._consuming
            with contextlib.suppress(Exception):  # a connection already gone has no consumer to cancel
                await underlay.basic_cancel(tag)
            self._consuming = None

    async def _close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
            self._channel = None

    async def _publish(self, message: aio_pika.Message, *, routing_key: str) -> None:
        """Publish on the consuming channel (publisher confirms on): persistent, mandatory, confirmed."""
        if self._channel is None:
            raise ConnectionError("the consumer is not connected")
        await self._channel.default_exchange.publish(message, routing_key=routing_key, mandatory=True)


class MessageConsumer(QueueConsumer, Generic[T]):
    """Consumes one service queue message by message: each body parsed into `contract`, then `handle`d."""

    def __init__(
        self,
        rabbitmq_url: str,
        queue: ServiceQueue,
        handle: Callable[[T], Awaitable[object]],
        *,
        contract: Any,
        prefetch: int,
        redelivery_horizon_seconds: float,
        app_name: str,
        graceful_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        tracing: bool | None = None,
    ) -> None:
        super().__init__(rabbitmq_url, queue, prefetch=prefetch)
        self._handle = handle
        self._parse: Callable[[bytes], T] = TypeAdapter(contract).validate_json
        self._horizon_s = redelivery_horizon_seconds
        self._graceful_timeout_s = graceful_timeout_s
        self._clock = clock
        self._metrics = BrokerMetrics(app_name)
        self._tracing = tracing_enabled() if tracing is None else tracing
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def stop(self) -> None:
        """Take no more deliveries, let those being handled finish (for up to the graceful timeout), then
        close: whatever is still unacknowledged goes back to the queue."""
        await self._cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=self._graceful_timeout_s)
        await self._close()

    async def receive(self, delivery: Delivery) -> None:
        """Handle and settle one delivery (aiormq runs each in a task of its own)."""
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        frame = delivery.delivery
        tag = int(getattr(frame, "delivery_tag", 0) or 0)
        children = self._metrics.consumed(f"{delivery.exchange or 'default'}.{delivery.routing_key}")
        children.received.inc()
        children.size.observe(len(delivery.body))
        children.in_process.inc()
        started = time.perf_counter()
        try:
            status = await self._process(delivery, tag, children)
        finally:
            children.duration.observe(time.perf_counter() - started)
            children.in_process.dec()
            if task is not None:
                self._in_flight.discard(task)
        children.status(status).inc()

    async def _process(self, delivery: Delivery, tag: int, children: Any) -> str:
        try:
            message = self._parse(delivery.body)
            with self._span(delivery):
                await self._handle(message)
        except Exception as error:
            children.exception(type(error).__name__).inc()
            return await self._failed(delivery, tag, error)
        return await _settled(delivery.channel.basic_ack(tag), ProcessingStatus.acked)

    async def _failed(self, delivery: Delivery, tag: int, error: Exception) -> str:
        """Settle a delivery its handler failed on: what can never succeed is dead-lettered, an outage is
        redelivered later, anything else is requeued."""
        channel = delivery.channel
        if isinstance(error, ValidationError | PermanentError):
            count_dead_letter(self.queue.name, error, message_id=delivery.header.properties.message_id)
            return await _settled(channel.basic_reject(tag, requeue=False), ProcessingStatus.rejected)
        if isinstance(error, OUTAGES):
            return await self._redeliver_later(delivery, tag, error)
        logger.exception(
            "handling failed: requeued", extra={"queue": self.queue.name, "error": type(error).__name__}
        )
        return await _settled(channel.basic_nack(tag, requeue=True), ProcessingStatus.nacked)

    async def _redeliver_later(self, delivery: Delivery, tag: int, error: Exception) -> str:
        """A copy in the queue's next retry queue (confirmed), then an ack of the original; past the horizon,
        the dead-letter queue. Never a requeue at once, which would burn the queue's delivery limit."""
        properties = delivery.header.properties
        plan = redelivery_plan(
            self.queue, properties.headers or {}, now=self._clock(), horizon_seconds=self._horizon_s
        )
        if plan is None:
            log_past_horizon(self.queue.name, error)
            return await _settled(
                delivery.channel.basic_reject(tag, requeue=False), ProcessingStatus.rejected
            )
        copy = aio_pika.Message(
            delivery.body,
            headers=plan.headers,
            content_type=properties.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=properties.message_id,
            correlation_id=properties.correlation_id,
            type=properties.message_type,
            app_id=properties.app_id,
        )
        try:
            await self._publish(copy, routing_key=plan.queue)
        except Exception as failure:  # no copy: the original goes back, to be tried again at once
            logger.warning(
                "could not park a message for redelivery: requeued",
                extra={"queue": self.queue.name, "error": short_error(failure)},
            )
            return await _settled(delivery.channel.basic_nack(tag, requeue=True), ProcessingStatus.nacked)
        log_redelivery(self.queue.name, error, plan)
        return await _settled(delivery.channel.basic_ack(tag), ProcessingStatus.acked)

    @contextlib.contextmanager
    def _span(self, delivery: Delivery) -> Iterator[None]:
        """With tracing on, the handler runs inside a consumer span, a child of the publisher's; what it
        publishes then carries that trace on."""
        if not self._tracing:
            yield
            return
        with tracer(__name__).start_as_current_span(
            f"{self.queue.name} process",
            context=published_context(delivery),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation": "process",
                "messaging.destination.name": str(delivery.routing_key),
                "messaging.message.id": str(delivery.header.properties.message_id or ""),
            },
        ):
            yield


def published_context(delivery: Delivery) -> Context:
    """The trace context the publisher of `delivery` put in its headers."""
    carrier = {
        key: value.decode() if isinstance(value, bytes) else str(value)
        for key, value in (delivery.header.properties.headers or {}).items()
    }
    return propagate.extract(carrier)


async def _settled(outcome: Awaitable[None], status: ProcessingStatus) -> str:
    """Settle a delivery. When its channel is gone (a connection drop) RabbitMQ redelivers it, and every
    papo handler is idempotent: the loss is a repeat, never a message."""
    try:
        await outcome
    except Exception as error:
        logger.warning("acknowledgement lost with its channel", extra={"error": short_error(error)})
        return ProcessingStatus.error.value
    return status.value


def short_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]
