"""What the model is told: the system prompt, a bounded slice of history, and the burst as one message."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from papo_common.contracts import UNDERSTOOD_NOTHING, Burst, BurstItem
from papo_common.errors import PermanentError
from papo_llm.engines.base import ChatMessage
from papo_llm.settings import VOICE_NOTE_MARK

_MAX_NAME_CHARS = 64


@dataclass(frozen=True)
class Turn:
    """One side's say in the conversation: a person's burst, or what the business answered."""

    role: Literal["user", "assistant"]
    content: str


def render_item(item: BurstItem) -> str | None:
    """An item as the model reads it; voice notes are marked. None for an item with nothing in it."""
    text = item.text.strip()
    if item.transcribed:
        return VOICE_NOTE_MARK + (text or UNDERSTOOD_NOTHING)
    return text or None


@dataclass(frozen=True, order=True)
class PendingMessage:
    """A message of the person that no answer covers yet. Orders by when it was sent; `messageTimestamp` has
    whole seconds, so ties keep their burst's order (then their place in it)."""

    sent_at_ms: int
    seq: int
    position: int
    message_id: str
    content: str = field(compare=False)


def messages_of(burst: Burst) -> list[PendingMessage]:
    """The burst's messages as the model reads them; `PermanentError` when none has any text."""
    messages = [
        PendingMessage(
            int(item.sent_at.timestamp() * 1000), burst.inbound_seq, position, item.message_id, line
        )
        for position, item in enumerate(burst.items)
        if (line := render_item(item)) is not None
    ]
    if not messages:
        raise PermanentError("the burst has no text to answer")
    return messages


def user_turn(messages: Sequence[PendingMessage]) -> Turn:
    """Everything the person said and no answer covers yet, in the order it was sent, one line each."""
    return Turn("user", "\n".join(message.content for message in sorted(messages)))


def merge_consecutive(turns: Iterable[Turn]) -> list[Turn]:
    """Join neighbouring turns of one role, so roles alternate (many local chat templates require it)."""
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, f"{merged[-1].content}\n{turn.content}")
        else:
            merged.append(turn)
    return merged


def trim_history(turns: Sequence[Turn], *, max_turns: int, max_chars: int) -> list[Turn]:
    """The newest turns that fit both bounds, oldest dropped first; a turn is kept whole or not at all."""
    kept: list[Turn] = []
    chars = 0
    for turn in reversed(turns):
        if len(kept) == max_turns or chars + len(turn.content) > max_chars:
            break
        kept.append(turn)
        chars += len(turn.content)
    kept.reverse()
    return kept


def build_messages(
    system_prompt: str,
    history: Sequence[Turn],
    current: Turn,
    *,
    push_name: str | None = None,
) -> list[ChatMessage]:
    """The prompt: system, then history, then the current burst, with same-role neighbours merged."""
    system = system_prompt
    if push_name and push_name.strip():
        system += f"\n\nThe person's WhatsApp name is {push_name.strip()[:_MAX_NAME_CHARS]!r}."
    messages: list[ChatMessage] = [{"role": "system", "content": system}]
    for turn in merge_consecutive([*history, current]):
        messages.append({"role": turn.role, "content": turn.content})
    return messages
