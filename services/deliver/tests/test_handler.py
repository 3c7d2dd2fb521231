"""The handler wired to a broker (FastStream's TestRabbitBroker), real Redis and the fake Evolution API."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from faststream.rabbit import RabbitBroker, RabbitQueue, TestRabbitBroker
from pydantic import SecretStr

from papo_common.broker import make_broker
from papo_common.contracts import Reply, ReplySent
from papo_common.metrics import REPLIES
from papo_common.redis import make_redis
from papo_common.topology import DELIVER, EXCHANGE, RoutingKey
from papo_deliver.app import make_deliverer
from papo_deliver.handlers import register_handlers
from papo_deliver.settings import DeliverSettings
from papo_testing.fake_evolution import FakeEvolution

pytestmark = pytest.mark.integration  # real Redis and a real HTTP server


@pytest.fixture
async def wired(evolution: FakeEvolution, redis_prefix: str) -> AsyncIterator[tuple[RabbitBroker, Any, Any]]:
    settings = DeliverSettings(
        evolution_url=evolution.url,
        evolution_api_key=SecretStr("acme-key"),
        redis_url=SecretStr(os.environ.get("PAPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")),
        redis_key_prefix=redis_prefix,
        deliver_typing_min_ms=10,
        deliver_typing_max_ms=50,
        deliver_retry_base_seconds=0.01,
        deliver_retry_max_seconds=0.02,
    )
    broker = make_broker(settings)
    redis = make_redis(settings.redis_url.get_secret_value())
    http = httpx.AsyncClient()
    handler = register_handlers(broker, make_deliverer(settings, redis, http))

    @broker.subscriber(RabbitQueue("test.reply-sent", routing_key=RoutingKey.REPLY_SENT), EXCHANGE)
    async def on_sent(message: ReplySent) -> None:
        return None

    yield broker, handler, on_sent
    await http.aclose()
    await redis.aclose()


def replies(outcome: str) -> float:
    return REPLIES.labels(instance="acme", outcome=outcome)._value.get()


async def test_a_reply_is_sent_and_reply_sent_published_with_whatsapps_id(
    wired: tuple[RabbitBroker, Any, Any], evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    broker, handler, sent_listener = wired
    reply = make_reply("Bom dia!")
    sent_before = replies("sent")

    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(reply, queue=DELIVER.name)
        handler.mock.assert_called_once_with(reply)  # decoded straight into the contract
        [accepted] = evolution.sent_texts("acme")
        published = ReplySent.model_validate(sent_listener.mock.call_args.args[0])

    assert accepted.text == "Bom dia!"
    assert published.reply_id == reply.reply_id
    assert published.conversation == reply.conversation
    assert published.whatsapp_message_ids == (accepted.message_id,)
    assert replies("sent") == sent_before + 1


async def test_a_duplicate_reply_is_not_sent_again_but_reply_sent_is_published_again(
    wired: tuple[RabbitBroker, Any, Any], evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    broker, _, sent_listener = wired
    reply = make_reply()
    duplicates_before = replies("duplicate")

    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(reply, queue=DELIVER.name)
        await test_broker.publish(reply, queue=DELIVER.name)
        first, second = (ReplySent.model_validate(c.args[0]) for c in sent_listener.mock.call_args_list)

    assert len(evolution.sent_texts()) == 1
    assert first == second
    assert replies("duplicate") == duplicates_before + 1


async def test_a_number_not_on_whatsapp_is_rejected_and_counted_as_failed(
    wired: tuple[RabbitBroker, Any, Any], evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    broker, handler, sent_listener = wired
    evolution.mark_not_on_whatsapp("5511987654321")
    failed_before = replies("failed")

    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(make_reply(), queue=DELIVER.name)
        assert handler.mock.called
        assert not sent_listener.mock.called

    assert evolution.sent_texts() == []
    assert replies("failed") == failed_before + 1
