"""The admin API over the real RabbitMQ, Redis and PostgreSQL: human takeover (pause, resume, status),
history pages, erasure of a person's data, and dead letters listed without loss and replayed to where they
came from."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from papo_common import control
from papo_common.contracts import ConversationRef
from papo_common.redis import ConversationKeys
from papo_ingest.app import create_app
from papo_ingest.settings import IngestSettings

ADMIN_TOKEN = "admin-integration-" + "a" * 40
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def admin_settings(rabbitmq_url: str, redis_url: str, redis_prefix: str, database_url: str, **overrides: Any):
    values: dict[str, Any] = {
        "rabbitmq_url": rabbitmq_url,
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "database_url": database_url,
        "webhook_token": "webhook-integration-" + "w" * 40,
        "admin_token": ADMIN_TOKEN,
        "log_format": "text",
        **overrides,
    }
    return IngestSettings(**values)


@pytest.fixture
def settings(rabbitmq_url: str, redis_url: str, redis_prefix: str, database_url: str) -> IngestSettings:
    return admin_settings(rabbitmq_url, redis_url, redis_prefix, database_url)


@pytest.fixture
async def admin(settings: IngestSettings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(settings)
    async with AsyncTestClient(app, timeout=30) as client:
        assert await app.state.broker_link.wait_connected(10)
        client.headers.update(ADMIN)
        yield client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def conversation() -> ConversationRef:
    """A conversation of an instance no other test uses (the database lives for the whole session)."""
    return ConversationRef(instance=f"loja-{uuid.uuid4().hex[:8]}", user_id="5511999990000@s.whatsapp.net")


def url(conversation: ConversationRef, suffix: str = "", *, user: str | None = None) -> str:
    user_id = user if user is not None else conversation.user_id
    return f"/admin/instances/{conversation.instance}/conversations/{user_id}{suffix}"


async def insert_conversation(
    engine: AsyncEngine, conversation: ConversationRef, messages: int, *, tag: str = ""
) -> int:
    """A conversation row and `messages` user messages (`<tag>m0`, `<tag>m1`...), one a minute from T0;
    returns the conversation id."""
    async with engine.begin() as connection:
        conversation_id = await connection.scalar(
            text("INSERT INTO conversations (instance, user_id, chat_id) VALUES (:i, :u, :u) RETURNING id"),
            {"i": conversation.instance, "u": conversation.user_id},
        )
        for n in range(messages):
            await insert_message(
                connection, conversation_id, conversation, f"{tag}m{n}", T0 + timedelta(minutes=n)
            )
    return int(conversation_id)


async def insert_message(
    connection: Any, conversation_id: int, conversation: ConversationRef, external_id: str, sent_at: datetime
) -> int:
    return int(
        await connection.scalar(
            text(
                "INSERT INTO messages (conversation_id, instance, external_id, role, kind, text, sent_at)"
                " VALUES (:c, :i, :e, 'user', 'text', :t, :s) RETURNING id"
            ),
            {
                "c": conversation_id,
                "i": conversation.instance,
                "e": external_id,
                "t": f"text {external_id}",
                "s": sent_at,
            },
        )
    )


# --- human takeover -----------------------------------------------------------------------------------------


async def test_pause_then_resume(
    admin: AsyncTestClient[Litestar], redis_client: Redis, redis_prefix: str, conversation: ConversationRef
) -> None:
    paused = await admin.post(url(conversation, "/pause", user="5511999990000"), json={"minutes": 30})
    assert paused.status_code == 200
    answer = paused.json()
    assert (answer["paused"], answer["reason"], answer["user_id"]) == (True, "admin", conversation.user_id)
    assert 1790 < answer["seconds_left"] <= 1800
    assert await control.paused_reason(redis_client, redis_prefix, conversation) == "admin"
    assert 1790 < await control.paused_for(redis_client, redis_prefix, conversation) <= 1800

    status = (await admin.get(url(conversation, "/status"))).json()
    assert (status["paused"], status["reason"]) == (True, "admin")

    resumed = await admin.post(url(conversation, "/resume"))
    assert resumed.json() | {"seconds_left": 0} == {
        "instance": conversation.instance,
        "user_id": conversation.user_id,
        "paused": False,
        "reason": None,
        "seconds_left": 0,
        "was_paused": True,
    }
    assert await control.paused_reason(redis_client, redis_prefix, conversation) is None
    assert (await admin.post(url(conversation, "/resume"))).json()["was_paused"] is False


async def test_an_admin_pause_replaces_an_operators(
    admin: AsyncTestClient[Litestar], redis_client: Redis, redis_prefix: str, conversation: ConversationRef
) -> None:
    await control.pause(redis_client, redis_prefix, conversation, seconds=60, reason="operator")
    assert (await admin.get(url(conversation, "/status"))).json()["reason"] == "operator"
    await admin.post(url(conversation, "/pause"), json={"minutes": 120})
    assert await control.paused_reason(redis_client, redis_prefix, conversation) == "admin"
    assert await control.paused_for(redis_client, redis_prefix, conversation) > 7000


# --- history ------------------------------------------------------------------------------------------------


async def test_history_pages_newest_first_with_a_stable_cursor(
    admin: AsyncTestClient[Litestar], db: AsyncEngine, conversation: ConversationRef
) -> None:
    conversation_id = await insert_conversation(db, conversation, messages=4)
    async with db.begin() as connection:
        # same sent_at as m3: the id breaks the tie
        twin = await insert_message(
            connection, conversation_id, conversation, "m3-twin", T0 + timedelta(minutes=3)
        )
        await connection.execute(
            text(
                "UPDATE messages SET delivered_at = :d, whatsapp_ids = ARRAY['3EB0AA','3EB0BB'] WHERE id = :id"
            ),
            {"d": T0 + timedelta(minutes=4), "id": twin},
        )
    other = ConversationRef(instance=conversation.instance, user_id="5511888880000@s.whatsapp.net")
    await insert_conversation(db, other, messages=3, tag="other-")

    first = (await admin.get(url(conversation, "/messages?limit=2", user="5511999990000"))).json()
    assert [m["external_id"] for m in first["messages"]] == ["m3-twin", "m3"]
    assert first["messages"][0] == {
        "id": twin,
        "role": "user",
        "kind": "text",
        "text": "text m3-twin",
        "transcription_failure": None,
        "sent_at": "2026-11-22T12:03:00Z",
        "delivered_at": "2026-11-22T12:04:00Z",
        "external_id": "m3-twin",
        "whatsapp_ids": ["3EB0AA", "3EB0BB"],
    }

    # a message arriving between two page reads shifts nothing: the cursor is a position, not an offset
    async with db.begin() as connection:
        await insert_message(connection, conversation_id, conversation, "m-new", T0 + timedelta(minutes=9))
    second = (
        await admin.get(url(conversation, "/messages"), params={"limit": 2, "before": first["next_cursor"]})
    ).json()
    assert [m["external_id"] for m in second["messages"]] == ["m2", "m1"]
    third = (
        await admin.get(url(conversation, "/messages"), params={"limit": 2, "before": second["next_cursor"]})
    ).json()
    assert [m["external_id"] for m in third["messages"]] == ["m0"]
    assert third["next_cursor"] is None
    again = (
        await admin.get(url(conversation, "/messages"), params={"limit": 2, "before": first["next_cursor"]})
    ).json()
    assert again == second

    everything = (await admin.get(url(conversation, "/messages?limit=200"))).json()
    assert [m["external_id"] for m in everything["messages"]] == ["m-new", "m3-twin", "m3", "m2", "m1", "m0"]
    assert everything["next_cursor"] is None


async def test_history_of_an_unknown_conversation_is_404(
    admin: AsyncTestClient[Litestar], conversation: ConversationRef
) -> None:
    response = await admin.get(url(conversation, "/messages"))
    assert response.status_code == 404
    assert response.json() == {"status": "error", "detail": "no such conversation"}


async def test_history_of_a_conversation_without_messages_is_an_empty_page(
    admin: AsyncTestClient[Litestar], db: AsyncEngine, conversation: ConversationRef
) -> None:
    await insert_conversation(db, conversation, messages=0)
    assert (await admin.get(url(conversation, "/messages"))).json() == {"messages": [], "next_cursor": None}


# --- erasure ------------------------------------------------------------------------------------------------


async def redis_keys(redis: Redis, pattern: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=pattern)]


async def test_erasure_leaves_nothing_and_a_second_erasure_is_a_no_op(
    admin: AsyncTestClient[Litestar],
    db: AsyncEngine,
    redis_client: Redis,
    redis_prefix: str,
    conversation: ConversationRef,
) -> None:
    await insert_conversation(db, conversation, messages=3)
    keys = ConversationKeys(redis_prefix, conversation)
    await control.pause(redis_client, redis_prefix, conversation, seconds=600, reason="admin")
    await redis_client.set(keys.inbound_seq, 3)
    await redis_client.rpush(keys.history, "turn")
    for n in range(1200):  # more than one SCAN/DELETE batch
        await redis_client.set(keys.scoped(f"debounce:item:{n}"), "x")
    # the same person on another instance, and another person on this one, are other conversations
    survivors = [
        ConversationRef(instance=conversation.instance + "-2", user_id=conversation.user_id),
        ConversationRef(instance=conversation.instance, user_id="5511888880000@s.whatsapp.net"),
    ]
    for n, survivor in enumerate(survivors):
        await insert_conversation(db, survivor, messages=2, tag=f"survivor{n}-")
        await redis_client.set(ConversationKeys(redis_prefix, survivor).inbound_seq, 1)

    erased = await admin.delete(url(conversation, user="5511999990000"))
    assert erased.status_code == 200
    assert erased.json() == {
        "instance": conversation.instance,
        "user_id": conversation.user_id,
        "conversations_deleted": 1,
        "messages_deleted": 3,
        "redis_keys_deleted": 1203,
        "redis_index_entries_deleted": 0,
    }
    async with db.connect() as connection:
        left = await connection.scalar(
            text("SELECT count(*) FROM conversations WHERE instance = :i AND user_id = :u"),
            {"i": conversation.instance, "u": conversation.user_id},
        )
        orphans = await connection.scalar(
            text(
                "SELECT count(*) FROM messages m LEFT JOIN conversations c ON c.id = m.conversation_id WHERE c.id IS NULL"
            )
        )
        kept = await connection.scalar(
            text("SELECT count(*) FROM messages WHERE instance LIKE :i"), {"i": conversation.instance + "%"}
        )
    assert (left, orphans, kept) == (0, 0, 4)
    assert await redis_keys(redis_client, keys.pattern) == []
    for survivor in survivors:
        assert await redis_client.get(ConversationKeys(redis_prefix, survivor).inbound_seq) == b"1"

    again = await admin.delete(url(conversation))
    assert again.status_code == 200
    assert again.json() | {"instance": None, "user_id": None} == {
        "instance": None,
        "user_id": None,
        "conversations_deleted": 0,
        "messages_deleted": 0,
        "redis_keys_deleted": 0,
        "redis_index_entries_deleted": 0,
    }


async def test_erasing_an_instance_named_like_a_glob_touches_no_other_instance(
    admin: AsyncTestClient[Litestar], redis_client: Redis, redis_prefix: str, conversation: ConversationRef
) -> None:
    neighbour = ConversationKeys(redis_prefix, conversation)
    await redis_client.set(neighbour.inbound_seq, 1)
    wildcard = ConversationRef(instance=conversation.instance[:4] + "*", user_id=conversation.user_id)
    await redis_client.set(ConversationKeys(redis_prefix, wildcard).inbound_seq, 1)

    response = await admin.delete(url(wildcard))
    assert response.json()["redis_keys_deleted"] == 1
    assert await redis_client.get(neighbour.inbound_seq) == b"1"


# --- PostgreSQL is the admin API's alone -------------------------------------------------------------------


async def test_postgresql_down_is_503_for_admin_and_webhooks_stay_ready(
    rabbitmq_url: str, redis_url: str, redis_prefix: str, conversation: ConversationRef
) -> None:
    settings = admin_settings(
        rabbitmq_url, redis_url, redis_prefix, "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"
    )
    app = create_app(settings)
    async with AsyncTestClient(app) as client:
        assert await app.state.broker_link.wait_connected(10)
        ready = await client.get("/readyz")
        history = await client.get(url(conversation, "/messages"), headers=ADMIN)
        erase = await client.delete(url(conversation), headers=ADMIN)
        status = await client.get(url(conversation, "/status"), headers=ADMIN)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"rabbitmq": "ok", "redis": "ok"}
    assert (history.status_code, erase.status_code) == (503, 503)
    assert history.json() == {"status": "unavailable", "detail": "postgresql is unavailable"}
    assert status.status_code == 200, "pause and status need only Redis"


# --- who may use it -----------------------------------------------------------------------------------------


async def test_a_wrong_token_is_401_and_changes_nothing(
    admin: AsyncTestClient[Litestar], redis_client: Redis, redis_prefix: str, conversation: ConversationRef
) -> None:
    response = await admin.post(
        url(conversation, "/pause"), json={"minutes": 5}, headers={"authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert await control.paused_reason(redis_client, redis_prefix, conversation) is None


async def test_without_an_admin_token_the_admin_api_is_404(
    settings: IngestSettings, conversation: ConversationRef
) -> None:
    app = create_app(settings.model_copy(update={"admin_token": None}))
    async with AsyncTestClient(app) as client:
        response = await client.post(url(conversation, "/pause"), json={"minutes": 5}, headers=ADMIN)
    assert response.status_code == 404
