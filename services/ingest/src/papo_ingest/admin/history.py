"""A conversation's messages from PostgreSQL, newest first, one page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Table, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from papo_common.contracts import ConversationRef
from papo_common.db import Conversation, Message
from papo_ingest.admin.cursor import Cursor

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
