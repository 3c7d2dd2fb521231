"""llm over the real RabbitMQ, Redis and PostgreSQL, with a fake OpenAI server speaking the real wire format."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker
from sqlalchemy import text

from papo_common.broker import make_broker, publish
from papo_common.contracts import Burst, BurstItem, ConversationRef, Reply
from papo_common.db import make_engine
from papo_common.redis import ConversationKeys
from papo_common.resilience import REDELIVERIES_HEADER
from papo_common.topology import EXCHANGE, LLM, RoutingKey, declare_topology
from papo_llm.app import create_app
from papo_llm.settings import VOICE_NOTE_MARK, LlmSettings
from papo_testing.fake_openai import FakeOpenAI
from papo_testing.rabbit import module_vhost
from papo_testing.rabbit import running as running_app

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


rabbitmq_url = pytest.fixture(module_vhost, scope="module", name="rabbitmq_url")


def conversation() -> ConversationRef:
    return ConversationRef(instance="acme", user_id=f"55119{uuid.uuid4().int % 10**8:08d}@s.whatsapp.net")


def make_burst(
    who: ConversationRef, seq: int, *texts: str, transcribed: tuple[int, ...] = (), at: int = 0
) -> Burst:
    items = tuple(
        BurstItem(
            message_id=f"{who.user_id[:13]}-{seq}-{i}",
            kind="audio" if i in transcribed else "text",
            text=body,
            sent_at=T0 + timedelta(seconds=at + i),
            transcribed=i in transcribed,
        )
        for i, body in enumerate(texts)
    )
    return Burst(
        burst_id=f"{who.key}:{seq}",
        conversation=who,
        chat_id=who.user_id,
        items=items,
        inbound_seq=seq,
        reason="quiet",
        first_received_at=items[0].sent_at,
        flushed_at=items[-1].sent_at + timedelta(seconds=3),
    )


async def store_rows(database_url: str, who: ConversationRef, rows: list[dict[str, Any]]) -> None:
    """Write a conversation's `messages` rows as persist would have, in the order given. Each row names its
    `external_id`, `role`, `kind`, `text` and `sent_at`, and may name `received_at`."""
    engine = make_engine(database_url)
    async with engine.begin() as connection:
        conversation_id = (
            await connection.execute(
                text(
                    "INSERT INTO conversations (instance, user_id, chat_id) VALUES (:i, :u, :u) RETURNING id"
                ),
                {"i": who.instance, "u": who.user_id},
            )
        ).scalar_one()
        for row in rows:
            await connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, instance, external_id, role, kind, text, sent_at,"
                    " received_at) VALUES (:c, :i, :external_id, :role, :kind, :text, :sent_at, :received_at)"
                ),
                {"received_at": None, **row, "c": conversation_id, "i": who.instance},
            )
    await engine.dispose()


def llm_settings(
    rabbitmq_url: str, database_url: str, redis_url: str, prefix: str, ai: FakeOpenAI, **extra: Any
):
    return LlmSettings(
        rabbitmq_url=rabbitmq_url,
        database_url=database_url,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        llm_base_url=ai.base_url,
        llm_api_key="sk-test",
        llm_model="gpt-test",
        llm_backoff_base_seconds=0.05,
        llm_backoff_max_seconds=0.2,
        system_prompt="You are papo's test assistant.",
        log_format="text",
        **extra,
    )


def running(settings: LlmSettings) -> contextlib.AbstractAsyncContextManager[None]:
    return running_app(create_app(settings))


class Replies:
    """A private queue bound to `reply.ready`: what deliver and persist would receive."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue

    async def take(self, count: int, timeout: float = 15.0) -> list[Reply]:
        replies: list[Reply] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(replies) < count:
            message = await self.queue.get(no_ack=True, fail=False)
            if message is None:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"expected {count} replies, got {len(replies)}")
                await asyncio.sleep(0.05)
                continue
            replies.append(Reply.model_validate_json(message.body))
        return replies

    async def none_within(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        message = await self.queue.get(no_ack=True, fail=False)
        assert message is None, f"unexpected reply: {message.body!r}"


@pytest.fixture
async def amqp(rabbitmq_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(rabbitmq_url)
    yield connection
    await connection.close()


@pytest.fixture
async def publisher(rabbitmq_url: str) -> AsyncIterator[RabbitBroker]:
    broker = make_broker(LlmSettings(rabbitmq_url=rabbitmq_url), app_id="papo-test-debounce")
    await broker.connect()
    yield broker
    await broker.stop()


@pytest.fixture
async def ai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key="sk-test") as server:
        yield server


@pytest.fixture
async def settings(rabbitmq_url, database_url, redis_url, redis_prefix, ai) -> LlmSettings:
    return llm_settings(rabbitmq_url, database_url, redis_url, redis_prefix, ai)


@pytest.fixture
async def replies(publisher, amqp) -> AsyncIterator[Replies]:
    await declare_topology(publisher)
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EXCHANGE.name, routing_key=RoutingKey.REPLY_READY)
    yield Replies(queue)
    await channel.close()


