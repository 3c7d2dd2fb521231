"""deliver's consumer as the service wires it, over real Redis and the fake Evolution API: deliveries handed
over as aiormq hands them, settled on a recording channel, `reply.sent` caught as it is published."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import SecretStr

from papo_common.consuming import MessageConsumer
from papo_common.contracts import Reply, ReplySent
from papo_common.metrics import REPLIES
from papo_common.redis import make_redis
from papo_deliver.app import make_deliverer
from papo_deliver.handlers import consume
from papo_deliver.settings import DeliverSettings
from papo_testing.amqp import FakeChannel, delivered
from papo_testing.fake_evolution import FakeEvolution

pytestmark = pytest.mark.integration  # real Redis and a real HTTP server


@dataclass
class Wired:
    consumer: MessageConsumer[Reply]
    channel: FakeChannel = field(default_factory=lambda: FakeChannel([]))
    published: list[ReplySent] = field(default_factory=list)
    tags: int = 0

    async def deliver(self, reply: Reply) -> None:
        self.tags += 1
        payload = reply.model_dump_json().encode()
        await self.consumer.receive(delivered(self.channel, self.tags, payload, routing_key="reply.ready"))


@pytest.fixture
async def wired(evolution: FakeEvolution, redis_prefix: str) -> AsyncIterator[Wired]:
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
    redis = make_redis(settings.redis_url.get_secret_value())
    http = httpx.AsyncClient()
    published: list[ReplySent] = []

    async def publish_sent(sent: ReplySent) -> None:
        published.append(sent)

    yield Wired(consume(settings, make_deliverer(settings, redis, http), publish_sent), published=published)
    await http.aclose()
    await redis.aclose()


def replies(outcome: str) -> float:
    return REPLIES.labels(instance="acme", outcome=outcome)._value.get()


async def test_a_reply_is_sent_then_reply_sent_published_with_whatsapps_id_then_acked(
    wired: Wired, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply("Bom dia!")
    sent_before = replies("sent")

    await wired.deliver(reply)

    [accepted] = evolution.sent_texts("acme")
    [published] = wired.published
    assert accepted.text == "Bom dia!"
    assert published.reply_id == reply.reply_id
    assert published.conversation == reply.conversation
    assert published.whatsapp_message_ids == (accepted.message_id,)
    assert wired.channel.settled == [("ack", 1, False)]
    assert replies("sent") == sent_before + 1


async def test_a_duplicate_reply_is_not_sent_again_but_reply_sent_is_published_again(
    wired: Wired, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply()
    duplicates_before = replies("duplicate")

    await wired.deliver(reply)
    await wired.deliver(reply)

    assert len(evolution.sent_texts()) == 1
    first, second = wired.published
    assert first == second
    assert wired.channel.settled == [("ack", 1, False), ("ack", 2, False)]
    assert replies("duplicate") == duplicates_before + 1


async def test_a_number_not_on_whatsapp_is_dead_lettered_and_counted_as_failed(
    wired: Wired, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    evolution.mark_not_on_whatsapp("5511987654321")
    failed_before = replies("failed")

    await wired.deliver(make_reply())

    assert evolution.sent_texts() == []
    assert wired.published == []
    assert wired.channel.settled == [("reject", 1, False)]
    assert replies("failed") == failed_before + 1
