"""Published by debounce: everything a person said since the last answer, in the order they said it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from papo_common.contracts.base import (
    BURST_ID_MAX_LENGTH,
    Contract,
    ConversationRef,
    Jid,
    MessageId,
    NonEmptyStr,
    PushName,
    UtcDatetime,
)
from papo_common.contracts.inbound import MessageKind

FlushReason = Literal["quiet", "max_wait", "max_size"]


class BurstItem(Contract):
    message_id: MessageId
    kind: MessageKind
    text: str
    """The text, the transcript, or the "not understood" marker for a voice note."""
    sent_at: UtcDatetime
    transcribed: bool = False
    """True when `text` came from a voice note (successfully or as the marker)."""


class Burst(Contract):
    type: Literal["burst"] = "burst"
    version: Literal[1] = 1
    burst_id: Annotated[NonEmptyStr, Field(max_length=BURST_ID_MAX_LENGTH)]
    """`<conversation key>:<sequence>`: stable across redeliveries, unique per flush."""
    conversation: ConversationRef
    chat_id: Jid
    push_name: PushName | None = None
    items: tuple[BurstItem, ...] = Field(min_length=1)
    inbound_seq: int = Field(ge=1)
    """The conversation's inbound counter when the burst was cut. A reply generated for it is superseded when
    the counter has moved on: the person said more while we were thinking."""
    previous_inbound_seq: int | None = Field(default=None, ge=0)
    """`inbound_seq` of the burst of this conversation cut before this one (None: the first one, or cut by an
    older debounce). The llm holds this burst back, for a bounded time, until that one has reached it."""
    reason: FlushReason
    first_received_at: UtcDatetime
    flushed_at: UtcDatetime