async def dead_letters_of(amqp, burst_id: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Messages for `burst_id` parked in papo.llm.dlq (others are put back for their own tests)."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(LLM.dead_letter_name, passive=True)
    found, others = [], []
    while (message := await queue.get(fail=False)) is not None:
        (found if json.loads(message.body)["burst_id"] == burst_id else others).append(message)
    for message in found:
        await message.ack()
    for message in others:
        await message.nack(requeue=True)
    await channel.close()
    return found


async def eventually(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_burst_is_answered_with_one_reply_built_from_the_ordered_burst(
    settings, ai, replies, publisher
) -> None:
    who = conversation()
    burst = make_burst(who, 1, "oi", "queria marcar um horário", "pra amanhã de manhã", transcribed=(2,))

    async with running(settings):
        await publish(publisher, burst)
        [reply] = await replies.take(1)
        await replies.none_within(0.5)

    expected_prompt = f"oi\nqueria marcar um horário\n{VOICE_NOTE_MARK}pra amanhã de manhã"
    [request] = ai.requests
    assert request.messages == [
        {"role": "system", "content": "You are papo's test assistant."},
        {"role": "user", "content": expected_prompt},
    ]
    assert request.body["model"] == "gpt-test" and request.headers["authorization"] == "Bearer sk-test"
    assert reply.reply_id == f"reply:{burst.burst_id}" and reply.burst_id == burst.burst_id
    assert reply.conversation == who and reply.chat_id == who.user_id
    assert reply.in_reply_to == tuple(item.message_id for item in burst.items)
    assert reply.text == f"[fake reply to 2 messages] {expected_prompt}"
    assert reply.model == "gpt-test" and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


async def test_the_previous_turn_is_in_the_next_prompt(settings, ai, replies, publisher) -> None:
    who = conversation()
    async with running(settings):
        await publish(publisher, make_burst(who, 1, "qual o preço do corte?"))
        [first] = await replies.take(1)
        await publish(publisher, make_burst(who, 2, "e da barba?", at=60))
        await replies.take(1)

    assert ai.requests[1].messages[1:] == [
        {"role": "user", "content": "qual o preço do corte?"},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "e da barba?"},
    ]


async def test_lost_redis_history_is_rehydrated_from_postgresql(
    settings, ai, replies, publisher, database_url, redis_client
) -> None:
    who = conversation()
    burst = make_burst(who, 9, "e sábado abre?", at=600)
    rows = [
        ("w-1", "user", "text", "vocês abrem domingo?", 0),
        ("w-2", "user", "audio", "e que horas fecha", 1),
        ("r-1", "assistant", "text", "Domingo não abrimos.", 10),
        ("o-1", "operator", "text", "Aqui é a Maria, posso ajudar.", 20),
        (burst.items[0].message_id, "user", "text", "e sábado abre?", 600),  # persist got it first
    ]
    await store_rows(
        database_url,
        who,
        [
            {"external_id": e, "role": r, "kind": k, "text": t, "sent_at": T0 + timedelta(seconds=at)}
            for e, r, k, t, at in rows
        ],
    )
    keys = ConversationKeys(settings.redis_key_prefix, who)
    assert not await redis_client.exists(keys.history)

    async with running(settings):
        await publish(publisher, burst)
        [reply] = await replies.take(1)

    assert ai.requests[0].messages[1:] == [
        {"role": "user", "content": f"vocês abrem domingo?\n{VOICE_NOTE_MARK}e que horas fecha"},
        {"role": "assistant", "content": "Domingo não abrimos.\nAqui é a Maria, posso ajudar."},
        {"role": "user", "content": "e sábado abre?"},
    ]
    history = [json.loads(raw)["content"] for raw in await redis_client.lrange(keys.history, 0, -1)]
    assert history[-2:] == ["e sábado abre?", reply.text]
    assert len(history) == 4


async def test_a_reply_overtaken_by_new_messages_is_dropped_and_answered_with_the_next_burst(
    settings, ai, replies, publisher, redis_client
) -> None:
    who = conversation()
    keys = ConversationKeys(settings.redis_key_prefix, who)
    await redis_client.set(keys.inbound_seq, 1)
    ai.latency = 1.0

    async with running(settings):
        await publish(publisher, make_burst(who, 1, "quero um orçamento"))
        await ai.wait_for_requests(1)
        await redis_client.incr(keys.inbound_seq)  # debounce counted a new message while we were thinking
        await eventually(lambda: _turn_over(redis_client, keys))
        await replies.none_within(0.3)
        await publish(publisher, make_burst(who, 2, "pra 3 camisetas", at=5))
        [reply] = await replies.take(1)

    assert reply.burst_id == f"{who.key}:2"
    assert len(ai.requests) == 2
    assert ai.requests[1].last_user_message == "quero um orçamento\npra 3 camisetas"
    assert int(await redis_client.get(keys.answered_seq)) == 2


async def _turn_over(redis_client, keys: ConversationKeys) -> bool:
    return not await redis_client.exists(keys.turn_lock)


async def test_a_redelivered_burst_is_not_answered_again_but_an_older_one_handled_late_is(
    settings, ai, replies, publisher
) -> None:
    # issue 9.1: the older burst, handled after the newer one was answered, was acked as a duplicate
    who = conversation()
    older, newer = make_burst(who, 1, "oi"), make_burst(who, 2, "tudo bem?", at=5)

    async with running(settings):
        await publish(publisher, newer)
        await replies.take(1)
        await publish(publisher, newer)  # a redelivery
        await publish(publisher, older)  # arrived after the newer one was answered
        [late] = await replies.take(1)
        await publish(publisher, older)
        await replies.none_within(1.0)

    assert [r.last_user_message for r in ai.requests] == ["tudo bem?", "oi"]
    assert late.in_reply_to == tuple(item.message_id for item in older.items)


async def test_one_conversation_is_answered_one_turn_at_a_time_across_replicas(
    rabbitmq_url, database_url, redis_url, redis_prefix, ai, replies, publisher
) -> None:
    # One turn in flight per replica (the prefetch is at least the turns in flight): while replica X answers
    # A1, A2 can only go to replica Y, and B1 to X once A1 is done.
    settings = llm_settings(
        rabbitmq_url, database_url, redis_url, redis_prefix, ai, prefetch=1, llm_turns_in_flight=1
    )
    alice, bob = conversation(), conversation()
    ai.latency = 1.2

    async with running(settings), running(settings):
        await publish(publisher, make_burst(alice, 1, "alice 1"))
        await ai.wait_for_requests(1)
        await publish(publisher, make_burst(alice, 2, "alice 2", at=5))
        await publish(publisher, make_burst(bob, 1, "bob 1"))
        answered = await replies.take(3, timeout=20)

    assert sorted(r.burst_id for r in answered) == sorted(
        [f"{alice.key}:1", f"{alice.key}:2", f"{bob.key}:1"]
    )
    by_text = {r.last_user_message.rsplit("\n", 1)[-1]: r for r in ai.requests}
    assert set(by_text) == {"alice 1", "alice 2", "bob 1"}
    assert not by_text["alice 1"].overlaps(by_text["alice 2"])
    assert by_text["alice 2"].received_at >= by_text["alice 1"].finished_at
    assert by_text["bob 1"].overlaps(by_text["alice 2"])
    assert ai.max_in_flight == 2


async def test_server_errors_are_retried_and_answered_once(settings, ai, replies, publisher) -> None:
    ai.fail_next(500, times=2)
    async with running(settings):
        await publish(publisher, make_burst(conversation(), 1, "oi"))
        await replies.take(1)
        await replies.none_within(0.5)

    assert [r.status for r in ai.requests] == [500, 500, 200]


async def test_a_rejected_key_dead_letters_the_burst_and_frees_the_conversation(
    settings, ai, replies, publisher, amqp, redis_client
) -> None:
    who = conversation()
    failing = make_burst(who, 1, "oi")
    ai.fail_next(401)

    async with running(settings):
        await publish(publisher, failing)
        await eventually(lambda: _has_dead_letter(amqp, failing.burst_id))
        assert not await redis_client.exists(ConversationKeys(settings.redis_key_prefix, who).turn_lock)
        await publish(publisher, make_burst(who, 2, "alguém aí?", at=30))
        [reply] = await replies.take(1)

    assert reply.burst_id == f"{who.key}:2"
    assert len(ai.requests) == 2


async def _has_dead_letter(amqp, burst_id: str) -> bool:
    found = await dead_letters_of(amqp, burst_id)
    return bool(found)


@pytest.mark.parametrize("broken", ["redis_url", "database_url"])
async def test_an_unreachable_store_is_redelivered_with_backoff_never_dead_lettered(
    broken, rabbitmq_url, database_url, redis_url, redis_prefix, ai, replies, publisher, amqp
) -> None:
    settings = _broken_store_settings(broken, rabbitmq_url, database_url, redis_url, redis_prefix, ai)
    burst = make_burst(conversation(), 1, "oi")
    second_wait = LLM.retry_queue_name(LLM.retry_delays_seconds[1])

    async with running(settings):
        await publish(publisher, burst)
        # failed twice: now waiting in the second retry queue, not in the dead-letter queue
        await eventually(lambda: _queued_in(amqp, second_wait, burst.burst_id), timeout=20)
        assert await dead_letters_of(amqp, burst.burst_id) == []

    assert ai.requests == []


async def test_an_unreachable_store_past_the_redelivery_horizon_dead_letters(
    rabbitmq_url, database_url, redis_url, redis_prefix, ai, replies, publisher, amqp
) -> None:
    settings = _broken_store_settings(
        "redis_url", rabbitmq_url, database_url, redis_url, redis_prefix, ai, redelivery_horizon_seconds=0.5
    )
    burst = make_burst(conversation(), 1, "oi")

    async with running(settings):
        await publish(publisher, burst)
        found: list[Any] = []

        async def dead_lettered() -> bool:
            found.extend(await dead_letters_of(amqp, burst.burst_id))
            return bool(found)

        await eventually(dead_lettered, timeout=20)

    [death] = found[0].headers["x-death"][:1]
    assert death["reason"] == "rejected"
    assert found[0].headers[REDELIVERIES_HEADER] >= 1


def _broken_store_settings(broken, rabbitmq_url, database_url, redis_url, redis_prefix, ai, **extra):
    dead = {
        "redis_url": "redis://127.0.0.1:1/0",
        "database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/x",
    }
    urls = {"database_url": database_url, "redis_url": redis_url, broken: dead[broken]}
    return llm_settings(rabbitmq_url, urls["database_url"], urls["redis_url"], redis_prefix, ai, **extra)


async def _queued_in(amqp, queue_name: str, burst_id: str) -> bool:
    """Whether `burst_id` waits in `queue_name`. Found, it is taken out, so it never comes back to a later
    test's llm; other messages are put back."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(queue_name, passive=True)
    seen = []
    while (message := await queue.get(fail=False)) is not None:
        seen.append(message)
    found = False
    for message in seen:
        if json.loads(message.body)["burst_id"] == burst_id:
            found = True
            await message.ack()
        else:
            await message.nack(requeue=True)
    await channel.close()
    return found


# --- issue 9: every message reaches the model once, in order, whatever the deliveries ---------------------


async def test_bursts_delivered_newest_first_and_twice_across_replicas_answer_every_message_once(
    rabbitmq_url, database_url, redis_url, redis_prefix, ai, replies, publisher, redis_client
) -> None:
    # issue 9.1, first reproduction: a newer burst took the lock first and the older one became a "duplicate"
    settings = llm_settings(rabbitmq_url, database_url, redis_url, redis_prefix, ai)
    who = conversation()
    bursts = [make_burst(who, seq, f"mensagem {seq}", at=seq * 20) for seq in range(1, 5)]
    await redis_client.set(ConversationKeys(redis_prefix, who).inbound_seq, len(bursts))
    ai.latency = 0.1

    async with running(settings), running(settings):
        for burst in [*reversed(bursts), *bursts]:
            await publish(publisher, burst)
        answered = await replies.take(1, timeout=20)
        while sum(len(r.in_reply_to) for r in answered) < len(bursts):
            answered += await replies.take(1, timeout=20)
        await replies.none_within(1.0)

    covered = [message_id for reply in answered for message_id in reply.in_reply_to]
    assert sorted(covered) == sorted(burst.items[0].message_id for burst in bursts), "each answered once"
    said = [line for request in ai.requests for line in request.last_user_message.split("\n")]
    assert sorted(said) == [f"mensagem {seq}" for seq in range(1, 5)], "each reached the model once"
    for request in ai.requests:
        lines = request.last_user_message.split("\n")
        assert lines == sorted(lines), "in messageTimestamp order"


async def test_a_late_older_message_reaches_the_model_once_in_order_after_a_rehydration(
    settings, ai, replies, publisher, database_url, redis_client
) -> None:
    # issue 9.1, second reproduction: m1 (T+1) waited in papo.llm while the llm was down; m0 (T) arrived later.
    # PostgreSQL already held both, Redis nothing: rehydration put m0 in the prompt twice.
    who = conversation()
    m1_burst = make_burst(who, 1, "vocês entregam?", at=1)
    m0_burst = make_burst(who, 2, "boa noite", at=0)
    await store_rows(
        database_url,
        who,
        [
            {
                "external_id": i.message_id,
                "role": "user",
                "kind": "text",
                "text": i.text,
                "sent_at": i.sent_at,
            }
            for i in (m0_burst.items[0], m1_burst.items[0])
        ],
    )
    await redis_client.set(ConversationKeys(settings.redis_key_prefix, who).inbound_seq, 2)

    async with running(settings):
        await publish(publisher, m1_burst)
        await publish(publisher, m0_burst)
        [reply] = await replies.take(1)
        await publish(publisher, m1_burst)  # redelivered once more
        await replies.none_within(1.0)

    [request] = ai.requests
    assert request.messages[1:] == [{"role": "user", "content": "boa noite\nvocês entregam?"}]
    assert reply.in_reply_to == (m0_burst.items[0].message_id, m1_burst.items[0].message_id)


async def test_messages_of_one_second_reloaded_from_postgresql_keep_the_bursts_order(
    settings, ai, replies, publisher, database_url, redis_client
) -> None:
    # the simulator's burst, typed within one second: persist wrote it before the llm (started late) took the
    # burst, with its rows in another order; Redis has nothing (a new conversation). PostgreSQL knows each
    # message's second, and when ingest received it.
    who = conversation()
    said = make_burst(who, 3, "hi", "do you deliver on sundays?", "to the city centre")
    burst = said.model_copy(
        update={"items": tuple(item.model_copy(update={"sent_at": T0}) for item in said.items)}
    )
    received = T0 + timedelta(milliseconds=400)
    await store_rows(
        database_url,
        who,
        [  # rows written in no particular order
            {
                "external_id": burst.items[position].message_id,
                "role": "user",
                "kind": "text",
                "text": burst.items[position].text,
                "sent_at": T0,
                "received_at": received + timedelta(milliseconds=100 * position),
            }
            for position in (2, 0, 1)
        ],
    )

    async with running(settings):
        await publish(publisher, burst)
        await replies.take(1)

    [request] = ai.requests
    assert request.messages[1:] == [
        {"role": "user", "content": "hi\ndo you deliver on sundays?\nto the city centre"}
    ]


async def test_a_burst_failing_in_a_model_outage_is_answered_by_the_next_turn_and_never_dead_lettered(
    rabbitmq_url, database_url, redis_url, redis_prefix, ai, replies, publisher, amqp
) -> None:
    # issue 9.1, third reproduction, and 9.2: the model server answers 503 to every attempt of the first burst;
    # it used to dead-letter within seconds, and its replay was then a "duplicate"
    settings = llm_settings(rabbitmq_url, database_url, redis_url, redis_prefix, ai, llm_max_attempts=2)
    who = conversation()
    failing, later = make_burst(who, 1, "qual o preço?"), make_burst(who, 2, "e o prazo?", at=30)
    ai.fail_next(503, times=2)

    async with running(settings):
        await publish(publisher, failing)
        await ai.wait_for_requests(2)
        await publish(publisher, later)
        [reply] = await replies.take(1)
        await replies.none_within(
            LLM.retry_delays_seconds[0] + 1.0
        )  # the failed burst came back: a duplicate

    assert reply.burst_id == later.burst_id
    assert reply.in_reply_to == (failing.items[0].message_id, later.items[0].message_id)
    assert ai.requests[-1].last_user_message == "qual o preço?\ne o prazo?"
    assert await dead_letters_of(amqp, failing.burst_id) == []


async def test_a_burst_redelivered_through_a_model_outage_is_answered_when_the_model_is_back(
    rabbitmq_url, database_url, redis_url, redis_prefix, ai, replies, publisher, amqp
) -> None:
    settings = llm_settings(rabbitmq_url, database_url, redis_url, redis_prefix, ai, llm_max_attempts=2)
    burst = make_burst(conversation(), 1, "oi")
    ai.fail_next(500, times=4)  # two deliveries of two attempts each

    async with running(settings):
        await publish(publisher, burst)
        [reply] = await replies.take(1, timeout=20)

    assert reply.burst_id == burst.burst_id
    assert [r.status for r in ai.requests] == [500, 500, 500, 500, 200]
    assert await dead_letters_of(amqp, burst.burst_id) == []
