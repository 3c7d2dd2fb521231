"""The llm's subscriber and the publishers it declares: a burst in; a reply (and a session boundary) out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faststream.rabbit import Channel, RabbitBroker

from papo_common.broker import ConfirmedPublisher, subscribe
from papo_common.contracts import Burst, Reply, SessionClosed
from papo_common.topology import EXCHANGE, LLM, RoutingKey
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


def register_handlers(broker: RabbitBroker, turns: TurnTaker, *, prefetch: int) -> Any:
    """Consume `papo.llm`, `prefetch` bursts at a time. The message is acked only after the reply is
    confirmed by the broker, or the burst is known to need none. Returns FastStream's wrapper of the handler
    (tests read its `mock`)."""

    @subscribe(broker, LLM, contract=Burst, channel=Channel(prefetch_count=prefetch))
    async def on_burst(burst: Burst) -> None:
        await turns.handle(burst)

    return on_burst
