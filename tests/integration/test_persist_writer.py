"""persist's writer straight against PostgreSQL: what a batch leaves in the tables when contracts about one
message or one conversation arrive together, twice, or in the wrong order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from papo_common.contracts import (
    AudioAttachment,
    ConversationRef,
    InboundMessage,
    Reply,
    ReplySent,
    Transcript,
)
from papo_common.db import asyncpg_dsn
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.metrics import REGISTRY
from papo_persist.database import PostgresWriter, create_staging_tables

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    dsn = asyncpg_dsn(database_url)
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2, init=create_staging_tables) as pool:
        yield pool


@pytest.fixture
def writer(pool: asyncpg.Pool) -> PostgresWriter:
    return PostgresWriter(pool, timeout_s=10)


@pytest.fixture
def ref() -> ConversationRef:
    return ConversationRef(instance=f"w-{uuid.uuid4().hex[:10]}", user_id="5511999990000@s.whatsapp.net")


def message(ref: ConversationRef, message_id: str, seconds: int = 0, **overrides: Any) -> InboundMessage:
    fields: dict[str, Any] = {
        "conversation": ref,
        "message_id": message_id,
        "chat_id": ref.user_id,
        "push_name": "Ana",
        "kind": "text",
        "text": "oi",
        "sent_at": NOW + timedelta(seconds=seconds),
        "received_at": NOW + timedelta(seconds=seconds),
    }
    return InboundMessage.model_validate(fields | overrides)


def voice_note(ref: ConversationRef, message_id: str) -> InboundMessage:
    return message(ref, message_id, kind="audio", text=None, audio=AudioAttachment(base64="T2dnUw=="))


def transcript(ref: ConversationRef, message_id: str, text: str | None) -> Transcript:
    return Transcript(
        conversation=ref, message_id=message_id, sent_at=NOW, text=text, failure=(text and None) or "timeout"
    )


def reply(ref: ConversationRef, reply_id: str, text: str = "Claro!") -> Reply:
    return Reply(
        reply_id=reply_id, burst_id="B1", conversation=ref, chat_id=ref.user_id, text=text,
        in_reply_to=("M1",), model="m", created_at=NOW + timedelta(seconds=10),
    )  # fmt: skip


async def rows(pool: asyncpg.Pool, table: str, instance: str) -> list[dict[str, Any]]:
    found = await pool.fetch(f"SELECT * FROM {table} WHERE instance = $1 ORDER BY id", instance)
    return [dict(row) for row in found]


def persisted(kind: str) -> float:
    return REGISTRY.get_sample_value("papo_persisted_rows_total", {"kind": kind}) or 0.0


async def test_a_conversation_follows_its_newest_message_whatever_order_they_arrive_in(
    writer: PostgresWriter, pool: asyncpg.Pool, ref: ConversationRef
) -> None:
    await writer.write([message(ref, "M2", seconds=60, push_name="Ana Maria", chat_id="new@lid")])
    await writer.write([message(ref, "M1", seconds=0, push_name="Ana", chat_id="old@s.whatsapp.net")])

    [conversation] = await rows(pool, "conversations", ref.instance)
    assert (conversation["chat_id"], conversation["push_name"]) == ("new@lid", "Ana Maria")
    assert conversation["last_message_at"] == NOW + timedelta(seconds=60)


async def test_a_newer_message_without_a_name_keeps_the_name_already_known(
    writer: PostgresWriter, pool: asyncpg.Pool, ref: ConversationRef
) -> None:
    await writer.write([message(ref, "M1", push_name="Ana")])
    await writer.write([message(ref, "M2", seconds=5, push_name=None)])

    [conversation] = await rows(pool, "conversations", ref.instance)
    assert (conversation["push_name"], conversation["last_message_at"]) == ("Ana", NOW + timedelta(seconds=5))


async def test_a_voice_note_and_its_transcript_in_one_batch_are_one_row(
    writer: PostgresWriter, pool: asyncpg.Pool, ref: ConversationRef
) -> None:
    await writer.write([transcript(ref, "A1", "bolo de cenoura"), voice_note(ref, "A1")])

    [row] = await rows(pool, "messages", ref.instance)
    assert (row["kind"], row["text"], row["received_at"]) == ("audio", "bolo de cenoura", NOW)


async def test_a_late_failed_transcript_never_erases_a_successful_one(
    writer: PostgresWriter, pool: asyncpg.Pool, ref: ConversationRef
) -> None:
    await writer.write([voice_note(ref, "A1")])
    await writer.write([transcript(ref, "A1", "bolo")])
    await writer.write([transcript(ref, "A1", None)])

    [row] = await rows(pool, "messages", ref.instance)
    assert (row["text"], row["transcription_failure"]) == ("bolo", None)


async def test_a_successful_transcript_replaces_an_earlier_failure(
    writer: PostgresWriter, pool: asyncpg.Pool, ref: ConversationRef
) -> None:
    await writer.write([voice_note(ref, "A1"), transcript(ref, "A1", None)])
    await writer.write([transcript(ref, "A1", "bolo")])

    [row] = await rows(pool, "messages", ref.instance)
    assert (row["text"], row["transcription_failure"]) == ("bolo", None)


async def test_the_first_reply_stored_under_an_id_wins(
    writer: PostgresWriter, pool: asyncpg.Pool, ref: ConversationRef
) -> None:
    sent = ReplySent(reply_id="R1", conversation=ref, whatsapp_message_ids=("W1",), sent_at=NOW)
    await writer.write([sent, reply(ref, "R1", "primeira")])
    await writer.write([reply(ref, "R1", "regenerada")])

    [row] = await rows(pool, "messages", ref.instance)
    assert (row["text"], row["whatsapp_ids"]) == ("primeira", ["W1"])


async def test_only_rows_actually_written_are_counted(writer: PostgresWriter, ref: ConversationRef) -> None:
    before = persisted("inbound")
    await writer.write([message(ref, "M1"), message(ref, "M1"), message(ref, "M2", seconds=1)])
    await writer.write([message(ref, "M1")])

    assert persisted("inbound") - before == 2


async def test_a_row_postgres_refuses_is_a_permanent_error(
    writer: PostgresWriter, pool: asyncpg.Pool, ref: ConversationRef
) -> None:
    # a valid contract that a rule of this database refuses (a constraint added after the contract was made)
    await pool.execute("ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (text IS DISTINCT FROM 'poison')")
    try:
        with pytest.raises(PermanentError, match="no_poison"):
            await writer.write([message(ref, "M1", text="poison")])
    finally:
        await pool.execute("ALTER TABLE messages DROP CONSTRAINT no_poison")


async def test_a_write_that_outlives_its_timeout_means_postgres_is_unavailable_and_the_pool_recovers(
    pool: asyncpg.Pool, writer: PostgresWriter, ref: ConversationRef
) -> None:
    hurried = PostgresWriter(pool, timeout_s=0.000_001)

    with pytest.raises(DependencyUnavailable):
        await hurried.write([message(ref, "M1")])

    await writer.write([message(ref, "M2")])
    assert [row["external_id"] for row in await rows(pool, "messages", ref.instance)][-1] == "M2"
