"""In-process stand-ins for Redis and the broker behind the webhook, so ingest's HTTP surface can be driven
with no network: its unit tests and the webhook fuzzer judge each body on its own, not on Redis."""

from __future__ import annotations

from typing import Any

from litestar import Litestar

from papo_common.contracts import InboundMessage
from papo_ingest.dedupe import PUBLISHED, ClaimOutcome
from papo_ingest.evolution import IntakePolicy
from papo_ingest.intake import Intake


class MemorySeen:
    """`SeenMessages` in a dict, for one process."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def key(self, instance: str, message_id: str) -> str:
        return f"seen:{instance}:{message_id}"

    async def claim(
        self, key: str, token: bytes, *, wait_seconds: float, person: object = None
    ) -> ClaimOutcome:
        holder = self.values.setdefault(key, token)
        if holder == token:
            return ClaimOutcome.CLAIMED
        return ClaimOutcome.DUPLICATE if holder == PUBLISHED else ClaimOutcome.IN_FLIGHT

    def confirm(self, key: str) -> None:
        self.values[key] = PUBLISHED

    async def release(self, key: str, token: bytes) -> None:
        if self.values.get(key) == token:
            del self.values[key]

    async def flush(self) -> None:
        return None


class MemoryPublisher:
    """Confirms every publish at once and keeps what was published, as JSON, as the broker would carry it."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def __call__(self, message: InboundMessage) -> None:
        self.published.append(message.model_dump_json())


def accept_in_memory(app: Litestar, **intake_options: Any) -> MemoryPublisher:
    """Make `app`'s webhook publish into memory: every well-formed message is accepted."""
    publisher = MemoryPublisher()
    app.state.intake = Intake(
        publish=publisher,
        seen=MemorySeen(),  # type: ignore[arg-type]
        policy=IntakePolicy(),
        publish_timeout_seconds=5.0,
        **intake_options,
    )
    return publisher
