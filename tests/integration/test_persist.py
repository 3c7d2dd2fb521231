"""persist over the real RabbitMQ and PostgreSQL: contracts published to the `papo` exchange become rows, once,
in few transactions, whatever order they arrive in; a row that can never be written is dead-lettered alone;
while PostgreSQL is away nothing is acknowledged, nothing is dropped and nothing is dead-lettered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from papo_common.broker import make_broker, publish
from papo_common.contracts import (
    AudioAttachment,
    Contract,
    ConversationRef,
    InboundMessage,
    Reply,
    ReplySent,
    SessionClosed,
    Transcript,
)
from papo_common.db import asyncpg_dsn
from papo_common.db.migrate import upgrade
from papo_common.metrics import REGISTRY
from papo_common.topology import DEBOUNCE, DELIVER, EXCHANGE, PERSIST, TRANSCRIBE, declare_topology
from papo_persist.app import create_app
from papo_persist.consumer import BatchConsumer
from papo_persist.settings import PersistSettings
from papo_testing import infra
from papo_testing.chaos import drop_broker_connections

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CLOSED_PORT_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"


# --- helpers -------------------------------------------------------------------------------------------------


def persist_settings(rabbitmq_url: str, database_url: str, **overrides: Any) -> PersistSettings:
    fields: dict[str, Any] = {"log_format": "text", "persist_outage_backoff_max_s": 0.2}
    return PersistSettings(rabbitmq_url=rabbitmq_url, database_url=database_url, **(fields | overrides))


@asynccontextmanager
async def running(settings: PersistSettings) -> AsyncIterator[BatchConsumer]:
    """persist, started as its container starts it; yields its consumer to read its counters."""
    app = create_app(settings)
    async with app:
        yield app.context.get("persist_consumer")


@asynccontextmanager
async def publisher(rabbitmq_url: str) -> AsyncIterator[Callable[[Iterable[Contract]], Awaitable[None]]]:
    broker = make_broker(persist_settings(rabbitmq_url, CLOSED_PORT_URL))
    async with broker:
        await declare_topology(broker)

        async def publish_all(messages: Iterable[Contract]) -> None:
            await asyncio.gather(*(publish(broker, message) for message in messages))

        yield publish_all


async def queue_depth(rabbitmq_url: str, queue: str) -> int:
    """Messages ready in `queue` (not counting those delivered and not yet acknowledged)."""
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def drain(rabbitmq_url: str, queue: str) -> list[bytes]:
    """Take every ready message out of `queue`; none when no test of this session declared it yet."""
    connection = await aio_pika.connect(rabbitmq_url)
    bodies = []
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return bodies
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            bodies.append(message.body)
    return bodies


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def until_committed(batcher: BatchConsumer, items: int) -> None:
    async def committed() -> bool:
        return batcher.stats.items >= items

    await eventually(committed)


def persisted(kind: str) -> float:
    return REGISTRY.get_sample_value("papo_persisted_rows_total", {"kind": kind}) or 0.0


def messages_of(database_url: str, instance: str) -> Awaitable[list[asyncpg.Record]]:
    return query(
        database_url, "SELECT xmin::text AS tx, * FROM messages WHERE instance = $1 ORDER BY id", instance
    )


# --- contracts -----------------------------------------------------------------------------------------------


def conversation(instance: str, user: int = 1) -> ConversationRef:
    return ConversationRef(instance=instance, user_id=f"55119{user:08d}@s.whatsapp.net")


def text_message(ref: ConversationRef, message_id: str, seconds: int = 0, **overrides: Any) -> InboundMessage:
    fields: dict[str, Any] = {
        "conversation": ref,
        "message_id": message_id,
        "chat_id": ref.user_id,
        "push_name": "Ana",
        "kind": "text",
        "text": f"mensagem {message_id}",
        "sent_at": NOW + timedelta(seconds=seconds),
        "received_at": NOW + timedelta(seconds=seconds + 1),
    }
    return InboundMessage.model_validate(fields | overrides)


def voice_note(ref: ConversationRef, message_id: str) -> InboundMessage:
    return text_message(ref, message_id, kind="audio", text=None, audio=AudioAttachment(base64="T2dnUw=="))


def transcript(ref: ConversationRef, message_id: str, text: str | None = "quero um bolo") -> Transcript:
    return Transcript(
        conversation=ref, message_id=message_id, sent_at=NOW, text=text, failure=None if text else "timeout"
    )


def reply(ref: ConversationRef, reply_id: str) -> Reply:
    return Reply(
        reply_id=reply_id,
        burst_id=f"{ref.key}:1",
        conversation=ref,
        chat_id=ref.user_id,
        text="Claro! De que sabor?",
        in_reply_to=("T1", "A1"),
        model="gpt-4o-mini",
        created_at=NOW + timedelta(seconds=30),
    )


def reply_sent(ref: ConversationRef, reply_id: str) -> ReplySent:
    return ReplySent(
        reply_id=reply_id,
        conversation=ref,
        whatsapp_message_ids=("3EB0AA",),
        sent_at=NOW + timedelta(seconds=35),
    )


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture
def instance() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(rabbitmq_url: str, database_url: str) -> PersistSettings:
    return persist_settings(rabbitmq_url, database_url)


@pytest.fixture(autouse=True)
async def leave_no_messages_behind(rabbitmq_url: str) -> AsyncIterator[None]:
    """Every publish also reaches the other services' queues of this session's virtual host; empty them so a
    later test of another service does not find this test's messages."""
    yield
    for service_queue in (PERSIST, DEBOUNCE, TRANSCRIBE, DELIVER):
        for name in (service_queue.name, service_queue.dead_letter_name):
            await drain(rabbitmq_url, name)


