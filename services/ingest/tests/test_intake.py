"""The intake's publish-once logic with a fake publisher and the real Redis: concurrent duplicates publish
once, a failed publish leaves no mark, a dead Redis asks for a retry."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from papo_common.contracts import InboundMessage
from papo_common.redis import make_redis
from papo_ingest.dedupe import PUBLISHED, SeenMessages
from papo_ingest.evolution import IntakePolicy
from papo_ingest.intake import ACCEPTED, DUPLICATE, Intake, Outcome

from .fixtures import fixture

REDIS_URL = os.environ.get("PAPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class FakeBroker:
    """Records publishes; can be told to fail or to be slow."""

    def __init__(self) -> None:
        self.published: list[InboundMessage] = []
        self.failures = 0
        self.delay = 0.0

    async def publish(self, message: InboundMessage) -> None:
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker said no")
        self.published.append(message)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = make_redis(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"papo-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def cleanup(redis: Redis, prefix: str) -> AsyncIterator[None]:
    yield
    async for key in redis.scan_iter(match=f"{prefix}:*"):
        await redis.delete(key)


def make_intake(redis: Redis, prefix: str, broker: FakeBroker, **overrides: Any) -> Intake:
    seen = SeenMessages(
        redis, prefix, published_ttl_seconds=3600, claim_ttl_seconds=overrides.pop("claim_ttl", 30)
    )
    return Intake(
        publish=broker.publish,
        seen=seen,
        policy=IntakePolicy(),
        publish_timeout_seconds=overrides.pop("timeout", 2.0),
        **overrides,
    )


# the real Redis: this module is of the integration tier
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cleanup")]


async def test_accepted_then_duplicate(redis: Redis, prefix: str) -> None:
    broker = FakeBroker()
    intake = make_intake(redis, prefix, broker)
    assert await intake.receive(fixture("text_conversation")) == ACCEPTED
    assert await intake.receive(fixture("text_conversation")) == DUPLICATE
    assert len(broker.published) == 1
    key = f"{prefix}:ingest:seen:loja-centro:3EB0C431C26A1D0B6E5F"
    assert await redis.get(key) == PUBLISHED
    assert 3500 < await redis.ttl(key) <= 3600


async def test_same_id_on_another_instance_is_another_message(redis: Redis, prefix: str) -> None:
    broker = FakeBroker()
    intake = make_intake(redis, prefix, broker)
    other = fixture("text_conversation")
    other["instance"] = "loja-norte"
    assert await intake.receive(fixture("text_conversation")) == ACCEPTED
    assert await intake.receive(other) == ACCEPTED


async def test_concurrent_identical_posts_publish_once(redis: Redis, prefix: str) -> None:
    broker = FakeBroker()
    broker.delay = 0.05
    intake = make_intake(redis, prefix, broker)
    outcomes = await asyncio.gather(*(intake.receive(fixture("text_conversation")) for _ in range(20)))
    assert outcomes.count(ACCEPTED) == 1
    assert outcomes.count(DUPLICATE) == 19
    assert len(broker.published) == 1


async def test_a_failed_publish_leaves_no_mark(redis: Redis, prefix: str) -> None:
    broker = FakeBroker()
    broker.failures = 1
    intake = make_intake(redis, prefix, broker)
    assert await intake.receive(fixture("text_conversation")) == Outcome(
        "unavailable", "rabbitmq", "RabbitMQ did not confirm the message"
    )
    assert [key async for key in redis.scan_iter(match=f"{prefix}:*")] == []
    assert await intake.receive(fixture("text_conversation")) == ACCEPTED
    assert len(broker.published) == 1


async def test_a_waiting_duplicate_takes_over_when_the_first_publish_fails(redis: Redis, prefix: str) -> None:
    broker = FakeBroker()
    broker.failures = 1
    broker.delay = 0.05
    intake = make_intake(redis, prefix, broker)
    first, second = await asyncio.gather(
        intake.receive(fixture("text_conversation")), intake.receive(fixture("text_conversation"))
    )
    assert sorted([first.status, second.status]) == ["accepted", "unavailable"]
    assert len(broker.published) == 1


async def test_a_publish_that_never_confirms_times_out_and_is_released(redis: Redis, prefix: str) -> None:
    broker = FakeBroker()
    broker.delay = 5
    intake = make_intake(redis, prefix, broker, timeout=0.1)
    outcome = await intake.receive(fixture("text_conversation"))
    assert (outcome.status, outcome.reason) == ("unavailable", "rabbitmq")
    assert [key async for key in redis.scan_iter(match=f"{prefix}:*")] == []


async def test_a_claim_held_past_the_wait_asks_for_a_retry(redis: Redis, prefix: str) -> None:
    await redis.set(f"{prefix}:ingest:seen:loja-centro:3EB0C431C26A1D0B6E5F", b"someone-else", px=30_000)
    intake = make_intake(redis, prefix, FakeBroker(), timeout=0.1)
    outcome = await intake.receive(fixture("text_conversation"))
    assert (outcome.status, outcome.reason) == ("unavailable", "in_flight")


async def test_a_dead_processes_claim_expires(redis: Redis, prefix: str) -> None:
    await redis.set(f"{prefix}:ingest:seen:loja-centro:3EB0C431C26A1D0B6E5F", b"dead-holder", px=150)
    broker = FakeBroker()
    intake = make_intake(redis, prefix, broker, timeout=1.0)
    assert await intake.receive(fixture("text_conversation")) == ACCEPTED


async def test_redis_down_is_unavailable_and_nothing_is_published(prefix: str) -> None:
    dead = make_redis("redis://127.0.0.1:1/0")
    broker = FakeBroker()
    intake = make_intake(dead, prefix, broker)
    outcome = await intake.receive(fixture("text_conversation"))
    await dead.aclose()
    assert (outcome.status, outcome.reason) == ("unavailable", "redis")
    assert broker.published == []


async def test_broker_not_connected_is_unavailable_before_touching_redis(redis: Redis, prefix: str) -> None:
    intake = make_intake(redis, prefix, FakeBroker(), broker_ready=lambda: False)
    outcome = await intake.receive(fixture("text_conversation"))
    assert (outcome.status, outcome.reason) == ("unavailable", "rabbitmq")
    assert [key async for key in redis.scan_iter(match=f"{prefix}:*")] == []


async def test_ignored_and_rejected_touch_nothing(redis: Redis, prefix: str) -> None:
    broker = FakeBroker()
    intake = make_intake(redis, prefix, broker)
    assert (await intake.receive(fixture("sticker"))).status == "ignored"
    assert (await intake.receive({"event": "messages.upsert"})).status == "rejected"
    assert broker.published == []
    assert [key async for key in redis.scan_iter(match=f"{prefix}:*")] == []


async def test_one_redis_round_trip_per_webhook(
    redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claim and the person's identity lookup share one round trip, and it carries the published marks of the
    webhooks before it; a mark with no webhook after it is written on its own, behind the answer."""
    from redis.asyncio.connection import AbstractConnection

    from papo_common.own_sends import OwnSends
    from papo_ingest.senders import Senders

    await redis.ping()  # the pool's connection is open before counting
    intake = make_intake(redis, prefix, FakeBroker(), senders=Senders(prefix, OwnSends(redis, prefix)))
    await intake.receive(fixture("text_conversation") | {"instance": "warm-up"})  # loads the scripts
    await intake._seen.flush()
    sent = 0
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    first = fixture("text_conversation")
    assert await intake.receive(first) == ACCEPTED
    assert sent == 1
    second = first | {"data": first["data"] | {"key": first["data"]["key"] | {"id": "3EB0NEXT"}}}
    assert await intake.receive(second) == ACCEPTED
    assert sent == 2, "the first webhook's published mark rides on the second's claim"
    assert await redis.get(f"{prefix}:ingest:seen:loja-centro:3EB0C431C26A1D0B6E5F") == PUBLISHED
    sent -= 1  # the test's own GET
    await intake._seen.flush()
    assert sent == 3, "with no webhook after it, the last mark is written on its own"
    assert await redis.get(f"{prefix}:ingest:seen:loja-centro:3EB0NEXT") == PUBLISHED


