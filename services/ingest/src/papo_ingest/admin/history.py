"""A conversation's messages from PostgreSQL, newest first, one page at a time.

Pages are positioned by opaque cursors: where the previous page ended, as (sent_at, id). Keyset pagination on
(sent_at, id) is stable while rows are written: a new message never shifts a page, and two messages with the
same `sent_at` are ordered by id. The cursor is opaque to clients (base64url JSON), so its shape may change; it
is not signed, because it only positions a read inside a conversation the URL already names.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Table, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from papo_common.contracts import ConversationRef
from papo_common.db import Conversation, Message

_VERSION = 1


class InvalidCursor(ValueError):
    """The `before` parameter is not a cursor this API wrote."""


@dataclass(frozen=True)
class Cursor:
    """The last row of a page: the next page holds the rows strictly older than it."""

    sent_at: datetime
    id: int

    def encode(self) -> str:
        payload = [_VERSION, self.sent_at.astimezone(UTC).isoformat(), self.id]
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            version, sent_at, row_id = json.loads(raw)
            moment = datetime.fromisoformat(sent_at)
        except (binascii.Error, ValueError, TypeError) as error:
            raise InvalidCursor("before is not a cursor returned by this API") from error
        if version != _VERSION or not isinstance(row_id, int) or moment.tzinfo is None:
            raise InvalidCursor("before is not a cursor returned by this API")
        return cls(sent_at=moment, id=row_id)


CONVERSATIONS: Table = SQLModel.metadata.tables[Conversation.__tablename__]
MESSAGES: Table = SQLModel.metadata.tables[Message.__tablename__]

MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class HistoryRow:
    id: int
    role: str
    kind: str
    text: str | None
    transcription_failure: str | None
    sent_at: datetime
    delivered_at: datetime | None
    external_id: str
    """WhatsApp's message id for what the person or an operator wrote; papo's reply id for a reply."""
    whatsapp_ids: list[str]
    """The ids WhatsApp gave a reply once delivered (empty for other rows)."""


@dataclass(frozen=True)
class HistoryPage:
    messages: list[HistoryRow]
    next_cursor: str | None
    """Pass as `before` for the next (older) page; None on the last page."""


def conversation_id_query(conversation: ConversationRef) -> Any:
    return select(CONVERSATIONS.c.id).where(
        CONVERSATIONS.c.instance == conversation.instance,
        CONVERSATIONS.c.user_id == conversation.user_id,
    )


async def history_page(
    engine: AsyncEngine, conversation: ConversationRef, *, limit: int, before: Cursor | None
) -> HistoryPage | None:
    """Up to `limit` messages older than `before` (the newest when None), newest first; None when the
    conversation does not exist."""
    async with engine.connect() as connection:
        conversation_id = await connection.scalar(conversation_id_query(conversation))
        if conversation_id is None:
            return None
        query = (
            select(
                MESSAGES.c.id,
                MESSAGES.c.role,
                MESSAGES.c.kind,
                MESSAGES.c.text,
                MESSAGES.c.transcription_failure,
                MESSAGES.c.sent_at,
                MESSAGES.c.delivered_at,
                MESSAGES.c.external_id,
                MESSAGES.c.whatsapp_ids,
            )
            .where(MESSAGES.c.conversation_id == conversation_id)
            .order_by(MESSAGES.c.sent_at.desc(), MESSAGES.c.id.desc())
            # one row more than asked tells whether an older page exists
            .limit(limit + 1)
        )
        if before is not None:
            # a row comparison, so PostgreSQL walks the (conversation_id, sent_at) index from the cursor
            query = query.where(
                tuple_(MESSAGES.c.sent_at, MESSAGES.c.id)
                < tuple_(literal(before.sent_at, DateTime(timezone=True)), literal(before.id, BigInteger))
            )
        rows = (await connection.execute(query)).all()
    page = [
        HistoryRow(
            id=row.id,
            role=row.role,
            kind=row.kind,
            text=row.text,
            transcription_failure=row.transcription_failure,
            sent_at=row.sent_at,
            delivered_at=row.delivered_at,
            external_id=row.external_id,
            whatsapp_ids=list(row.whatsapp_ids or ()),
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    next_cursor = Cursor(page[-1].sent_at, page[-1].id).encode() if more and page else None
    return HistoryPage(messages=page, next_cursor=next_cursor)