# --- what lands where ----------------------------------------------------------------------------------------


async def test_each_contract_lands_as_its_row(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    ref = conversation(instance)
    contracts = [
        text_message(ref, "T1"),
        text_message(ref, "O1", seconds=5, from_me=True, push_name=None, text="Bom dia, aqui é a loja"),
        voice_note(ref, "A1"),
        transcript(ref, "A1"),
        reply(ref, "R1"),
        reply_sent(ref, "R1"),
    ]
    async with running(settings) as batcher, publisher(rabbitmq_url) as publish_all:
        for contract in contracts:  # one by one: this test is about rows, not about arrival order
            await publish_all([contract])
            await until_committed(batcher, contracts.index(contract) + 1)

    rows = {row["external_id"]: row for row in await messages_of(database_url, instance)}
    assert set(rows) == {"T1", "O1", "A1", "R1"}
    assert (rows["T1"]["role"], rows["T1"]["kind"], rows["T1"]["text"]) == ("user", "text", "mensagem T1")
    assert rows["T1"]["received_at"] == NOW + timedelta(seconds=1)
    assert (rows["O1"]["role"], rows["O1"]["text"]) == ("operator", "Bom dia, aqui é a loja")
    assert (rows["A1"]["role"], rows["A1"]["kind"], rows["A1"]["text"]) == ("user", "audio", "quero um bolo")
    assert rows["A1"]["transcription_failure"] is None
    r1 = rows["R1"]
    assert (r1["role"], r1["text"], r1["model"]) == ("assistant", "Claro! De que sabor?", "gpt-4o-mini")
    assert (r1["burst_id"], r1["in_reply_to"]) == (f"{ref.key}:1", ["T1", "A1"])
    assert (r1["whatsapp_ids"], r1["delivered_at"]) == (["3EB0AA"], NOW + timedelta(seconds=35))
    assert r1["sent_at"] == NOW + timedelta(seconds=30)
    assert len({row["conversation_id"] for row in rows.values()}) == 1

    [conv] = await query(database_url, "SELECT * FROM conversations WHERE instance = $1", instance)
    assert (conv["user_id"], conv["chat_id"], conv["push_name"]) == (ref.user_id, ref.user_id, "Ana")
    assert conv["last_message_at"] == NOW + timedelta(seconds=30)


async def test_redelivered_messages_write_nothing_twice(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    ref = conversation(instance)
    contracts = [
        text_message(ref, "T1"),
        voice_note(ref, "A1"),
        transcript(ref, "A1"),
        reply(ref, "R1"),
        reply_sent(ref, "R1"),
    ]
    async with running(settings) as batcher, publisher(rabbitmq_url) as publish_all:
        await publish_all(contracts)
        await until_committed(batcher, len(contracts))
        first_rows = await messages_of(database_url, instance)
        first_conversations = await query(
            database_url, "SELECT xmin::text, * FROM conversations WHERE instance = $1", instance
        )
        written_before = sum(persisted(kind) for kind in ("inbound", "transcript", "reply", "delivery"))

        await publish_all(contracts)
        await until_committed(batcher, 2 * len(contracts))

    assert await messages_of(database_url, instance) == first_rows, "same rows, same transactions (xmin)"
    assert await query(
        database_url, "SELECT xmin::text, * FROM conversations WHERE instance = $1", instance
    ) == (first_conversations)
    assert sum(persisted(kind) for kind in ("inbound", "transcript", "reply", "delivery")) == written_before
    assert await queue_depth(rabbitmq_url, PERSIST.name) == 0


async def test_a_session_closing_is_recorded_once_as_a_system_row(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    ref = conversation(instance)
    closed = SessionClosed(conversation=ref, reason="idle", closed_at=NOW + timedelta(hours=25))
    async with running(settings) as batcher, publisher(rabbitmq_url) as publish_all:
        await publish_all([text_message(ref, "T1"), closed, closed])
        await until_committed(batcher, 3)
    rows = await messages_of(database_url, instance)
    assert [(r["role"], r["kind"], r["text"]) for r in rows] == [
        ("user", "text", "mensagem T1"),
        ("system", "session_closed", "idle"),
    ]


async def test_a_transcript_before_its_voice_note_keeps_its_text_when_the_note_arrives(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    ref = conversation(instance)
    async with running(settings) as batcher, publisher(rabbitmq_url) as publish_all:
        await publish_all([transcript(ref, "A1")])
        await until_committed(batcher, 1)
        [early] = await messages_of(database_url, instance)
        assert (early["text"], early["received_at"]) == ("quero um bolo", None)

        await publish_all([voice_note(ref, "A1")])
        await until_committed(batcher, 2)

    [row] = await messages_of(database_url, instance)
    assert (row["role"], row["kind"], row["text"]) == ("user", "audio", "quero um bolo")
    assert row["received_at"] == NOW + timedelta(seconds=1)
    [conv] = await query(database_url, "SELECT * FROM conversations WHERE instance = $1", instance)
    assert (conv["push_name"], conv["last_message_at"]) == ("Ana", NOW)


async def test_a_failed_transcript_before_its_voice_note_is_recorded_as_a_failure(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    ref = conversation(instance)
    async with running(settings) as batcher, publisher(rabbitmq_url) as publish_all:
        await publish_all([transcript(ref, "A1", text=None)])
        await until_committed(batcher, 1)
        await publish_all([voice_note(ref, "A1")])
        await until_committed(batcher, 2)

    [row] = await messages_of(database_url, instance)
    assert (row["text"], row["transcription_failure"]) == (None, "timeout")
    assert row["received_at"] is not None


async def test_a_delivery_before_its_reply_is_kept_when_the_reply_arrives(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    ref = conversation(instance)
    async with running(settings) as batcher, publisher(rabbitmq_url) as publish_all:
        await publish_all([reply_sent(ref, "R1")])
        await until_committed(batcher, 1)
        [early] = await messages_of(database_url, instance)
        assert (early["role"], early["text"], early["whatsapp_ids"]) == ("assistant", None, ["3EB0AA"])

        await publish_all([reply(ref, "R1")])
        await until_committed(batcher, 2)

    [row] = await messages_of(database_url, instance)
    assert (row["text"], row["model"], row["whatsapp_ids"]) == (
        "Claro! De que sabor?",
        "gpt-4o-mini",
        ["3EB0AA"],
    )
    assert (row["sent_at"], row["delivered_at"]) == (NOW + timedelta(seconds=30), NOW + timedelta(seconds=35))


# --- batching and concurrency --------------------------------------------------------------------------------


async def test_200_messages_published_at_once_are_written_in_few_transactions_and_all_acked(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    contracts = [text_message(conversation(instance, i % 10), f"M{i}", seconds=i) for i in range(200)]
    async with publisher(rabbitmq_url) as publish_all:
        await publish_all(contracts)
    assert await queue_depth(rabbitmq_url, PERSIST.name) == 200

    async with running(settings) as batcher:
        await until_committed(batcher, 200)
        assert await queue_depth(rabbitmq_url, PERSIST.name) == 0

    rows = await messages_of(database_url, instance)
    transactions = {row["tx"] for row in rows}
    assert len(rows) == 200
    # 3 on an idle 2-CPU machine; the bound leaves room for a loaded one, where fewer deliveries make it
    # through the middlewares within one 50 ms window
    assert batcher.stats.batches <= 10
    assert len(transactions) == batcher.stats.batches, "each transaction stamps its rows with its own xmin"
    assert await queue_depth(rabbitmq_url, PERSIST.name) == 0, "nothing came back unacknowledged at stop"


async def test_two_replicas_writing_the_same_conversations_at_once_write_each_row_once(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    contracts = [text_message(conversation(instance, i % 3), f"M{i}", seconds=i) for i in range(300)]
    async with (
        running(settings) as first,
        running(settings) as second,
        publisher(rabbitmq_url) as publish_all,
    ):
        await asyncio.gather(publish_all(contracts), publish_all(reversed(contracts)))

        async def all_committed() -> bool:
            return first.stats.items + second.stats.items >= 600

        await eventually(all_committed)

    assert len(await messages_of(database_url, instance)) == 300
    conversations = await query(
        database_url, "SELECT user_id, last_message_at FROM conversations WHERE instance = $1", instance
    )
    last = {row["user_id"]: row["last_message_at"] for row in conversations}
    assert last == {conversation(instance, u).user_id: NOW + timedelta(seconds=297 + u) for u in range(3)}
    assert await queue_depth(rabbitmq_url, PERSIST.dead_letter_name) == 0


async def test_stopping_persist_while_a_batch_gathers_writes_it_before_letting_go(
    rabbitmq_url: str, database_url: str, instance: str
) -> None:
    settings = persist_settings(rabbitmq_url, database_url, persist_batch_wait_ms=1500)
    contracts = [text_message(conversation(instance), f"M{i}", seconds=i) for i in range(50)]
    async with publisher(rabbitmq_url) as publish_all:
        await publish_all(contracts)

    async with running(settings) as batcher:

        async def all_delivered() -> bool:
            return await queue_depth(rabbitmq_url, PERSIST.name) == 0

        await eventually(all_delivered)
        assert batcher.stats.items == 0, "the batch is still gathering when the stop begins"

    assert batcher.stats.items == 50, (
        "the broker's graceful stop waited for the handlers, and so for the batch"
    )
    assert len(await messages_of(database_url, instance)) == 50
    assert await queue_depth(rabbitmq_url, PERSIST.name) == 0


# --- failures ------------------------------------------------------------------------------------------------


async def test_a_valid_contract_the_database_refuses_is_dead_lettered_alone_and_its_batch_is_written(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    # a rule of this database that the contract does not know: the row is valid, PostgreSQL refuses it
    await query(database_url, "ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (text <> 'poison')")
    good = [text_message(conversation(instance), f"M{i}", seconds=i) for i in range(20)]
    bad = text_message(conversation(instance, 2), "BAD", text="poison")
    async with publisher(rabbitmq_url) as publish_all:
        await publish_all([*good[:10], bad, *good[10:]])

    try:
        async with running(settings) as batcher:
            await until_committed(batcher, 20)

            async def dead_lettered() -> bool:
                return await queue_depth(rabbitmq_url, PERSIST.dead_letter_name) == 1

            await eventually(dead_lettered)
            assert batcher.stats.fallbacks == 1, "one batch, retried message by message"
    finally:
        await query(database_url, "ALTER TABLE messages DROP CONSTRAINT no_poison")

    assert len(await messages_of(database_url, instance)) == 20
    [body] = await drain(rabbitmq_url, PERSIST.dead_letter_name)
    assert InboundMessage.model_validate_json(body) == bad
    assert await queue_depth(rabbitmq_url, PERSIST.name) == 0


async def test_a_body_that_is_no_contract_of_persist_is_dead_lettered_at_once(
    settings: PersistSettings, rabbitmq_url: str
) -> None:
    connection = await aio_pika.connect(rabbitmq_url)
    async with running(settings), connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE.name)
        body = b'{"type": "inbound_message", "version": 1, "message_id": "M1"}'
        await exchange.publish(
            aio_pika.Message(body, content_type="application/json"), routing_key="inbound.text"
        )

        async def dead_lettered() -> bool:
            return await queue_depth(rabbitmq_url, PERSIST.dead_letter_name) == 1

        await eventually(dead_lettered)

    assert await drain(rabbitmq_url, PERSIST.dead_letter_name) == [body]


async def until_retrying(batcher: BatchConsumer, retries: int) -> None:
    async def retried() -> bool:
        return batcher.stats.outage_retries >= retries

    await eventually(retried)


async def test_while_postgres_is_unreachable_nothing_is_acked_dropped_or_dead_lettered(
    rabbitmq_url: str, instance: str
) -> None:
    settings = persist_settings(rabbitmq_url, CLOSED_PORT_URL)
    contracts = [text_message(conversation(instance), f"M{i}") for i in range(3)]
    async with publisher(rabbitmq_url) as publish_all:
        await publish_all(contracts)

    async with running(settings) as batcher:
        await until_retrying(batcher, 8)  # well past the queue's delivery limit (5), had each try been one
        assert batcher.stats.items == 0
        assert await queue_depth(rabbitmq_url, PERSIST.name) == 0, "held, unacknowledged, by the consumer"
        assert await queue_depth(rabbitmq_url, PERSIST.dead_letter_name) == 0

    # stopped during the outage: RabbitMQ takes the messages back, for the next consumer
    assert await queue_depth(rabbitmq_url, PERSIST.name) == 3
    assert await queue_depth(rabbitmq_url, PERSIST.dead_letter_name) == 0


async def test_messages_held_during_an_outage_are_written_when_postgres_comes_back(
    rabbitmq_url: str, instance: str
) -> None:
    name = f"papo_test_{uuid.uuid4().hex[:10]}"
    base = infra.POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    settings = persist_settings(rabbitmq_url, url)
    contracts = [text_message(conversation(instance), f"M{i}") for i in range(3)]
    async with publisher(rabbitmq_url) as publish_all:
        await publish_all(contracts)

    try:
        async with running(settings) as batcher:
            await until_retrying(batcher, 2)  # the database does not exist yet: the batch waits
            assert batcher.stats.items == 0
            assert await queue_depth(rabbitmq_url, PERSIST.name) == 0, "held by the consumer, not requeued"

            await query(infra.POSTGRES_ADMIN_URL, f'CREATE DATABASE "{name}"')
            await asyncio.to_thread(upgrade, url)
            await until_committed(batcher, 3)

        assert len(await messages_of(url, instance)) == 3
        assert await queue_depth(rabbitmq_url, PERSIST.dead_letter_name) == 0
    finally:
        await query(infra.POSTGRES_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_database_connection_killed_mid_batch_costs_a_retry_and_no_row_twice(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    contracts = [text_message(conversation(instance, i % 5), f"M{i}", seconds=i) for i in range(50)]
    async with publisher(rabbitmq_url) as publish_all:
        await publish_all(contracts)
    dsn = asyncpg_dsn(database_url)
    locker, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        locking = locker.transaction()
        await locking.start()
        await locker.execute("LOCK TABLE conversations IN EXCLUSIVE MODE")  # persist's batch blocks inside
        async with running(settings) as batcher:

            async def blocked_writer() -> list[asyncpg.Record]:
                # from another connection: inside a transaction the statistics views do not move
                return await watcher.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )

            async def batch_is_blocked() -> bool:
                return bool(await blocked_writer())

            await eventually(batch_is_blocked)
            [victim] = await blocked_writer()
            await locker.execute("SELECT pg_terminate_backend($1)", victim["pid"])
            await locking.rollback()
            await until_committed(batcher, 50)
            assert batcher.stats.outage_retries >= 1
    finally:
        await locker.close()
        await watcher.close()

    rows = await messages_of(database_url, instance)
    assert sorted(row["external_id"] for row in rows) == sorted(f"M{i}" for i in range(50))
    assert await queue_depth(rabbitmq_url, PERSIST.name) == 0
    assert await queue_depth(rabbitmq_url, PERSIST.dead_letter_name) == 0


async def test_duplicates_in_one_batch_and_replays_after_it_are_written_once(
    settings: PersistSettings, rabbitmq_url: str, database_url: str, instance: str
) -> None:
    contracts = [text_message(conversation(instance, i % 4), f"M{i}", seconds=i) for i in range(40)]
    async with publisher(rabbitmq_url) as publish_all:
        await publish_all([*contracts, *contracts])  # both copies wait in the queue: they share batches
    written_before = persisted("inbound")

    async with running(settings) as batcher, publisher(rabbitmq_url) as publish_all:
        await until_committed(batcher, 80)
        first_rows = await messages_of(database_url, instance)
        await publish_all(contracts)  # replayed later, as from the dead-letter queue
        await until_committed(batcher, 120)

    assert len(first_rows) == 40
    assert await messages_of(database_url, instance) == first_rows, "same rows, same transactions (xmin)"
    assert persisted("inbound") - written_before == 40
    assert await queue_depth(rabbitmq_url, PERSIST.name) == 0


@pytest.mark.parametrize(("reachable", "status"), [(True, 200), (False, 503)])
async def test_readiness_follows_postgres(
    rabbitmq_url: str, database_url: str, reachable: bool, status: int
) -> None:
    app = create_app(persist_settings(rabbitmq_url, database_url if reachable else CLOSED_PORT_URL))
    async with (
        app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://persist") as client,
    ):
        response = await client.get("/readyz")

    assert response.status_code == status
    assert (response.json()["checks"]["postgres"] == "ok") is reachable


def test_an_app_made_before_its_event_loop_is_ready_inside_it(rabbitmq_url: str, database_url: str) -> None:
    app = create_app(
        persist_settings(rabbitmq_url, database_url)
    )  # as uvicorn does: made, then run in a loop

    async def readiness() -> int:
        transport = httpx.ASGITransport(app=app)
        async with app, httpx.AsyncClient(transport=transport, base_url="http://persist") as client:
            return (await client.get("/readyz")).status_code

    assert asyncio.run(readiness()) == 200


async def test_after_rabbitmq_drops_its_connection_persist_consumes_again(
    database_url: str, instance: str
) -> None:
    """persist takes deliveries from the channel under aio-pika's robust one: once the connection is back,
    the reopened channel must be consumed again, or the queue would fill while persist looks healthy."""
    with infra.rabbitmq_vhost() as own_url:  # closing connections must not touch other tests' vhost
        settings = persist_settings(own_url, database_url)
        first = [text_message(conversation(instance, i % 5), f"A{i}", seconds=i) for i in range(50)]
        later = [text_message(conversation(instance, i % 5), f"B{i}", seconds=100 + i) for i in range(50)]
        async with publisher(own_url) as publish_all:  # declares the topology persist consumes from
            await publish_all(first)
        async with running(settings) as batcher:
            await until_committed(batcher, 50)

            drop_broker_connections(own_url)
            async with publisher(own_url) as publish_all:
                await publish_all(later)
            await until_committed(batcher, 100)

            assert await queue_depth(own_url, PERSIST.name) == 0
        assert len(await messages_of(database_url, instance)) == 100
