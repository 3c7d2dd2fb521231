"""deliver's one subscriber: a `Reply` in, sent through Evolution API; a `ReplySent` out, through a declared
publisher (so the AsyncAPI document shows what deliver publishes)."""

from __future__ import annotations

from typing import Any

from faststream.rabbit import RabbitBroker

from papo_common.broker import subscribe
from papo_common.contracts import Reply, ReplySent
from papo_common.topology import DELIVER, EXCHANGE, RoutingKey
from papo_deliver.delivery import ReplyDeliverer


def register_handlers(broker: RabbitBroker, deliverer: ReplyDeliverer) -> Any:
    """Subscribe deliver to its queue; returns FastStream's wrapper of the handler (tests read its `mock`)."""
    reply_sent = broker.publisher(
        exchange=EXCHANGE,
        routing_key=RoutingKey.REPLY_SENT,
        persist=True,
        mandatory=True,
        title="reply.sent",
        description="Every chunk of a reply was accepted by Evolution API, with WhatsApp's message ids",
        schema=ReplySent,
    )

    # Not the decorator form: a withheld reply publishes nothing, and a decorated publisher would publish
    # the handler's None.
    @subscribe(
        broker, DELIVER, contract=Reply, title="deliver", description="Replies to send through Evolution API"
    )
    async def deliver_reply(reply: Reply) -> None:
        if (sent := await deliverer.handle(reply)) is not None:
            await reply_sent.publish(sent, content_type="application/json", message_type="ReplySent")

    return deliver_reply
