"""deliver's subscriber and its declared publisher: a `Reply` in, sent through Evolution API; a `ReplySent`
out, once every chunk is out.

Both are declared through FastStream, so that the AsyncAPI document shows what deliver consumes and what it
publishes. The running service consumes `papo.deliver` through `consume`, below FastStream (the same consumer
as debounce's, `papo_common.consuming`), so the FastStream subscriber is declared on the specification
broker only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.rabbit import RabbitBroker
from faststream.rabbit.publisher import RabbitPublisher

from papo_common.broker import subscribe
from papo_common.consuming import MessageConsumer
from papo_common.contracts import Reply, ReplySent
from papo_common.topology import DELIVER, EXCHANGE, RoutingKey
from papo_deliver.delivery import ReplyDeliverer
from papo_deliver.settings import DeliverSettings

PublishSent = Callable[[ReplySent], Awaitable[None]]


def consume(
    settings: DeliverSettings, deliverer: ReplyDeliverer, publish_sent: PublishSent
) -> MessageConsumer[Reply]:
    """Consume `papo.deliver`: a reply is acked once it is sent and its `ReplySent` confirmed by the broker,
    or once it is known to need no send (withheld)."""

    async def deliver_reply(reply: Reply) -> None:
        if (sent := await deliverer.handle(reply)) is not None:
            await publish_sent(sent)

    return MessageConsumer(
        settings.rabbitmq_url.get_secret_value(),
        DELIVER,
        deliver_reply,
        contract=Reply,
        prefetch=settings.prefetch,
        redelivery_horizon_seconds=settings.redelivery_horizon_seconds,
        app_name="papo-deliver",
    )


def declare_input(broker: RabbitBroker) -> None:
    """What `consume` takes, for the AsyncAPI document."""

    @subscribe(
        broker, DELIVER, contract=Reply, title="deliver", description="Replies to send through Evolution API"
    )
    async def deliver_reply(reply: Reply) -> None:
        raise NotImplementedError("deliver consumes through its MessageConsumer")


def declare_output(broker: RabbitBroker) -> RabbitPublisher:
    """`reply.sent` (persistent, mandatory, confirmed)."""
    return broker.publisher(
        exchange=EXCHANGE,
        routing_key=RoutingKey.REPLY_SENT,
        persist=True,
        mandatory=True,
        title="reply.sent",
        description="Every chunk of a reply was accepted by Evolution API, with WhatsApp's message ids",
        schema=ReplySent,
    )
