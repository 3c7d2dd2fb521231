"""Published by llm (a reply to send) and by deliver (proof that it was sent)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from papo_common.contracts.base import Contract, ConversationRef, NonEmptyStr, UtcDatetime


class TokenUsage(Contract):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


ReplyKind = Literal["answer", "notice"]
"""`answer`: the model's reply, withheld while a human has taken over. `notice`: papo's own confirmation
(a session reset, "a human will answer"), sent even while paused."""


class Reply(Contract):
    type: Literal["reply"] = "reply"
    version: Literal[1] = 1
    reply_id: NonEmptyStr
    """Derived from the burst id, so a regenerated reply for the same burst has the same id and is stored and
    sent at most once."""
    burst_id: NonEmptyStr
    conversation: ConversationRef
    chat_id: NonEmptyStr
    text: NonEmptyStr
    in_reply_to: tuple[str, ...]
    """The WhatsApp message ids this reply answers."""
    model: str
    kind: ReplyKind = "answer"
    usage: TokenUsage = TokenUsage()
    created_at: UtcDatetime


class ReplySent(Contract):
    type: Literal["reply_sent"] = "reply_sent"
    version: Literal[1] = 1
    reply_id: NonEmptyStr
    conversation: ConversationRef
    whatsapp_message_ids: tuple[str, ...]
    """The ids Evolution gave the sent message(s): the reply as WhatsApp knows it."""
    sent_at: UtcDatetime
