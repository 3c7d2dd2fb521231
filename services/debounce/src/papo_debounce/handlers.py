"""debounce's subscriber and its declared publisher: messages and transcripts in, bursts out."""

from __future__ import annotations

from typing import Annotated

from faststream.rabbit import RabbitBroker
from pydantic import Field

from papo_common.broker import ConfirmedPublisher, subscribe
from papo_common.contracts import Burst, InboundMessage, Transcript
from papo_common.topology import DEBOUNCE, EXCHANGE, RoutingKey
from papo_debounce.debouncer import Debouncer
from papo_debounce.flusher import Publish

DebounceInput = Annotated[InboundMessage | Transcript, Field(discriminator="type")]


def register_handlers(broker: RabbitBroker, debouncer: Debouncer) -> Publish:
    """Consume `papo.debounce` (acked once the message is in Redis); returns how the flush loop publishes a
    burst (persistent, mandatory, confirmed)."""

    @subscribe(broker, DEBOUNCE, contract=DebounceInput)
    async def on_message(message: DebounceInput) -> None:
        await debouncer.handle(message)

    bursts = broker.publisher(
        exchange=EXCHANGE,
        routing_key=RoutingKey.BURST_READY,
        schema=Burst,
        title="burst.ready",
        description="A conversation's messages, ordered, once it has been quiet for the window.",
        persist=True,
        mandatory=True,
        content_type="application/json",
        message_type="Burst",
    )

    return ConfirmedPublisher(broker, declared=bursts)
