"""The llm's one handler: a burst in, a reply out (published by the turn, once the answer is final)."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from papo_common.broker import subscribe
from papo_common.contracts import Burst
from papo_common.topology import LLM
from papo_llm.turns import TurnTaker


def register_handlers(broker: RabbitBroker, turns: TurnTaker) -> None:
    """Consume `papo.llm`. The message is acked only after the reply is confirmed by the broker, or the
    burst is known to need none."""

    @subscribe(broker, LLM)
    async def on_burst(burst: Burst) -> None:
        await turns.handle(burst)
