"""Published by llm when a conversation's session ends: idle for too long, or reset by the person."""

from __future__ import annotations

from typing import Literal

from papo_common.contracts.base import Contract, ConversationRef, UtcDatetime

CloseReason = Literal["idle", "reset"]


class SessionClosed(Contract):
    """A session boundary. persist stores it as a closing record; the llm builds the next session's context
    from what came after the last boundary (plus a configurable number of earlier turns)."""

    type: Literal["session_closed"] = "session_closed"
    version: Literal[1] = 1
    conversation: ConversationRef
    reason: CloseReason
    closed_at: UtcDatetime
