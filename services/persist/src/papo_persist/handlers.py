"""persist's input, declared as a FastStream subscriber so that its AsyncAPI document shows the queue and the
contracts it accepts. The service does not consume through it: `consumer.BatchConsumer` takes the same queue
in batches, below FastStream (docs/performance.md says why), so this subscriber is never started."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from papo_common.broker import subscribe
from papo_common.topology import PERSIST
from papo_persist.rows import PersistedMessage


def declare_input(broker: RabbitBroker) -> None:
    """Declare persist's queue and contracts on `broker`, for its AsyncAPI document only."""

    @subscribe(broker, PERSIST)
    async def persist(message: PersistedMessage) -> None:
        raise NotImplementedError("persist consumes through its BatchConsumer")
