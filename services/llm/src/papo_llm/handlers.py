"""The llm's subscriber and the publishers it declares: a burst in; a reply (and a session boundary) out.

All are declared through FastStream, so that the AsyncAPI document shows what the llm consumes and publishes.
The running service consumes `papo.llm` through `consume`, below FastStream (the same consumer as debounce's
and deliver's, `papo_common.consuming`), so the FastStream subscriber is declared on the specification
broker only.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.rabbit import Channel, RabbitBroker

from papo_common.broker import ConfirmedPublisher, subscribe
from papo_common.consuming import MessageConsumer
from papo_common.contracts import Burst, Reply, SessionClosed
from papo_common.topology import EXCHANGE, LLM, RoutingKey
from papo_llm.settings import LlmSettings
from papo_llm.turns import TurnTaker


@dataclass(frozen=True)
class Publishers:
    reply: ConfirmedPublisher
    session_closed: ConfirmedPublisher


def declare_publishers(broker: RabbitBroker) -> Publishers:
    """Persistent, mandatory, confirmed publishes of the llm's two contracts (listed in its AsyncAPI)."""

    def publisher(routing_key: str, contract: type[Reply | SessionClosed]) -> ConfirmedPublisher:
        declared = broker.publisher(
            exchange=EXCHANGE,
            routing_key=routing_key,
            persist=True,
            mandatory=True,
            content_type="application/json",
            message_type=contract.__name__,
            schema=contract,
            title=f"{routing_key}:publish",
        )
        return ConfirmedPublisher(broker, declared=declared)

    return Publishers(
        reply=publisher(RoutingKey.REPLY_READY, Reply),
        session_closed=publisher(RoutingKey.SESSION_CLOSED, SessionClosed),
    )


def consume(settings: LlmSettings, turns: TurnTaker) -> MessageConsumer[Burst]:
    """Consume `papo.llm`, as many bursts at a time as turns may be in flight. A burst is acked only after
    its reply is confirmed by the broker, or once it is known to need none."""
    return MessageConsumer(
        settings.rabbitmq_url.get_secret_value(),
        LLM,
        turns.handle,
        contract=Burst,
        prefetch=turns_in_flight(settings),
        redelivery_horizon_seconds=settings.redelivery_horizon_seconds,
        app_name="papo-llm",
    )


def turns_in_flight(settings: LlmSettings) -> int:
    return max(settings.prefetch, settings.llm_turns_in_flight)


def declare_input(broker: RabbitBroker, settings: LlmSettings) -> None:
    """What `consume` takes, for the AsyncAPI document."""

    @subscribe(broker, LLM, contract=Burst, channel=Channel(prefetch_count=turns_in_flight(settings)))
    async def on_burst(burst: Burst) -> None:
        raise NotImplementedError("the llm consumes through its MessageConsumer")
