"""Writes a batch of contracts to PostgreSQL in one transaction, and says what a database error means.

A batch is copied (binary COPY) into two temporary staging tables, then moved into `conversations` and
`messages` by one `INSERT ... SELECT ... ON CONFLICT` per statement: a handful of round trips whatever the
batch's size. Every upsert writes nothing when the row already says what the contract says, so a redelivery
is a no-op, and each message statement counts the rows it actually wrote, which is what the metric counts.

Errors:
- the row can never be written (a value too long, a constraint it breaks): `PermanentError`, so the message
  goes to the dead-letter queue at once;
- PostgreSQL cannot be reached, is shutting down, or the database is gone: `DependencyUnavailable`, so the
  batch is retried as a whole; no message is to blame;
- anything else the database says (a deadlock, a missing table): `WriteFailed`, retried by redelivery.
The new error carries the SQLSTATE and PostgreSQL's own message, never the statement's parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from papo_common.db.outages import postgres_reason, postgres_unavailable
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.metrics import PERSISTED_ROWS
from papo_persist.rows import PersistedContract, WriteKind, plan_batch, row_write

STAGING_TABLES = """
CREATE TEMPORARY TABLE IF NOT EXISTS persist_conversations (
    instance text NOT NULL, user_id text NOT NULL, chat_id text NOT NULL, push_name text,
    last_message_at timestamptz, known boolean NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS persist_messages (
    write_kind text NOT NULL, user_id text NOT NULL, instance text NOT NULL, external_id text NOT NULL,
    role text, kind text, text text, transcription_failure text, burst_id text, in_reply_to text[],
    model text, whatsapp_ids text[], sent_at timestamptz, received_at timestamptz, delivered_at timestamptz
) ON COMMIT DELETE ROWS;
"""
"""Created once per connection; emptied by every commit."""

CONVERSATION_COLUMNS = ("instance", "user_id", "chat_id", "push_name", "last_message_at", "known")
MESSAGE_COLUMNS = (
    "instance", "external_id", "role", "kind", "text", "transcription_failure", "burst_id", "in_reply_to",
    "model", "whatsapp_ids", "sent_at", "received_at", "delivered_at",
)  # fmt: skip

_NEWER = "(c.last_message_at IS NULL OR EXCLUDED.last_message_at >= c.last_message_at)"
_CHAT_ID = f"CASE WHEN {_NEWER} THEN EXCLUDED.chat_id ELSE c.chat_id END"
_PUSH_NAME = (
    f"CASE WHEN {_NEWER} THEN coalesce(EXCLUDED.push_name, c.push_name) "
    "ELSE coalesce(c.push_name, EXCLUDED.push_name) END"
)
_LAST_MESSAGE_AT = "greatest(c.last_message_at, EXCLUDED.last_message_at)"

UPSERT_KNOWN_CONVERSATIONS = f"""
INSERT INTO conversations AS c (instance, user_id, chat_id, push_name, last_message_at)
SELECT instance, user_id, chat_id, push_name, last_message_at FROM persist_conversations WHERE known
ORDER BY instance, user_id
ON CONFLICT (instance, user_id) DO UPDATE
SET chat_id = {_CHAT_ID}, push_name = {_PUSH_NAME}, last_message_at = {_LAST_MESSAGE_AT}
WHERE ({_CHAT_ID}, {_PUSH_NAME}, {_LAST_MESSAGE_AT}) IS DISTINCT FROM (c.chat_id, c.push_name, c.last_message_at)
"""  # noqa: S608 - made of constants only
"""Monotonic: chat id and push name follow the newest message, `last_message_at` only moves forward, and an
older message changes nothing."""

ENSURE_PLACEHOLDER_CONVERSATIONS = """
INSERT INTO conversations (instance, user_id, chat_id, push_name, last_message_at)
SELECT instance, user_id, chat_id, push_name, last_message_at FROM persist_conversations WHERE NOT known
ORDER BY instance, user_id
ON CONFLICT (instance, user_id) DO NOTHING
"""
"""Conversations that only a transcript, a delivery or a session closing names, created if missing."""

LINK_IDENTITIES = """
INSERT INTO person_identities (instance, jid, user_id) VALUES ($1, $2, $3)
ON CONFLICT (instance, jid) DO NOTHING
"""
"""Which conversation a person's JIDs belong to; the first link of a JID stays, as in Redis."""

_TRANSCRIPT_TEXT = "coalesce(EXCLUDED.text, m.text)"
_TRANSCRIPT_FAILURE = (
    "CASE WHEN EXCLUDED.text IS NOT NULL THEN NULL WHEN m.text IS NULL THEN EXCLUDED.transcription_failure "
    "ELSE m.transcription_failure END"
)
_ON_CONFLICT: dict[WriteKind, str] = {
    # completes a row a transcript created first, keeping its transcript
    "inbound": (
        "DO UPDATE SET conversation_id = EXCLUDED.conversation_id, role = EXCLUDED.role, kind = EXCLUDED.kind, "
        "text = coalesce(m.text, EXCLUDED.text), sent_at = EXCLUDED.sent_at, received_at = EXCLUDED.received_at "
        "WHERE m.received_at IS NULL AND m.role <> 'assistant'"
    ),
    # a transcript with text wins; a failure never erases text already there
    "transcript": (
        f"DO UPDATE SET text = {_TRANSCRIPT_TEXT}, transcription_failure = {_TRANSCRIPT_FAILURE} "
        f"WHERE m.kind = 'audio' AND ({_TRANSCRIPT_TEXT}, {_TRANSCRIPT_FAILURE}) "
        "IS DISTINCT FROM (m.text, m.transcription_failure)"
    ),
    # completes a row a delivery created first; the first reply stored for an id wins
    "reply": (
        "DO UPDATE SET conversation_id = EXCLUDED.conversation_id, text = EXCLUDED.text, "
        "burst_id = EXCLUDED.burst_id, in_reply_to = EXCLUDED.in_reply_to, model = EXCLUDED.model, "
        "sent_at = EXCLUDED.sent_at WHERE m.text IS NULL AND m.role = 'assistant'"
    ),
    "delivery": (
        "DO UPDATE SET whatsapp_ids = EXCLUDED.whatsapp_ids, delivered_at = EXCLUDED.delivered_at "
        "WHERE m.delivered_at IS NULL AND m.role = 'assistant'"
    ),
    # a closing record never changes once written
    "session": "DO NOTHING",
}
_ON_CONFLICT["operator"] = _ON_CONFLICT["inbound"]


def upsert_messages(kind: WriteKind) -> str:
    """The statement that moves the staged rows of `kind` into `messages`; it returns how many it wrote."""
    columns = ", ".join(MESSAGE_COLUMNS)
    staged = ", ".join(f"s.{name}" for name in MESSAGE_COLUMNS)
    return f"""
WITH written AS (
    INSERT INTO messages AS m (conversation_id, {columns})
    SELECT c.id, {staged} FROM persist_messages s
    JOIN conversations c ON c.instance = s.instance AND c.user_id = s.user_id
    WHERE s.write_kind = '{kind}'
    ORDER BY s.instance, s.external_id
    ON CONFLICT (instance, external_id) {_ON_CONFLICT[kind]}
    RETURNING 1
)
SELECT count(*) FROM written
"""  # noqa: S608 - made of constants only


UPSERT_MESSAGES: dict[WriteKind, str] = {kind: upsert_messages(kind) for kind in _ON_CONFLICT}


async def create_staging_tables(connection: asyncpg.Connection) -> None:
    """The pool's per-connection setup."""
    await connection.execute(STAGING_TABLES)


class PostgresWriter:
    """Writes contracts as rows, all of a batch in one transaction or none; counts the rows written.

    Give it a pool, or let `open` make one inside the running event loop (a pool belongs to its loop).
    """

    def __init__(self, pool: asyncpg.Pool | None = None, *, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._written = {kind: PERSISTED_ROWS.labels(kind=kind) for kind in _ON_CONFLICT}

    async def open(self, dsn: str, *, max_size: int) -> None:
        """Make the pool. It connects on first use, so persist starts (and waits) while PostgreSQL is away."""
        self._pool = await asyncpg.create_pool(dsn, min_size=0, max_size=max_size, init=create_staging_tables)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def ping(self) -> None:
        """Raise unless PostgreSQL answers."""
        await self._open_pool().fetchval("SELECT 1")

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DependencyUnavailable("the PostgreSQL pool is not open")
        return self._pool

    async def write(self, contracts: Sequence[PersistedContract]) -> None:
        """Write `contracts` in one transaction. Raises `PermanentError` when a row can never be written,
        `DependencyUnavailable` when PostgreSQL cannot be reached (or takes longer than the timeout: the
        transaction may then have committed, which a retry turns into a no-op)."""
        plan = plan_batch([row_write(contract) for contract in contracts])
        conversations = [
            (*(row[name] for name in CONVERSATION_COLUMNS[:-1]), known)
            for known, rows in ((True, plan.known_conversations), (False, plan.placeholder_conversations))
            for row in rows
        ]
        messages = [
            (kind, write.conversation.user_id, *(write.message.get(name) for name in MESSAGE_COLUMNS))
            for kind, writes in plan.messages.items()
            for write in writes
        ]
        identities = [(row["instance"], row["jid"], row["user_id"]) for row in plan.identities]
        try:
            async with asyncio.timeout(self._timeout_s):
                written = await self._run(conversations, identities, messages, list(plan.messages))
        except Exception as error:
            translated = translate(error)
            if translated is error:
                raise
            raise translated from None  # the original's text may render the statement's parameters
        for kind, count in written.items():
            self._written[kind].inc(count)

    async def _run(
        self,
        conversations: list[tuple[Any, ...]],
        identities: list[tuple[str, str, str]],
        messages: list[tuple[Any, ...]],
        kinds: list[WriteKind],
    ) -> dict[WriteKind, int]:
        async with self._open_pool().acquire() as connection, connection.transaction():
            await connection.copy_records_to_table(
                "persist_conversations", records=conversations, columns=CONVERSATION_COLUMNS
            )
            await connection.execute(UPSERT_KNOWN_CONVERSATIONS)
            await connection.execute(ENSURE_PLACEHOLDER_CONVERSATIONS)
            if identities:
                await connection.executemany(LINK_IDENTITIES, identities)
            await connection.copy_records_to_table(
                "persist_messages", records=messages, columns=("write_kind", "user_id", *MESSAGE_COLUMNS)
            )
            return {kind: int(await connection.fetchval(UPSERT_MESSAGES[kind])) for kind in kinds}


class WriteFailed(Exception):
    """PostgreSQL refused a batch for a reason that a later attempt may not meet."""


_PERMANENT_SQLSTATE_CLASSES = (
    "22",  # data exception: a value too long, out of range, badly encoded
    "23",  # integrity constraint violation that no ON CONFLICT covers
    "54",  # program limit exceeded: a row too large to index
)


def translate(error: Exception) -> Exception:
    """The error to raise for `error`; `error` itself when it is not a database error (a bug stays a bug)."""
    if unavailable := postgres_unavailable(error):
        return unavailable
    if not isinstance(error, asyncpg.PostgresError):
        return error
    reason = postgres_reason(error)
    if str(error.sqlstate or "").startswith(_PERMANENT_SQLSTATE_CLASSES):
        return PermanentError(f"PostgreSQL refused the row: {reason}")
    return WriteFailed(reason)
