"""A reply goes out once across redeliveries and concurrent consumers (real Redis, fake Evolution API)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from papo_common.contracts import Reply
from papo_common.errors import PermanentError
from papo_deliver.delivery import ReplyDeliverer
from papo_deliver.evolution import EvolutionClient
from papo_deliver.ledger import DeliveryInProgress, DeliveryLedger, LockLost
from papo_deliver.pacing import TypingPace
from papo_deliver.retry import RetryPolicy
from papo_testing.fake_evolution import FakeEvolution

SENT_TTL = 3600


@pytest.fixture
def ledger(redis: Redis, redis_prefix: str) -> DeliveryLedger:
    return DeliveryLedger(redis, redis_prefix, sent_ttl_seconds=SENT_TTL)


@pytest.fixture
def deliverer(
    client: EvolutionClient, ledger: DeliveryLedger, pace: TypingPace, policy: RetryPolicy
) -> ReplyDeliverer:
    return ReplyDeliverer(client, ledger, pace=pace, policy=policy, lock_ttl_seconds=5)


async def test_a_reply_is_sent_and_recorded_under_the_service_prefix(
    deliverer: ReplyDeliverer,
    evolution: FakeEvolution,
    make_reply: Callable[..., Reply],
    redis: Redis,
    redis_prefix: str,
) -> None:
    reply = make_reply("Claro, já te respondo.")
    outcome = await deliverer.deliver(reply)

    [sent] = evolution.sent_texts("acme")
    assert (sent.number, sent.text) == ("5511987654321", "Claro, já te respondo.")
    assert outcome.message_ids == (sent.message_id,)
    assert not outcome.already_sent
    keys = [key.decode() async for key in redis.scan_iter(match=f"{redis_prefix}:*")]
    assert keys == [
        f"{redis_prefix}:conv:{{acme:5511987654321@s.whatsapp.net}}:deliver:{reply.reply_id}:sent"
    ]
    assert 0 < await redis.ttl(keys[0]) <= SENT_TTL  # the lock is gone: released after sending


async def test_a_redelivered_reply_is_not_sent_again_and_reports_the_same_ids(
    deliverer: ReplyDeliverer, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply()
    first = await deliverer.deliver(reply)
    again = await deliverer.deliver(reply)

    assert len(evolution.sent_texts()) == 1
    assert again.already_sent
    assert (again.message_ids, again.sent_at) == (first.message_ids, first.sent_at)


async def test_concurrent_deliveries_of_one_reply_send_it_once(
    deliverer: ReplyDeliverer, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply("x" * 30)  # 300 ms of typing: the copies overlap
    outcomes = await asyncio.gather(*(deliverer.deliver(reply) for _ in range(4)))

    assert len(evolution.sent_texts()) == 1
    assert len({outcome.message_ids for outcome in outcomes}) == 1
    assert sorted(outcome.already_sent for outcome in outcomes) == [False, True, True, True]


async def test_different_replies_are_not_serialised_by_each_others_locks(
    deliverer: ReplyDeliverer, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    await asyncio.gather(deliverer.deliver(make_reply("one")), deliverer.deliver(make_reply("two")))
    assert sorted(s.text for s in evolution.sent_texts()) == ["one", "two"]


async def test_a_permanent_failure_records_nothing_so_a_fixed_replay_sends(
    deliverer: ReplyDeliverer,
    evolution: FakeEvolution,
    make_reply: Callable[..., Reply],
    ledger: DeliveryLedger,
) -> None:
    reply = make_reply()
    evolution.fail_next(
        "sendText", 400, {"status": 400, "error": "Bad Request", "response": {"message": ["x"]}}
    )

    with pytest.raises(PermanentError):
        await deliverer.deliver(reply)
    assert await ledger.sent_chunks(reply) == {}
    await deliverer.deliver(reply)
    assert len(evolution.sent_texts()) == 1


async def test_a_reply_locked_by_another_consumer_waits_then_gives_up(
    ledger: DeliveryLedger, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply()
    async with ledger.lock(reply, ttl_seconds=5, wait_seconds=0):
        with pytest.raises(DeliveryInProgress):
            async with ledger.lock(reply, ttl_seconds=5, wait_seconds=0.3):
                pass


async def test_a_lock_is_taken_over_once_its_holder_releases_it(
    ledger: DeliveryLedger, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply()
    holder = ledger.lock(reply, ttl_seconds=5, wait_seconds=0)
    await holder.__aenter__()
    asyncio.get_running_loop().call_later(
        0.2, lambda: asyncio.ensure_future(holder.__aexit__(None, None, None))
    )
    async with ledger.lock(reply, ttl_seconds=5, wait_seconds=2):
        pass


async def test_an_expired_lease_is_noticed_and_never_released_from_its_new_owner(
    ledger: DeliveryLedger, make_reply: Callable[..., Reply], redis: Redis
) -> None:
    reply = make_reply()
    stale = ledger.lock(reply, ttl_seconds=0.1, wait_seconds=0)
    await stale.__aenter__()
    await asyncio.sleep(0.2)
    async with ledger.lock(reply, ttl_seconds=5, wait_seconds=0) as owner:
        with pytest.raises(LockLost):
            await stale.renew()
        await stale.__aexit__(None, None, None)  # must not delete the new owner's lock
        await owner.renew()
