"""The durable history: the `messages` rows persist wrote, read back when Redis has lost its copy."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from papo_common.contracts import UNDERSTOOD_NOTHING, ConversationRef
from papo_common.db import Conversation, Message, MessageRole
from papo_llm.prompt import Turn, merge_consecutive
from papo_llm.settings import VOICE_NOTE_MARK


def turn_from_row(role: str, kind: str, text: str | None, transcription_failure: str | None) -> Turn | None:
    """A stored message as a turn. What the business said (papo or a human operator) is the assistant's
    side; a voice note shows its transcript, or the not-understood marker when transcription failed. None
    for a row with nothing to show yet (a voice note still being transcribed, a media message without text).
    """
    if role == MessageRole.SYSTEM:
        return None
    content = (text or "").strip()
    if kind == "audio" and role == MessageRole.USER:
        if not content and transcription_failure is None:
            return None
        content = VOICE_NOTE_MARK + (content or UNDERSTOOD_NOTHING)
    if not content:
        return None
    return Turn("user" if role == MessageRole.USER else "assistant", content)


Row = tuple[str, str, str | None, str | None]
"""role, kind, text, transcription_failure"""

SESSION_CLOSED = "session_closed"


def session_turns(rows: Sequence[Row], *, complete: bool, carryover_turns: int) -> list[Turn]:
    """The turns a new session starts with: everything after the last closing record, plus the last
    `carryover_turns` turns before it — none when the person asked to start over."""
    boundary = max((i for i, row in enumerate(rows) if row[1] == SESSION_CLOSED), default=None)
    if boundary is None:
        return turns_from_rows(rows, complete=complete)
    current = turns_from_rows(rows[boundary + 1 :], complete=True)
    carry = 0 if rows[boundary][2] == "reset" else carryover_turns
    earlier = turns_from_rows(rows[:boundary], complete=complete)[-carry:] if carry else []
    return merge_consecutive([*earlier, *current])


def turns_from_rows(rows: Sequence[Row], *, complete: bool) -> list[Turn]:
    """Rows (oldest first) as alternating turns. When the rows are a truncated window (`complete` False),
    the oldest turn may be missing some of its messages, so it is dropped rather than shown in part."""
    turns = merge_consecutive(turn for row in rows if (turn := turn_from_row(*row)) is not None)
    if not complete and turns:
        turns = turns[1:]
    return turns


class HistoryArchive:
    """Reads a conversation's last messages from PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def recent_turns(
        self,
        conversation: ConversationRef,
        *,
        exclude_message_ids: Sequence[str],
        until: datetime,
        max_rows: int,
        carryover_turns: int = 0,
    ) -> list[Turn]:
        """Turns from the last `max_rows` messages sent at or before `until`, leaving out the burst being
        answered (persist may have stored it already) and anything said after it (a later burst's)."""
        if max_rows <= 0:
            return []
        query = (
            select(
                col(Message.role), col(Message.kind), col(Message.text), col(Message.transcription_failure)
            )
            .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
            .where(
                col(Conversation.instance) == conversation.instance,
                col(Conversation.user_id) == conversation.user_id,
                # a closing record counts even when written after the burst's last message was sent: the
                # burst is being answered after the close, so it belongs to the new session
                or_(col(Message.sent_at) <= until, col(Message.kind) == SESSION_CLOSED),
                col(Message.external_id).not_in(list(exclude_message_ids)),
            )
            .order_by(col(Message.sent_at).desc(), col(Message.id).desc())
            .limit(max_rows)
        )
        async with self._engine.connect() as connection:
            rows = [tuple(row) for row in (await connection.execute(query)).all()]
        rows.reverse()
        return session_turns(
            rows,  # type: ignore[arg-type]
            complete=len(rows) < max_rows,
            carryover_turns=carryover_turns,
        )

    async def ping(self) -> None:
        """Readiness: PostgreSQL answers a query."""
        async with self._engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
