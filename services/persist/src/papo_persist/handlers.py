"""persist's one handler: every contract on its queue is handed to the batcher, and acknowledged (by
returning) only once the transaction holding its row has committed."""

from __future__ import annotations

from typing import Annotated

from faststream.rabbit import RabbitBroker
from pydantic import Field

from papo_common.broker import subscribe
from papo_common.contracts import InboundMessage, Reply, ReplySent, SessionClosed, Transcript
from papo_common.topology import PERSIST
from papo_persist.batcher import Batcher
from papo_persist.rows import PersistedContract

PersistedMessage = Annotated[
    InboundMessage | Transcript | Reply | ReplySent | SessionClosed, Field(discriminator="type")
]


def register_handlers(broker: RabbitBroker, batcher: Batcher[PersistedContract]) -> None:
    """Subscribe persist's handler to its queue."""

    @subscribe(broker, PERSIST)
    async def persist(message: PersistedMessage) -> None:
        await batcher.submit(message)
