"""debounce's subscriber and its declared publisher: messages and transcripts in, bursts out.

Both are declared through FastStream, so that the AsyncAPI document shows what debounce consumes and what it
publishes. The running service consumes `papo.debounce` through `consume` (below FastStream: its whole work
per message is about the cost of FastStream's path to it, docs/performance.md), so the FastStream subscriber
is declared on the specification broker only.
"""

from __future__ import annotations

from typing import Annotated

from faststream.rabbit import RabbitBroker
from faststream.rabbit.publisher import RabbitPublisher
from pydantic import Field

from papo_common.broker import subscribe
from papo_common.consuming import MessageConsumer
from papo_common.contracts import Burst, InboundMessage, Transcript
from papo_common.topology import DEBOUNCE, EXCHANGE, RoutingKey
from papo_debounce.debouncer import Debouncer
from papo_debounce.settings import DebounceSettings

DebounceInput = Annotated[InboundMessage | Transcript, Field(discriminator="type")]


def consume(settings: DebounceSettings, debouncer: Debouncer) -> MessageConsumer[InboundMessage | Transcript]:
    """Consume `papo.debounce`: each message is acked once it is in Redis."""
    return MessageConsumer(
        settings.rabbitmq_url.get_secret_value(),
        DEBOUNCE,
        debouncer.handle,
        contract=DebounceInput,
        prefetch=settings.prefetch,
        redelivery_horizon_seconds=settings.redelivery_horizon_seconds,
        app_name="papo-debounce",
    )


def declare_input(broker: RabbitBroker) -> None:
    """What `consume` takes, for the AsyncAPI document."""

    @subscribe(broker, DEBOUNCE, contract=DebounceInput)
    async def on_message(message: DebounceInput) -> None:
        raise NotImplementedError("debounce consumes through its MessageConsumer")


def declare_output(broker: RabbitBroker) -> RabbitPublisher:
    """The bursts the flush loop publishes (persistent, mandatory, confirmed)."""
    return broker.publisher(
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
