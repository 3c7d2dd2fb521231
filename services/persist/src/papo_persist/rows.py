"""What each contract writes: a conversation row and a message row, as plain column values.

Each contract knows only part of a message row. A transcript may arrive before the audio message it belongs
to, and a delivery before its reply: then it creates the row with what it knows, and the later contract fills
the rest (see `statements`). The message is keyed by (instance, external_id) everywhere.

A batch's writes are then planned into what one transaction runs (`plan_batch`): conversations merged, and
message rows deduplicated and ordered. Deduplication is needed because PostgreSQL refuses an
`INSERT ... ON CONFLICT DO UPDATE` that touches one row twice, and a batch can hold a message twice (a
redelivery landing next to the original). Ordering every statement's rows by key makes concurrent
transactions (several replicas) take row locks in the same order, which keeps them from deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Field

from papo_common.contracts import InboundMessage, Reply, ReplySent, SessionClosed, Transcript
from papo_common.db.models import MessageRole

PersistedContract: TypeAlias = InboundMessage | Transcript | Reply | ReplySent | SessionClosed
PersistedMessage = Annotated[PersistedContract, Field(discriminator="type")]
"""A body on persist's queue, told apart by its `type`."""

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
    identities: tuple[str, ...] = ()
    """JIDs of the person to link to the conversation (`person_identities`), when the message named several."""

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
        identities=(ref.user_id, *message.aliases) if message.aliases else (),
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


WRITE_ORDER: tuple[WriteKind, ...] = ("inbound", "operator", "transcript", "reply", "delivery", "session")
"""Statement order inside a transaction: a message's own row before what completes it, so an inbound audio
and its transcript (or a reply and its delivery) in one batch end up as the same row, fully filled."""


@dataclass(frozen=True)
class BatchPlan:
    known_conversations: list[dict[str, Any]]
    """Conversations named by messages that carry their chat id, one per (instance, user_id)."""
    placeholder_conversations: list[dict[str, Any]]
    """Conversations only a transcript or a delivery names, to create if missing."""
    messages: dict[WriteKind, list[RowWrite]]
    """Message rows by statement, in `WRITE_ORDER`, one per (instance, external_id) within a statement."""
    identities: list[dict[str, Any]] = field(default_factory=list)
    """A person's JIDs and their conversation, one per (instance, jid), the first seen winning."""

    @property
    def conversation_keys(self) -> list[tuple[str, str]]:
        every = (*self.known_conversations, *self.placeholder_conversations)
        return [(c["instance"], c["user_id"]) for c in every]


def plan_batch(writes: Sequence[RowWrite]) -> BatchPlan:
    """The statements' rows for a batch of writes."""
    known = _merge_known(w.conversation for w in writes if w.conversation.known)
    known_keys = {(c["instance"], c["user_id"]) for c in known}
    placeholders = {
        (c.instance, c.user_id): _conversation_values(c)
        for w in writes
        if not (c := w.conversation).known and (c.instance, c.user_id) not in known_keys
    }
    by_kind: dict[WriteKind, list[RowWrite]] = {}
    for kind in WRITE_ORDER:
        unique = _dedupe([w for w in writes if w.kind == kind])
        if unique:
            by_kind[kind] = sorted(unique, key=lambda w: w.key)
    return BatchPlan(known, [placeholders[key] for key in sorted(placeholders)], by_kind, _identities(writes))


def _identities(writes: Sequence[RowWrite]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for write in writes:
        instance, user_id = write.conversation.instance, write.conversation.user_id
        for jid in write.identities:
            rows.setdefault((instance, jid), {"instance": instance, "jid": jid, "user_id": user_id})
    return [rows[key] for key in sorted(rows)]


def _merge_known(rows: Iterable[ConversationRow]) -> list[dict[str, Any]]:
    """One row per conversation: chat id from its newest message, push name from its newest message that
    has one, last message time the latest."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r.last_message_at is not None, r.last_message_at)):
        key = (row.instance, row.user_id)
        previous = merged.get(key)
        values = _conversation_values(row)
        if previous is not None and values["push_name"] is None:
            values["push_name"] = previous["push_name"]
        merged[key] = values
    return [merged[key] for key in sorted(merged)]


def _dedupe(writes: list[RowWrite]) -> list[RowWrite]:
    """One write per key: the first, except that a transcript with text beats one without."""
    chosen: dict[tuple[str, str], RowWrite] = {}
    for write in writes:
        current = chosen.get(write.key)
        if current is None or (current.message.get("text") is None and write.message.get("text")):
            chosen[write.key] = write
    return list(chosen.values())


def _conversation_values(row: ConversationRow) -> dict[str, Any]:
    return {
        "instance": row.instance,
        "user_id": row.user_id,
        "chat_id": row.chat_id,
        "push_name": row.push_name,
        "last_message_at": row.last_message_at,
    }
