"""deliver over the real RabbitMQ and Redis, with a fake Evolution API speaking its real wire format.

Each test starts the deliver app as it runs in production (topology declared, quorum queue with its delivery
limit and dead-letter queue), publishes `Reply` messages to the `papo` exchange with routing key
`reply.ready`, and asserts on what Evolution received and on what landed in real queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from faststream.rabbit import RabbitBroker
from pydantic import SecretStr

from papo_common.broker import publish
from papo_common.contracts import Reply, ReplySent
from papo_common.metrics import REPLIES
from papo_common.own_sends import set_instance_state
from papo_common.redis import make_redis
from papo_common.topology import DELIVER
from papo_deliver.settings import DeliverSettings
from papo_testing.fake_evolution import FakeEvolution, connection_closed_body, timed_out_body
from papo_testing.quiescence import settled

from .deliver_stack import (
    API_KEY,
    CHAT,
    INSTANCE,
    SettingsFactory,
    free_port_url,
    make_reply,
    reply_sent_queue,
    running,
    settings_factory,
)
from .deliver_stack import collect as collect_messages


@pytest.fixture
def make_settings(rabbitmq_url: str, redis_url: str, redis_prefix: str) -> SettingsFactory:
    return settings_factory(rabbitmq_url, redis_url, redis_prefix, evolution_api_key=SecretStr(API_KEY))


async def collect(
    queue: AbstractQueue, reply_id: str, *, count: int, timeout: float
) -> list[AbstractIncomingMessage]:
    return await collect_messages(queue, lambda m: reply_id.encode() in m.body, count=count, timeout=timeout)


async def test_a_reply_is_sent_once_and_reply_sent_published(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    async with running(make_settings(evolution.url)):
        sent_queue = await reply_sent_queue(probe)
        reply = make_reply("Olá, em que posso ajudar?")
        await publish(probe, reply)
        [message] = await collect(sent_queue, reply.reply_id, count=1, timeout=10)

    [accepted] = evolution.sent_texts(INSTANCE)
    assert (accepted.number, accepted.text) == ("5511987654321", "Olá, em que posso ajudar?")
    assert [r.endpoint for r in evolution.requests] == [
        "/chat/markMessageAsRead",
        "/chat/sendPresence",
        "/message/sendText",
    ]
    reply_sent = ReplySent.model_validate_json(message.body)
    assert reply_sent.whatsapp_message_ids == (accepted.message_id,)
    assert reply_sent.conversation == reply.conversation


async def test_a_duplicate_reply_is_not_sent_twice(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    async with running(make_settings(evolution.url)):
        sent_queue = await reply_sent_queue(probe)
        reply = make_reply()
        await publish(probe, reply)
        await collect(sent_queue, reply.reply_id, count=1, timeout=10)
        await publish(probe, reply)  # llm regenerated it, or its publish was retried
        messages = await collect(sent_queue, reply.reply_id, count=1, timeout=10)

    assert len(evolution.sent_texts()) == 1
    assert len(messages) == 1, "the duplicate still confirms the send, with the same ids"
    assert ReplySent.model_validate_json(messages[0].body).whatsapp_message_ids == (
        evolution.sent_texts()[0].message_id,
    )


async def test_copies_handled_by_two_replicas_at_once_are_sent_once(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    settings = make_settings(
        evolution.url, deliver_typing_min_ms=300, deliver_typing_max_ms=300
    )  # sends overlap
    async with running(settings), running(settings):
        sent_queue = await reply_sent_queue(probe)
        reply = make_reply()
        await asyncio.gather(*(publish(probe, reply) for _ in range(4)))
        messages = await collect(sent_queue, reply.reply_id, count=4, timeout=15)

    assert len(evolution.sent_texts()) == 1
    assert len(messages) == 4
    assert len({ReplySent.model_validate_json(m.body).whatsapp_message_ids for m in messages}) == 1


async def test_a_transient_500_is_retried_and_the_reply_sent_once(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    evolution.fail_next("sendText", 500, timed_out_body())
    async with running(make_settings(evolution.url)):
        sent_queue = await reply_sent_queue(probe)
        reply = make_reply()
        await publish(probe, reply)
        assert await collect(sent_queue, reply.reply_id, count=1, timeout=10)

    assert [r.status for r in evolution.requests_to("sendText")] == [500, 201]
    assert len(evolution.sent_texts()) == 1


async def test_a_failure_that_outlasts_the_retries_is_redelivered_and_then_sent_once(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    evolution.fail_next(
        "sendText", 400, connection_closed_body(), times=2
    )  # both attempts of the 1st delivery
    # A refused send is known not to have gone out: the redelivery must not wait for its echo, however long
    # that wait is configured.
    async with running(make_settings(evolution.url, deliver_echo_wait_seconds=60)):
        sent_queue = await reply_sent_queue(probe)
        reply = make_reply()
        await publish(probe, reply)
        assert await collect(sent_queue, reply.reply_id, count=1, timeout=15)

    assert [r.status for r in evolution.requests_to("sendText")] == [400, 400, 201]
    assert len(evolution.sent_texts()) == 1


async def test_a_number_not_on_whatsapp_is_dead_lettered_at_once_and_nothing_is_sent(
    evolution: FakeEvolution,
    make_settings: Callable[..., DeliverSettings],
    probe: RabbitBroker,
    rabbitmq_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    evolution.mark_not_on_whatsapp(CHAT)
    async with running(make_settings(evolution.url)):
        dead_letters = await probe.declare_queue(DELIVER.dead_letter_queue)
        reply = make_reply()
        await publish(probe, reply)
        [dead] = await collect(dead_letters, reply.reply_id, count=1, timeout=10)
        await settled(
            rabbitmq_url, redis_url, redis_prefix, queues=DELIVER.name
        )  # a (wrong) redelivery would show up by then

    assert Reply.model_validate_json(dead.body) == reply
    assert len(evolution.requests_to("sendPresence")) == 1, "rejected once, not redelivered in a loop"
    assert evolution.sent_texts() == []
    [death] = dead.headers["x-death"]  # type: ignore[misc]
    assert death["reason"] == "rejected"  # type: ignore[index]


async def test_evolution_down_is_redelivered_with_backoff_until_the_horizon_then_dead_lettered(
    make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    async with running(make_settings(free_port_url(), redelivery_horizon_seconds=2.0)):
        dead_letters = await probe.declare_queue(DELIVER.dead_letter_queue)
        reply = make_reply()
        await publish(probe, reply)
        [dead] = await collect(dead_letters, reply.reply_id, count=1, timeout=30)

    assert Reply.model_validate_json(dead.body) == reply
    assert int(dead.headers["x-papo-redeliveries"]) >= 1, "redelivered before the horizon, not dead-lettered"  # type: ignore[arg-type]


async def test_a_configuration_error_is_redelivered_and_sent_once_the_key_is_fixed(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    evolution.fail_next("sendText", 401)  # a rejected key, fixed by the time of the redelivery
    async with running(make_settings(evolution.url)):
        sent_queue = await reply_sent_queue(probe)
        reply = make_reply()
        await publish(probe, reply)
        assert await collect(sent_queue, reply.reply_id, count=1, timeout=15)

    assert [r.status for r in evolution.requests_to("sendText")] == [401, 201], "not retried in the handler"
    assert len(evolution.sent_texts()) == 1


async def test_replies_of_a_disconnected_instance_wait_and_go_out_once_it_reconnects(
    evolution: FakeEvolution,
    make_settings: Callable[..., DeliverSettings],
    probe: RabbitBroker,
    redis_url: str,
    redis_prefix: str,
) -> None:
    redis = make_redis(redis_url)
    await set_instance_state(redis, redis_prefix, INSTANCE, "close")  # ingest saw connection.update close
    held_before = REPLIES.labels(instance=INSTANCE, outcome="held")._value.get()
    async with running(make_settings(evolution.url)):
        sent_queue = await reply_sent_queue(probe)
        reply = make_reply()
        await publish(probe, reply)
        while REPLIES.labels(instance=INSTANCE, outcome="held")._value.get() == held_before:
            await asyncio.sleep(0.05)
        assert evolution.requests == [], "nothing is sent into a closed session"
        await set_instance_state(redis, redis_prefix, INSTANCE, "open")
        [message] = await collect(sent_queue, reply.reply_id, count=1, timeout=15)

    assert ReplySent.model_validate_json(message.body).whatsapp_message_ids == (
        evolution.sent_texts()[0].message_id,
    )
    dead_letters = await probe.declare_queue(DELIVER.dead_letter_queue)
    assert await collect(dead_letters, reply.reply_id, count=1, timeout=0.5) == []
    await redis.aclose()
