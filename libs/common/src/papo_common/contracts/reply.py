"""Published by llm (a reply to send) and by deliver (proof that it was sent)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from papo_common.contracts.base import (
    BURST_ID_MAX_LENGTH,
    MODEL_NAME_MAX_LENGTH,
    Contract,
    ConversationRef,
    Jid,
    MessageId,
    NonEmptyStr,
    UtcDatetime,
)


class TokenUsage(Contract):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


ReplyKind = Literal["answer", "notice"]
"""`answer`: the model's reply, withheld while a human has taken over. `notice`: papo's own confirmation
(a session reset, "a human will answer"), sent even while paused."""


class Reply(Contract):
    type: Literal["reply"] = "reply"
    version: Literal[1, 2] = 2
    """2 added `follows`; deliver reads both (roll deliver out before llm)."""
    reply_id: MessageId
    """Derived from the burst id, so a regenerated reply for the same burst has the same id and is stored and
    sent at most once."""
    follows: MessageId | None = None
    """The `reply_id` of the reply the llm published just before this one in the conversation (None: the
    first, or not known). deliver sends this one only once that one is sent or abandoned, so replies leave in
    the order they were written, across replicas and redeliveries."""
    burst_id: Annotated[NonEmptyStr, Field(max_length=BURST_ID_MAX_LENGTH)]
    conversation: ConversationRef
    chat_id: Jid
    text: NonEmptyStr
    in_reply_to: tuple[MessageId, ...]
    """The WhatsApp message ids this reply answers."""
    model: Annotated[str, Field(max_length=MODEL_NAME_MAX_LENGTH)]
    kind: ReplyKind = "answer"
    usage: TokenUsage = TokenUsage()
    created_at: UtcDatetime


class ReplySent(Contract):
    type: Literal["reply_sent"] = "reply_sent"
    version: Literal[1] = 1
    reply_id: MessageId
    conversation: ConversationRef
    whatsapp_message_ids: tuple[MessageId, ...]
    """The ids Evolution gave the sent message(s): the reply as WhatsApp knows it."""
    sent_at: UtcDatetime
