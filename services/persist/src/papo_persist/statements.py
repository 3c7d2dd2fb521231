"""The idempotent upserts persist runs. Each is executed with a list of rows (one round trip per statement),
and each writes nothing when the row already says what the contract says, so a redelivery is a no-op.

Every message statement returns the keys of the rows it actually wrote, which is what the metric counts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, case, false, func, null, or_, select, tuple_
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import SQLModel

from papo_common.db.models import Conversation, Message, MessageRole
from papo_persist.rows import WriteKind

conversations: Table = SQLModel.metadata.tables[str(Conversation.__tablename__)]
messages: Table = SQLModel.metadata.tables[str(Message.__tablename__)]

_ASSISTANT = MessageRole.ASSISTANT.value


def upsert_conversations() -> Insert:
    """Create or update conversations from messages that know them. Monotonic: chat id and push name follow
    the newest message, `last_message_at` only moves forward, and an older message changes nothing."""
    stmt = insert(conversations)
    new, old = stmt.excluded, conversations.c
    newer = or_(old.last_message_at.is_(None), new.last_message_at >= old.last_message_at)
    chat_id = case((newer, new.chat_id), else_=old.chat_id)
    push_name = case(
        (newer, func.coalesce(new.push_name, old.push_name)),
        else_=func.coalesce(old.push_name, new.push_name),
    )
    last_message_at = func.greatest(old.last_message_at, new.last_message_at)
    return stmt.on_conflict_do_update(
        index_elements=[old.instance, old.user_id],
        set_={"chat_id": chat_id, "push_name": push_name, "last_message_at": last_message_at},
        where=tuple_(chat_id, push_name, last_message_at).is_distinct_from(
            tuple_(old.chat_id, old.push_name, old.last_message_at)
        ),
    )


def ensure_conversations() -> Insert:
    """Create conversations that a transcript or a delivery names, if no message has yet."""
    return insert(conversations).on_conflict_do_nothing(
        index_elements=[conversations.c.instance, conversations.c.user_id]
    )


def conversation_ids(keys: list[tuple[str, str]]) -> Select[Any]:
    """Ids of the conversations with these (instance, user_id) keys."""
    c = conversations.c
    return select(c.id, c.instance, c.user_id).where(tuple_(c.instance, c.user_id).in_(keys))


def upsert_messages(kind: WriteKind) -> ReturningInsert[Any]:
    """The statement that writes message rows of `kind`, returning the keys of the rows it wrote."""
    stmt = insert(messages)
    new, old = stmt.excluded, messages.c
    match kind:
        case "inbound" | "operator":
            # completes a row a transcript created first, keeping its transcript
            set_: dict[str, Any] = {
                "conversation_id": new.conversation_id,
                "role": new.role,
                "kind": new.kind,
                "text": func.coalesce(old.text, new.text),
                "sent_at": new.sent_at,
                "received_at": new.received_at,
            }
            where = and_(old.received_at.is_(None), old.role != _ASSISTANT)
        case "transcript":
            # a transcript with text wins; a failure never erases text already there
            text = func.coalesce(new.text, old.text)
            failure = case(
                (new.text.is_not(None), null()),
                (old.text.is_(None), new.transcription_failure),
                else_=old.transcription_failure,
            )
            set_ = {"text": text, "transcription_failure": failure}
            where = and_(
                old.kind == "audio",
                tuple_(text, failure).is_distinct_from(tuple_(old.text, old.transcription_failure)),
            )
        case "reply":
            # completes a row a delivery created first; the first reply stored for an id wins
            set_ = {
                name: getattr(new, name)
                for name in ("conversation_id", "text", "burst_id", "in_reply_to", "model", "sent_at")
            }
            where = and_(old.text.is_(None), old.role == _ASSISTANT)
        case "delivery":
            set_ = {"whatsapp_ids": new.whatsapp_ids, "delivered_at": new.delivered_at}
            where = and_(old.delivered_at.is_(None), old.role == _ASSISTANT)
        case "session":
            # a closing record never changes once written
            set_ = {"text": old.text}
            where = false()
    return stmt.on_conflict_do_update(
        index_elements=[old.instance, old.external_id], set_=set_, where=where
    ).returning(old.instance, old.external_id)
