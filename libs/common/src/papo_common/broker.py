"""Construction of the RabbitMQ broker every service uses, and the one way contracts are published."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.exceptions import RejectMessage
from faststream.rabbit import Channel, RabbitBroker
from faststream.rabbit.subscriber import RabbitSubscriber
from pydantic import ValidationError

from papo_common.contracts import Contract
from papo_common.errors import PermanentError
from papo_common.metrics import DEAD_LETTERS
from papo_common.resilience import redelivery_middleware
from papo_common.topology import EXCHANGE, SERVICE_QUEUES, ServiceQueue, routing_key_for

if TYPE_CHECKING:
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
            DEAD_LETTERS.labels(queue=queue_name, reason=type(error).__name__).inc()
            logger.warning(
                "dead-lettering message",
                extra={
                    "queue": queue_name,
                    "reason": dead_letter_reason(error),
                    "message_id": msg.message_id,
                },
            )
            raise RejectMessage from error


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


def subscribe(broker: RabbitBroker, service_queue: ServiceQueue, **kwargs: Any) -> RabbitSubscriber:
    """Subscribe to a service's own queue. Failures are nacked and redelivered (bounded by the queue's
    delivery limit); bindings are made by `declare_topology`, not here."""
    return broker.subscriber(service_queue.queue, ack_policy=AckPolicy.NACK_ON_ERROR, **kwargs)


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
