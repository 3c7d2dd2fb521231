"""The durable history: the `messages` rows persist wrote, read back when Redis has lost its copy.

Which of the person's messages are answered is read from the replies' `in_reply_to`, not from positions in
time: a message that arrived late (sent before a reply it is not covered by) is still unanswered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import asyncpg

from papo_common.contracts import UNDERSTOOD_NOTHING, ConversationRef
from papo_common.db import MessageRole, postgres_unavailable
from papo_common.errors import DependencyUnavailable
from papo_llm.prompt import PendingMessage, Turn, merge_consecutive
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


StoredRow = tuple[str, str, str, str | None, str | None, list[str] | None, datetime]
"""external_id, role, kind, text, transcription_failure, in_reply_to, sent_at"""


@dataclass(frozen=True)
class Recalled:
    """A conversation as PostgreSQL remembers it."""

    turns: list[Turn]
    """The current session's answered turns (plus carried-over ones), the pending messages left out."""
    pending: list[PendingMessage]
    """The person's messages no reply covers and no human answered after."""
    seen: list[str]
    """Ids of the person's messages that are answered or otherwise done with."""


def recall_from_rows(rows: Sequence[StoredRow], *, complete: bool, carryover_turns: int) -> Recalled:
    """Split stored rows (oldest first) into answered turns, pending messages and done message ids."""
    answered = {message_id for row in rows if row[1] == MessageRole.ASSISTANT for message_id in row[5] or ()}
    # a human's message settles whatever the person said before it (a session boundary does not: a close is
    # stamped with papo's clock, and can land after a message sent just before it)
    boundary = max((i for i, row in enumerate(rows) if row[1] == MessageRole.OPERATOR), default=-1)
    pending: list[PendingMessage] = []
    seen: list[str] = []
    for i, (external_id, role, kind, body, failure, _, sent_at) in enumerate(rows):
        if role != MessageRole.USER:
            continue
        turn = turn_from_row(role, kind, body, failure)
        if external_id in answered or (i < boundary and turn is not None):
            seen.append(external_id)
        elif turn is not None:
            pending.append(PendingMessage(int(sent_at.timestamp() * 1000), 0, i, external_id, turn.content))
    pending_ids = {message.message_id for message in pending}
    history_rows = [(row[1], row[2], row[3], row[4]) for row in rows if row[0] not in pending_ids]
    turns = session_turns(history_rows, complete=complete, carryover_turns=carryover_turns)
    return Recalled(turns=turns, pending=sorted(pending), seen=seen)


RECALL_ROWS = """
SELECT m.external_id, m.role, m.kind, m.text, m.transcription_failure, m.in_reply_to, m.sent_at
FROM messages m JOIN conversations c ON c.id = m.conversation_id
WHERE c.instance = $1 AND c.user_id = $2
ORDER BY m.sent_at DESC, m.received_at DESC NULLS FIRST, m.id DESC
LIMIT $3
"""
"""A conversation's last rows, newest first, as `StoredRow`s. `sent_at` has whole seconds for what the person
sent, so ties go by when ingest received each message (what the business sent, which has none, after them),
then by row: persist writes a batch's rows in no particular order."""


class HistoryArchive:
    """Reads a conversation's last messages from PostgreSQL, through an asyncpg pool of its own.

    The first turn of every conversation reads here. Through SQLAlchemy (a `select()` built, cache-keyed and
    compiled per call, a pre-ping per checkout) one read cost about 1 ms of the llm's CPU; plain SQL on
    asyncpg costs about 0.14 ms (bench/llm_recall.py). `open` makes the pool inside the running event loop
    (a pool belongs to its loop).
    """

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None

    async def open(self, dsn: str, *, max_size: int) -> None:
        """Make the pool. It connects on first use, so the llm starts (and waits) while PostgreSQL is away."""
        self._pool = await asyncpg.create_pool(dsn, min_size=0, max_size=max_size)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def recall(
        self,
        conversation: ConversationRef,
        *,
        max_rows: int,
        carryover_turns: int = 0,
        exclude_message_ids: Sequence[str] = (),
    ) -> Recalled:
        """The conversation from its last `max_rows` messages; `exclude_message_ids` (messages Redis still
        holds as pending) are left out of the turns."""
        if max_rows <= 0:
            return Recalled(turns=[], pending=[], seen=[])
        newest_first = await self._fetch(RECALL_ROWS, conversation.instance, conversation.user_id, max_rows)
        rows = [cast(StoredRow, tuple(row)) for row in reversed(newest_first)]
        excluded = set(exclude_message_ids)
        kept = [row for row in rows if row[0] not in excluded]
        return recall_from_rows(
            kept,
            complete=len(rows) < max_rows,
            carryover_turns=carryover_turns,
        )

    async def ping(self) -> None:
        """Readiness: PostgreSQL answers a query."""
        await self._fetch("SELECT 1")

    async def _fetch(self, query: str, *arguments: object) -> list[asyncpg.Record]:
        """Rows of `query`. PostgreSQL being away (unreachable, restarting, a connection it cut) raises
        `DependencyUnavailable`, which redelivers the turn later; any other error is a bug and stays itself."""
        if self._pool is None:
            raise DependencyUnavailable("the PostgreSQL pool is not open")
        try:
            rows: list[asyncpg.Record] = await self._pool.fetch(query, *arguments)
        except Exception as error:
            if unavailable := postgres_unavailable(error):
                raise unavailable from None  # the original's text may render the statement's parameters
            raise
        return rows
