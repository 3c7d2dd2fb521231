"""deliver keeps a conversation's replies in the order the llm wrote them, over the real RabbitMQ and Redis:
a reply that `follows` another waits until that one is sent, withheld or dead-lettered (by redelivery with
backoff, never into the dead-letter queue), and goes out without it once it is abandoned."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from faststream.rabbit import RabbitBroker
from pydantic import SecretStr
from redis.asyncio import Redis

from papo_common.broker import publish
from papo_common.contracts import Reply
from papo_common.redis import ConversationKeys
from papo_common.topology import DELIVER
from papo_deliver.settings import DeliverSettings
from papo_testing.fake_evolution import FakeEvolution

from .deliver_stack import API_KEY, SettingsFactory, make_reply, running, settings_factory

pytestmark = pytest.mark.integration


@pytest.fixture
def make_settings(rabbitmq_url: str, redis_url: str, redis_prefix: str) -> SettingsFactory:
    return settings_factory(
        rabbitmq_url,
        redis_url,
        redis_prefix,
        evolution_api_key=SecretStr(API_KEY),
        deliver_typing_min_ms=0,
        deliver_typing_max_ms=0,
        deliver_min_send_interval_ms=0,
        deliver_mark_read=False,
        deliver_order_hold_seconds=0.3,
    )


async def until(condition: Callable[[], Any], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def waiting_key(prefix: str, reply: Reply) -> str:
    return ConversationKeys(prefix, reply.conversation).scoped(f"deliver:{reply.reply_id}:waiting-since")


async def test_a_reply_that_arrives_before_the_one_it_follows_waits_for_it(
    evolution: FakeEvolution,
    make_settings: Callable[..., DeliverSettings],
    probe: RabbitBroker,
    redis_client: Redis,
    redis_prefix: str,
) -> None:
    first = make_reply("resposta a m5")
    second = make_reply("resposta a m6", follows=first.reply_id)
    async with running(make_settings(evolution.url)):
        await publish(probe, second)  # the first is stuck elsewhere: a redelivery, a dead replica's lock
        await until(lambda: redis_client.exists(waiting_key(redis_prefix, second)))
        assert evolution.sent_texts() == []
        await publish(probe, first)

        async def both_sent() -> bool:
            return len(evolution.sent_texts()) == 2

        await until(both_sent)
    assert [s.text for s in evolution.sent_texts()] == ["resposta a m5", "resposta a m6"]


async def test_other_conversations_do_not_wait(
    evolution: FakeEvolution,
    make_settings: Callable[..., DeliverSettings],
    probe: RabbitBroker,
) -> None:
    blocked = make_reply("espera", follows="reply:never-published")
    other = make_reply("outra conversa", chat="5511900000000@s.whatsapp.net")
    async with running(make_settings(evolution.url)):
        await publish(probe, blocked)
        await publish(probe, other)

        async def other_sent() -> bool:
            return [s.text for s in evolution.sent_texts()] == ["outra conversa"]

        await until(other_sent)


async def test_a_dead_lettered_predecessor_does_not_block_the_next_reply(
    evolution: FakeEvolution,
    make_settings: Callable[..., DeliverSettings],
    probe: RabbitBroker,
) -> None:
    poisoned = make_reply("x" * 10)
    evolution.fail_next("sendText", 400)
    after = make_reply("depois", follows=poisoned.reply_id)
    async with running(make_settings(evolution.url)):
        dead_letters = await probe.declare_queue(DELIVER.dead_letter_queue)
        await publish(probe, poisoned)

        async def dead_lettered() -> bool:
            return await dead_letters.get(no_ack=True, fail=False) is not None

        await until(dead_lettered)
        await publish(probe, after)

        async def after_sent() -> bool:
            return "depois" in [s.text for s in evolution.sent_texts()]

        await until(after_sent)


async def test_a_predecessor_never_sent_is_abandoned_after_the_horizon_and_the_reply_goes_out(
    evolution: FakeEvolution,
    make_settings: Callable[..., DeliverSettings],
    probe: RabbitBroker,
) -> None:
    orphan = make_reply("sem antecessor", follows="reply:lost-with-a-crash")
    settings = make_settings(evolution.url, deliver_order_horizon_seconds=0.6)
    async with running(settings):
        await publish(probe, orphan)  # held 0.3 s, redelivered after 1 s, then past the horizon

        async def sent() -> bool:
            return [s.text for s in evolution.sent_texts()] == ["sem antecessor"]

        await until(sent)
