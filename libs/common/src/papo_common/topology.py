"""Every exchange, queue and routing key papo uses, named in this one place.

One topic exchange carries every contract; a routing key names what a message is, and each service's queue
binds the keys it consumes, so one confirmed publish reaches every interested service (persist always gets a
copy). Each consumer queue is a quorum queue with an explicit delivery limit (RabbitMQ 3.x has none by
default) and at-least-once dead-lettering into its own dead-letter queue, so a poison message is parked with
its reason instead of looping, and is never dropped on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import aio_pika.abc
from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

from papo_common.contracts import Burst, Contract, InboundMessage, Reply, ReplySent, SessionClosed, Transcript

if TYPE_CHECKING:
    from faststream.rabbit import RabbitBroker

EXCHANGE: Final = RabbitExchange("papo", type=ExchangeType.TOPIC, durable=True)
DEAD_LETTER_EXCHANGE: Final = RabbitExchange("papo.dead-letter", type=ExchangeType.DIRECT, durable=True)


class RoutingKey:
    """What a message is. Consumers bind these; producers publish with them."""

    INBOUND_TEXT: Final = "inbound.text"
    INBOUND_AUDIO: Final = "inbound.audio"
    INBOUND_OPERATOR: Final = "inbound.operator"
    TRANSCRIPT_READY: Final = "transcript.ready"
    BURST_READY: Final = "burst.ready"
    REPLY_READY: Final = "reply.ready"
    REPLY_SENT: Final = "reply.sent"
    SESSION_CLOSED: Final = "session.closed"


@dataclass(frozen=True)
class ServiceQueue:
    """A consumer service's one input queue, its bindings and its dead-letter queue."""

    service: str
    binds: tuple[str, ...]
    delivery_limit: int = 5
    extra_arguments: dict[str, Any] = field(default_factory=dict)
    retry_delays_seconds: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 300.0)
    """The waits of successive redeliveries after a dependency outage (`papo_common.resilience`), the last
    one repeated until the redelivery horizon."""

    @property
    def name(self) -> str:
        return f"papo.{self.service}"

    @property
    def dead_letter_name(self) -> str:
        return f"{self.name}.dlq"

    @property
    def queue(self) -> RabbitQueue:
        arguments: Any = {
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-routing-key": self.dead_letter_name,
            # at-least-once dead-lettering needs reject-publish overflow; without it a dead letter can be
            # dropped when the dead-letter queue is unavailable.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            **self.extra_arguments,
        }
        return RabbitQueue(self.name, queue_type=QueueType.QUORUM, durable=True, arguments=arguments)

    def retry_queue_name(self, delay_seconds: float) -> str:
        return f"{self.name}.retry.{int(delay_seconds * 1000)}ms"

    @property
    def retry_queues(self) -> tuple[RabbitQueue, ...]:
        """One queue per redelivery delay, with no consumer: a message waits there for the queue's TTL, then
        dead-letters (through the default exchange) back into this service's queue only."""
        return tuple(
            RabbitQueue(
                self.retry_queue_name(delay),
                queue_type=QueueType.QUORUM,
                durable=True,
                arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.name,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
            for delay in self.retry_delays_seconds
        )

    @property
    def dead_letter_queue(self) -> RabbitQueue:
        return RabbitQueue(
            self.dead_letter_name,
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=self.dead_letter_name,
        )


DEBOUNCE: Final = ServiceQueue(
    "debounce",
    # operator messages pause the bot for their conversation and drop its pending burst
    binds=(
        RoutingKey.INBOUND_TEXT,
        RoutingKey.INBOUND_AUDIO,
        RoutingKey.INBOUND_OPERATOR,
        RoutingKey.TRANSCRIPT_READY,
    ),
)
TRANSCRIBE: Final = ServiceQueue("transcribe", binds=(RoutingKey.INBOUND_AUDIO,), delivery_limit=3)
LLM: Final = ServiceQueue("llm", binds=(RoutingKey.BURST_READY,))
PERSIST: Final = ServiceQueue(
    "persist",
    binds=(
        "inbound.*",
        RoutingKey.TRANSCRIPT_READY,
        RoutingKey.REPLY_READY,
        RoutingKey.REPLY_SENT,
        RoutingKey.SESSION_CLOSED,
    ),
)
DELIVER: Final = ServiceQueue("deliver", binds=(RoutingKey.REPLY_READY,))

SERVICE_QUEUES: Final[tuple[ServiceQueue, ...]] = (DEBOUNCE, TRANSCRIBE, LLM, PERSIST, DELIVER)


def routing_key_for(message: Contract) -> str:
    """The routing key a contract is published with."""
    match message:
        case InboundMessage(from_me=True):
            return RoutingKey.INBOUND_OPERATOR
        case InboundMessage(kind="audio"):
            return RoutingKey.INBOUND_AUDIO
        case InboundMessage():
            return RoutingKey.INBOUND_TEXT
        case Transcript():
            return RoutingKey.TRANSCRIPT_READY
        case Burst():
            return RoutingKey.BURST_READY
        case Reply():
            return RoutingKey.REPLY_READY
        case ReplySent():
            return RoutingKey.REPLY_SENT
        case SessionClosed():
            return RoutingKey.SESSION_CLOSED
    raise TypeError(f"no routing key for {type(message).__name__}")


async def declare_topology(broker: RabbitBroker) -> None:
    """Declare every exchange, queue, dead-letter queue and binding. Idempotent; every service runs it at
    start, so a publish is routable even before the consuming service has ever started."""
    exchange = await broker.declare_exchange(EXCHANGE)
    dead_letter_exchange = await broker.declare_exchange(DEAD_LETTER_EXCHANGE)
    for service_queue in SERVICE_QUEUES:
        dead_letters = await broker.declare_queue(service_queue.dead_letter_queue)
        await dead_letters.bind(dead_letter_exchange, routing_key=service_queue.dead_letter_name)
        queue = await broker.declare_queue(service_queue.queue)
        for routing_key in service_queue.binds:
            await queue.bind(exchange, routing_key=routing_key)
        for retry_queue in service_queue.retry_queues:
            await broker.declare_queue(retry_queue)


async def declare_service_queue_on(
    channel: aio_pika.abc.AbstractChannel, service_queue: ServiceQueue
) -> None:
    """Declare one service queue as `declare_topology` does (the exchanges, its dead-letter queue and binding,
    the queue and its bindings, its retry queues), on an aio-pika channel: what a consumer runs when RabbitMQ
    cancelled it because its queue was deleted."""
    exchanges = {}
    for exchange in (EXCHANGE, DEAD_LETTER_EXCHANGE):
        exchanges[exchange.name] = await channel.declare_exchange(
            exchange.name, type=exchange.type.value, durable=exchange.durable
        )

    async def declare(queue: RabbitQueue) -> aio_pika.abc.AbstractQueue:
        return await channel.declare_queue(queue.name, durable=queue.durable, arguments=queue.arguments)

    dead_letters = await declare(service_queue.dead_letter_queue)
    await dead_letters.bind(exchanges[DEAD_LETTER_EXCHANGE.name], routing_key=service_queue.dead_letter_name)
    queue = await declare(service_queue.queue)
    for routing_key in service_queue.binds:
        await queue.bind(exchanges[EXCHANGE.name], routing_key=routing_key)
    for retry_queue in service_queue.retry_queues:
        await declare(retry_queue)
