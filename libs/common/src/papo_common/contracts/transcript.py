"""Published by transcribe: the text of one voice note, or why there is none."""

from __future__ import annotations

from typing import Literal

from papo_common.contracts.base import Contract, ConversationRef, MessageId, UtcDatetime

UNDERSTOOD_NOTHING = "[áudio não compreendido]"
"""Stands in for a voice note that could not be transcribed, so the assistant can ask the person to repeat."""


class Transcript(Contract):
    type: Literal["transcript"] = "transcript"
    version: Literal[1] = 1
    conversation: ConversationRef
    message_id: MessageId
    sent_at: UtcDatetime
    text: str | None
    """None when the note could not be understood; `failure` then says why."""
    failure: str | None = None
    language: str | None = None
    engine: str | None = None
    audio_seconds: float | None = None

    @property
    def text_for_prompt(self) -> str:
        return self.text if self.text else UNDERSTOOD_NOTHING