async def test_papos_own_echo_is_recognised_in_one_round_trip(
    redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id, then the expected text under every JID the chat goes by, are looked up in one script (it took
    one round trip each before)."""
    from redis.asyncio.connection import AbstractConnection

    from papo_common.own_sends import OwnSends
    from papo_ingest.senders import Senders

    own = OwnSends(redis, prefix)
    echo = fixture("send_message")
    text = echo["data"]["message"]["conversation"]
    await own.expect(echo["instance"], echo["data"]["key"]["remoteJid"], text)
    intake = make_intake(redis, prefix, FakeBroker(), senders=Senders(prefix, own))
    await own.is_own("warm-up", "5511900000000@s.whatsapp.net", "3EB0WARM", None)  # loads the script
    await intake.receive(fixture("text_conversation") | {"instance": "warm-up"})
    await intake._seen.flush()
    sent = 0
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    outcome = await intake.receive(echo)
    assert (outcome.status, outcome.reason) == ("ignored", "own_send")
    assert sent == 2, "the claim, the own-send lookup; no release: the echo is remembered with the next claim"
    assert await intake.receive(echo) == DUPLICATE, "its repeat: one round trip, carrying the mark"
    assert sent == 3


async def test_papos_own_echo_is_recognised_while_the_broker_is_away(redis: Redis, prefix: str) -> None:
    """deliver, killed mid-send, reads the echo's evidence to confirm its chunk: the echo must not wait for
    the broker, which it does not need."""
    from papo_common.own_sends import OwnSends
    from papo_ingest.senders import Senders

    own = OwnSends(redis, prefix)
    echo = fixture("send_message")
    chat = echo["data"]["key"]["remoteJid"]
    await own.expect(echo["instance"], chat, echo["data"]["message"]["conversation"])
    broker = FakeBroker()
    intake = make_intake(redis, prefix, broker, broker_ready=lambda: False, senders=Senders(prefix, own))
    outcome = await intake.receive(echo)
    assert (outcome.status, outcome.reason) == ("ignored", "own_send")
    assert await own.sent_evidence(echo["instance"], chat, echo["data"]["message"]["conversation"])


async def test_an_operators_message_while_the_broker_is_away_is_retried_later(
    redis: Redis, prefix: str
) -> None:
    from papo_common.own_sends import OwnSends
    from papo_ingest.senders import Senders

    broker = FakeBroker()
    senders = Senders(prefix, OwnSends(redis, prefix))
    intake = make_intake(redis, prefix, broker, broker_ready=lambda: False, senders=senders)
    outcome = await intake.receive(fixture("send_message"))
    assert (outcome.status, outcome.reason) == ("unavailable", "rabbitmq")
    assert broker.published == []
    later = make_intake(redis, prefix, broker, senders=senders)
    assert await later.receive(fixture("send_message")) == ACCEPTED, "the claim was released for the retry"


async def test_a_published_mark_with_no_webhook_after_it_is_written_by_itself(
    redis: Redis, prefix: str
) -> None:
    intake = make_intake(redis, prefix, FakeBroker())
    assert await intake.receive(fixture("text_conversation")) == ACCEPTED
    key = f"{prefix}:ingest:seen:loja-centro:3EB0C431C26A1D0B6E5F"
    async with asyncio.timeout(5):  # the mark's delay is 20 ms: wait for the mark, not for a while
        while await redis.get(key) != PUBLISHED:
            await asyncio.sleep(0.01)


async def test_marks_a_failed_claim_carried_are_written_later(redis: Redis, prefix: str) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    intake = make_intake(redis, prefix, FakeBroker())
    seen = intake._seen
    assert await intake.receive(fixture("text_conversation")) == ACCEPTED
    claim = seen._claim

    async def unreachable(**_: Any) -> Any:
        raise RedisConnectionError("Redis went away")

    seen._claim = unreachable  # type: ignore[method-assign]
    second = fixture("text_conversation")
    second["data"]["key"]["id"] = "3EB0NEXT"
    assert (await intake.receive(second)).status == "unavailable"
    seen._claim = claim  # type: ignore[method-assign]
    await seen.flush()
    assert await redis.get(f"{prefix}:ingest:seen:loja-centro:3EB0C431C26A1D0B6E5F") == PUBLISHED
