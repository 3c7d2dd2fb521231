"""persist keeps the identity map's lasting copy in PostgreSQL: each phone JID and `@lid` of a person, linked
to their one conversation, the first link winning as it does in Redis; operator messages are operator rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.db import asyncpg_dsn
from papo_common.db.engine import make_engine
from papo_ingest.admin.erasure import erase_rows
from papo_persist.database import PostgresWriter, create_staging_tables

NOW = datetime(2025, 10, 14, 11, 2, tzinfo=UTC)
PN = "5511912345678@s.whatsapp.net"
LID = "187340961234567@lid"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    dsn = asyncpg_dsn(database_url)
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2, init=create_staging_tables) as pool:
        yield pool


@pytest.fixture
def writer(pool: asyncpg.Pool) -> PostgresWriter:
    return PostgresWriter(pool, timeout_s=10)


@pytest.fixture
def instance() -> str:
    return f"id-{uuid.uuid4().hex[:10]}"


def message(
    instance: str, message_id: str, user_id: str, aliases: tuple[str, ...], **fields: Any
) -> InboundMessage:
    return InboundMessage(
        conversation=ConversationRef(instance=instance, user_id=user_id),
        message_id=message_id,
        chat_id=PN,
        aliases=aliases,
        kind="text",
        text="oi",
        sent_at=NOW,
        received_at=NOW,
        **fields,
    )


async def select(pool: asyncpg.Pool, query: str, instance: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await pool.fetch(query, instance)]


async def test_a_persons_jids_are_linked_to_their_conversation(
    writer: PostgresWriter, pool: asyncpg.Pool, instance: str
) -> None:
    await writer.write([message(instance, "M1", LID, (PN,)), message(instance, "M2", LID, (PN,))])
    identities = "SELECT jid, user_id FROM person_identities WHERE instance = $1 ORDER BY jid"
    assert await select(pool, identities, instance) == [(LID, LID), (PN, LID)]


async def test_the_first_link_of_a_jid_stays(
    writer: PostgresWriter, pool: asyncpg.Pool, instance: str
) -> None:
    await writer.write([message(instance, "M1", LID, (PN,))])
    await writer.write([message(instance, "M2", PN, (LID,))])
    identities = "SELECT jid, user_id FROM person_identities WHERE instance = $1 ORDER BY jid"
    assert await select(pool, identities, instance) == [(LID, LID), (PN, LID)]


async def test_a_message_naming_one_jid_links_nothing(
    writer: PostgresWriter, pool: asyncpg.Pool, instance: str
) -> None:
    await writer.write([message(instance, "M1", PN, ())])
    assert await select(pool, "SELECT jid FROM person_identities WHERE instance = $1", instance) == []


async def test_an_operators_send_is_an_operator_row_with_its_text(
    writer: PostgresWriter, pool: asyncpg.Pool, instance: str
) -> None:
    operator = message(instance, "OP1", PN, (), from_me=True, source="send.message").model_copy(
        update={"text": "Aqui é a Carla, assumo daqui."}
    )
    await writer.write([operator])
    query = "SELECT external_id, role, text FROM messages WHERE instance = $1"
    assert await select(pool, query, instance) == [("OP1", "operator", "Aqui é a Carla, assumo daqui.")]


async def test_erasure_deletes_the_persons_links_only(
    writer: PostgresWriter, pool: asyncpg.Pool, instance: str, database_url: str
) -> None:
    await writer.write([message(instance, "M1", LID, (PN,))])
    await writer.write([message(instance, "M2", "99887766@lid", ("5521900000000@s.whatsapp.net",))])
    engine = make_engine(database_url)
    try:
        await erase_rows(engine, ConversationRef(instance=instance, user_id=LID))
    finally:
        await engine.dispose()
    identities = "SELECT jid, user_id FROM person_identities WHERE instance = $1 ORDER BY jid"
    assert await select(pool, identities, instance) == [
        ("5521900000000@s.whatsapp.net", "99887766@lid"),
        ("99887766@lid", "99887766@lid"),
    ]
