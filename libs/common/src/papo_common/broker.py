"""Construction of the RabbitMQ broker every service uses, and the one way contracts are published."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import aio_pika
import aiormq
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.exceptions import IgnoredException, RejectMessage
from faststream.message import SourceType
from faststream.prometheus.consts import (
    PROCESSING_STATUS_BY_ACK_STATUS,
    PROCESSING_STATUS_BY_HANDLER_EXCEPTION_MAP,
)
from faststream.prometheus.container import MetricsContainer
from faststream.prometheus.types import ProcessingStatus
from faststream.rabbit import Channel, RabbitBroker
from faststream.rabbit.publisher import RabbitPublisher
from faststream.rabbit.subscriber import RabbitSubscriber
from faststream.response import PublishType
from pydantic import TypeAdapter, ValidationError

from papo_common.contracts import Contract
from papo_common.errors import PermanentError
from papo_common.metrics import DEAD_LETTERS, REGISTRY
from papo_common.resilience import redelivery_middleware
from papo_common.telemetry import tracing_enabled
from papo_common.topology import EXCHANGE, SERVICE_QUEUES, ServiceQueue, routing_key_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from faststream._internal.context import ContextRepo
    from faststream.message import StreamMessage

    from papo_common.settings import PapoSettings

logger = logging.getLogger(__name__)


class PoisonMessageMiddleware(BaseMiddleware):
    """Sends a message that can never be processed straight to the dead-letter queue.

    A body that does not validate against its contract, or a handler's `PermanentError`, is rejected without
    requeue; everything else propagates and is redelivered until the queue's delivery limit dead-letters it.
    """

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            return await call_next(msg)
        except (ValidationError, PermanentError) as error:
            queue = getattr(msg.raw_message, "routing_key", None) or "unknown"
            source = self.context.get("handler_") or None
            queue_name = getattr(getattr(source, "queue", None), "name", queue)
            count_dead_letter(queue_name, error, message_id=msg.message_id)
            raise RejectMessage from error


class _Children:
    """The label children of one consumed or published destination, made on first use and kept."""

    def __init__(self, container: MetricsContainer, app_name: str, name: str, *, published: bool) -> None:
        self._container = container
        self._labels = {
            "app_name": app_name,
            "broker": "rabbitmq",
            ("destination" if published else "handler"): name,
        }
        self._by_status: dict[str, Any] = {}
        self._by_exception: dict[str, Any] = {}
        if published:
            self.total = container.published_messages_total
            self.duration = container.published_messages_duration_seconds.labels(**self._labels)
            self._exceptions = container.published_messages_exceptions_total
        else:
            self.total = container.received_processed_messages_total
            self.received = container.received_messages_total.labels(**self._labels)
            self.size = container.received_messages_size_bytes.labels(**self._labels)
            self.in_process = container.received_messages_in_process.labels(**self._labels)
            self.duration = container.received_processed_messages_duration_seconds.labels(**self._labels)
            self._exceptions = container.received_processed_messages_exceptions_total

    def status(self, status: str) -> Any:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.total.labels(**self._labels, status=status)
        return child

    def exception(self, name: str) -> Any:
        child = self._by_exception.get(name)
        if child is None:
            child = self._by_exception[name] = self._exceptions.labels(**self._labels, exception_type=name)
        return child


class BrokerMetrics:
    """FastStream's Prometheus series (`faststream_received_*`, `faststream_published_*`), with the names and
    labels of its `RabbitPrometheusMiddleware`, which the dashboards and alerts query.

    FastStream's middleware builds six label children per message; this one makes each once per destination
    and keeps it. Pass the instance as a broker middleware.
    """

    def __init__(self, app_name: str) -> None:
        self._container = MetricsContainer(REGISTRY, custom_label_names=())
        self._app_name = app_name
        self._consumed: dict[str, _Children] = {}
        self._published: dict[str, _Children] = {}

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> _BrokerMetricsScope:
        return _BrokerMetricsScope(msg, context=context, metrics=self)

    def consumed(self, handler: str) -> _Children:
        """The children of one consumed destination (`<exchange>.<routing key>`)."""
        children = self._consumed.get(handler)
        if children is None:
            children = _Children(self._container, self._app_name, handler, published=False)
            self._consumed[handler] = children
        return children

    def published(self, destination: str) -> _Children:
        """The children of one publish destination (`<exchange>.<routing key>`)."""
        children = self._published.get(destination)
        if children is None:
            children = _Children(self._container, self._app_name, destination, published=True)
            self._published[destination] = children
        return children


class _BrokerMetricsScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: ContextRepo, metrics: BrokerMetrics) -> None:
        super().__init__(msg, context=context)
        self._metrics = metrics

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        if msg.source_type is SourceType.RESPONSE:
            return await call_next(msg)
        raw = msg.raw_message
        children = self._metrics.consumed(f"{raw.exchange or 'default'}.{raw.routing_key}")
        children.received.inc()
        children.size.observe(len(msg.body))
        children.in_process.inc()
        error: Exception | None = None
        started = time.perf_counter()
        try:
            return await call_next(msg)
        except Exception as failure:
            error = failure
            if not isinstance(failure, IgnoredException):
                children.exception(type(failure).__name__).inc()
            raise
        finally:
            children.duration.observe(time.perf_counter() - started)
            children.in_process.dec()
            status = ProcessingStatus.acked
            if msg.committed or error:
                status = (
                    PROCESSING_STATUS_BY_ACK_STATUS.get(msg.committed)  # type: ignore[arg-type]
                    or PROCESSING_STATUS_BY_HANDLER_EXCEPTION_MAP.get(type(error))
                    or ProcessingStatus.error
                )
            children.status(status.value).inc()

    async def publish_scope(self, call_next: Callable[[Any], Awaitable[Any]], cmd: Any) -> Any:
        if cmd.publish_type is PublishType.REPLY:
            return await call_next(cmd)
        children = self._metrics.published(f"{cmd.exchange.name or 'default'}.{cmd.destination}")
        error: Exception | None = None
        started = time.perf_counter()
        try:
            return await call_next(cmd)
        except Exception as failure:
            error = failure
            children.exception(type(failure).__name__).inc()
            raise
        finally:
            children.duration.observe(time.perf_counter() - started)
            children.status("error" if error else "success").inc(len(cmd.batch_bodies))


def count_dead_letter(queue: str, error: Exception, *, message_id: str | None = None) -> None:
    """Count and log a message about to be dead-lettered for `error` (every consumer's one way to say it)."""
    DEAD_LETTERS.labels(queue=queue, reason=type(error).__name__).inc()
    extra: dict[str, Any] = {"queue": queue, "reason": dead_letter_reason(error)}
    if message_id is not None:
        extra["message_id"] = message_id
    logger.warning("dead-lettering message", extra=extra)


def dead_letter_reason(error: Exception) -> str:
    """Why a message is dead-lettered, short and without its content: a validation error names the fields
    and what is wrong with them, never their values."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
    return str(error)[:500]


def make_broker(
    settings: PapoSettings,
    *,
    middlewares: Sequence[Any] = (),
    app_id: str = "papo",
) -> RabbitBroker:
    """A broker with publisher confirms, unroutable-publish errors, a bounded prefetch, poison handling, and
    redelivery with backoff when a dependency is down."""
    broker = RabbitBroker(
        settings.rabbitmq_url.get_secret_value(),
        default_channel=Channel(
            prefetch_count=settings.prefetch,
            publisher_confirms=True,
            on_return_raises=True,
        ),
        app_id=app_id,
        middlewares=(*middlewares, PoisonMessageMiddleware),
        graceful_timeout=30.0,
        log_level=logging.DEBUG,
    )
    broker.add_middleware(
        redelivery_middleware(broker, SERVICE_QUEUES, horizon_seconds=settings.redelivery_horizon_seconds)
    )
    return broker


def subscribe(
    broker: RabbitBroker, service_queue: ServiceQueue, *, contract: Any = None, **kwargs: Any
) -> RabbitSubscriber:
    """Subscribe to a service's own queue. Failures are nacked and redelivered (bounded by the queue's
    delivery limit); bindings are made by `declare_topology`, not here.

    With `contract` (the handler's body annotation), bodies are decoded by `contract_decoder`."""
    if contract is not None:
        kwargs["decoder"] = contract_decoder(contract)
    return broker.subscriber(service_queue.queue, ack_policy=AckPolicy.NACK_ON_ERROR, **kwargs)


def contract_decoder(contract: Any) -> Callable[[StreamMessage[Any]], Awaitable[Any]]:
    """A FastStream decoder that parses a body straight into its contract with pydantic's JSON parser.

    FastStream's own decoder parses the JSON into dicts, and fast_depends then validates those dicts into the
    handler's annotation: two passes over every message. Given an instance, fast_depends only checks its
    type, and the handler keeps its annotation, so the AsyncAPI document keeps the payload's schema. A body
    that does not validate raises `ValidationError` inside the middlewares, which dead-letter it as before.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(contract)

    async def decode(message: StreamMessage[Any]) -> Any:
        return adapter.validate_json(message.body)

    return decode


async def publish(broker: RabbitBroker, message: Contract, *, headers: dict[str, Any] | None = None) -> None:
    """Publish a contract persistently and wait for the broker's confirm.

    `mandatory` plus the channel's `on_return_raises` turn an unroutable message into an error instead of a
    silent drop.
    """
    await broker.publish(
        message,
        exchange=EXCHANGE,
        routing_key=routing_key_for(message),
        persist=True,
        mandatory=True,
        content_type="application/json",
        message_type=message.__class__.__name__,
        headers=headers,
    )


class ConfirmedPublisher:
    """`publish`, for a hot path: the same persistent, mandatory, confirmed message on the broker's own
    confirmed channel, handed to aiormq directly, and counted in the same `faststream_published_*` series.

    FastStream's publish builds its middleware chain and encodes the message anew on every call: about
    100 µs of CPU per publish, a tenth of ingest's whole cost of a webhook (docs/performance.md). aio-pika's
    `Message` then costs another 15–20 µs to build its properties, and a `uuid4` per id 3 µs: the properties
    are built here as aiormq takes them, with ids from a random prefix and a counter. With tracing on,
    FastStream's path is taken, through `declared` (the service's declared publisher, which the AsyncAPI
    document shows) when given: it carries the trace context and makes the publish span.
    FastStream's `TestRabbitBroker` does not see these publishes; a handler tested with it publishes through
    FastStream.
    """

    def __init__(self, broker: RabbitBroker, *, declared: RabbitPublisher | None = None) -> None:
        self._broker = broker
        self._app_id = broker.config.app_id  # what FastStream marks the broker's own publishes with
        self._declared = declared
        self._metrics = BrokerMetrics(self._app_id or "papo")
        self._traced = tracing_enabled()
        self._exchange: aio_pika.Exchange | None = None
        self._looking_up = asyncio.Lock()
        # 32 hex digits like FastStream's uuid4 ids; the prefix is drawn per publisher, so per process
        self._id_prefix = os.urandom(8).hex()
        self._published = itertools.count()

    async def __call__(self, message: Contract, *, headers: dict[str, Any] | None = None) -> None:
        if self._traced:
            if self._declared is not None:
                await self._declared.publish(message, headers=headers)
            else:
                await publish(self._broker, message, headers=headers)
            return
        exchange = self._exchange or await self._look_up_exchange()
        routing_key = routing_key_for(message)
        children = self._metrics.published(f"{EXCHANGE.name}.{routing_key}")
        started = time.perf_counter()
        try:
            if exchange.channel.is_closed:
                # what aio-pika's publish raises: fail now rather than wait for the reconnection
                raise aiormq.exceptions.ChannelInvalidStateError(f"{exchange.channel!r} closed")
            channel = await exchange.channel.get_underlay_channel()
            publish_id = f"{self._id_prefix}{next(self._published):016x}"
            # a return (unroutable, `mandatory`) or a nack raises: the channel has `on_return_raises`
            await channel.basic_publish(
                message.model_dump_json().encode(),
                exchange=EXCHANGE.name,
                routing_key=routing_key,
                properties=aiormq.spec.Basic.Properties(
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
                    correlation_id=publish_id,
                    # aiormq matches a returned message to its publish by message id
                    message_id=publish_id,
                    timestamp=datetime.now(UTC),
                    message_type=message.__class__.__name__,
                    app_id=self._app_id,
                    headers=headers,
                ),
                mandatory=True,
            )
        except Exception as error:
            children.exception(type(error).__name__).inc()
            children.status("error").inc()
            raise
        finally:
            children.duration.observe(time.perf_counter() - started)
        children.status("success").inc()

    async def _look_up_exchange(self) -> aio_pika.Exchange:
        """The broker's cached exchange on its confirmed channel (which reconnects with it), looked up once
        however many publishes start together."""
        async with self._looking_up:
            if self._exchange is None:
                # aio-pika's robust exchange, whose channel is the one publishes go out on
                self._exchange = cast("aio_pika.Exchange", await self._broker.declare_exchange(EXCHANGE))
        return self._exchange
