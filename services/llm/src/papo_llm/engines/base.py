"""What the llm service needs from a chat model, whatever serves it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

from papo_common.errors import PermanentError
from papo_common.service import ReadinessCheck

Role = Literal["system", "user", "assistant"]


class ChatMessage(TypedDict):
    role: Role
    content: str


@dataclass(frozen=True)
class Completion:
    """The model's answer to one prompt."""

    text: str
    model: str
    """The model that answered, as the server names it."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class CompletionFailed(PermanentError):
    """The model could not answer this prompt and retrying will not change that (a rejected request, a bad
    key, an unparseable or empty answer)."""


class ChatEngine(Protocol):
    """Answers a chat prompt. Implementations retry what is worth retrying themselves; they raise
    `DependencyUnavailable` when the model stays unavailable (the burst is redelivered later) and
    `CompletionFailed` when the prompt cannot be answered."""

    @property
    def model(self) -> str:
        """The configured model name, used as a metric label."""
        ...

    async def start(self) -> None:
        """Begin what must happen before the first answer (loading a model), without waiting for it."""
        ...

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        """Checks `/readyz` runs for this engine (none for a remote server, which is not ours to probe)."""
        ...

    async def complete(self, messages: list[ChatMessage]) -> Completion:
        """One completion of `messages` (system first, then alternating turns)."""
        ...

    async def aclose(self) -> None:
        """Release connections and other resources."""
        ...
