"""What each contract writes: a conversation row and a message row, as plain column values.

Each contract knows only part of a message row. A transcript may arrive before the audio message it belongs
to, and a delivery before its reply: then it creates the row with what it knows, and the later contract fills
the rest (see `statements`). The message is keyed by (instance, external_id) everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

from papo_common.contracts import InboundMessage, Reply, ReplySent, SessionClosed, Transcript
from papo_common.db.models import MessageRole

PersistedContract: TypeAlias = InboundMessage | Transcript | Reply | ReplySent | SessionClosed

WriteKind = Literal["inbound", "operator", "transcript", "reply", "delivery", "session"]
"""Which statement writes the row; also the `kind` label of `papo_persisted_rows`."""

TRANSCRIPTION_FAILED = "transcription failed"
"""Recorded when a transcript has no text and gives no reason."""


@dataclass(frozen=True)
class ConversationRow:
    instance: str
    user_id: str
    chat_id: str
    push_name: str | None
    last_message_at: datetime | None
    known: bool
    """True when the contract carries the conversation's chat id. A transcript or a delivery does not: it
    only makes sure the conversation exists (with the user id standing in for the chat id) and never
    overwrites what a message said about it."""


@dataclass(frozen=True)
class RowWrite:
    kind: WriteKind
    conversation: ConversationRow
    message: dict[str, Any]
    """Column values of `messages`, without `conversation_id` (known only once the conversation is)."""

    @property
    def key(self) -> tuple[str, str]:
        return self.message["instance"], self.message["external_id"]


def row_write(contract: PersistedContract) -> RowWrite:
    """The rows `contract` writes."""
    match contract:
        case InboundMessage():
            return _inbound(contract)
        case Transcript():
            return _transcript(contract)
        case Reply():
            return _reply(contract)
        case ReplySent():
            return _delivery(contract)
        case SessionClosed():
            return _session_closed(contract)
    raise TypeError(f"persist does not store {type(contract).__name__}")


def _inbound(message: InboundMessage) -> RowWrite:
    ref = message.conversation
    return RowWrite(
        kind="operator" if message.from_me else "inbound",
        conversation=ConversationRow(
            ref.instance, ref.user_id, message.chat_id, message.push_name, message.sent_at, known=True
        ),
        message={
            "instance": ref.instance,
            "external_id": message.message_id,
            "role": MessageRole.OPERATOR.value if message.from_me else MessageRole.USER.value,
            "kind": message.kind,
            "text": message.text,
            "sent_at": message.sent_at,
            "received_at": message.received_at,
        },
    )


def _transcript(transcript: Transcript) -> RowWrite:
    ref = transcript.conversation
    text = transcript.text if transcript.text and transcript.text.strip() else None
    return RowWrite(
        kind="transcript",
        conversation=_placeholder_conversation(ref.instance, ref.user_id),
        message={
            "instance": ref.instance,
            "external_id": transcript.message_id,
            # only a person's voice notes are transcribed: operator messages are never routed to transcribe
            "role": MessageRole.USER.value,
            "kind": "audio",
            "text": text,
            "transcription_failure": None if text else (transcript.failure or TRANSCRIPTION_FAILED),
            "sent_at": transcript.sent_at,
        },
    )


def _reply(reply: Reply) -> RowWrite:
    ref = reply.conversation
    return RowWrite(
        kind="reply",
        conversation=ConversationRow(ref.instance, ref.user_id, reply.chat_id, None, reply.created_at, True),
        message={
            "instance": ref.instance,
            "external_id": reply.reply_id,
            "role": MessageRole.ASSISTANT.value,
            "kind": "text",
            "text": reply.text,
            "burst_id": reply.burst_id,
            "in_reply_to": list(reply.in_reply_to),
            "model": reply.model,
            "sent_at": reply.created_at,
        },
    )


def _delivery(sent: ReplySent) -> RowWrite:
    ref = sent.conversation
    return RowWrite(
        kind="delivery",
        conversation=_placeholder_conversation(ref.instance, ref.user_id),
        message={
            "instance": ref.instance,
            "external_id": sent.reply_id,
            "role": MessageRole.ASSISTANT.value,
            "kind": "text",
            "whatsapp_ids": list(sent.whatsapp_message_ids),
            # stands in until the reply arrives and sets its own creation time
            "sent_at": sent.sent_at,
            "delivered_at": sent.sent_at,
        },
    )


def _session_closed(closed: SessionClosed) -> RowWrite:
    ref = closed.conversation
    return RowWrite(
        kind="session",
        conversation=_placeholder_conversation(ref.instance, ref.user_id),
        message={
            "instance": ref.instance,
            # one boundary per conversation and instant: a redelivery lands on the same row
            "external_id": f"session-closed:{ref.user_id}:{int(closed.closed_at.timestamp() * 1000)}",
            "role": MessageRole.SYSTEM.value,
            "kind": "session_closed",
            "text": closed.reason,
            "sent_at": closed.closed_at,
        },
    )


def _placeholder_conversation(instance: str, user_id: str) -> ConversationRow:
    return ConversationRow(instance, user_id, user_id, None, None, known=False)
