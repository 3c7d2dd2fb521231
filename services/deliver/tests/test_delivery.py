"""A reply goes out once across redeliveries and concurrent consumers (real Redis, fake Evolution API)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from papo_common.contracts import Reply
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.evolution import EvolutionClient, EvolutionUnavailable, RetryPolicy
from papo_deliver.chunking import split_reply
from papo_deliver.courtesy import Courtesies
from papo_deliver.delivery import ChunkLimits, ReplyDeliverer
from papo_deliver.ledger import DeliveryInProgress, DeliveryLedger, LockLost
from papo_deliver.sending import TypingPace
from papo_testing.fake_evolution import FakeEvolution, timed_out_body

pytestmark = pytest.mark.integration  # real Redis and a real HTTP server

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
    base = f"{redis_prefix}:conv:{{acme:5511987654321@s.whatsapp.net}}:deliver:{reply.reply_id}"
    keys = sorted([key.decode() async for key in redis.scan_iter(match=f"{redis_prefix}:*")])
    assert keys == [
        f"{base}:chunks",
        f"{base}:in-flight",
        f"{base}:sent",
    ]  # the lock is gone: released after sending
    for key in keys:
        assert 0 < await redis.ttl(key) <= SENT_TTL


async def test_a_reply_takes_seven_redis_round_trips(
    client: EvolutionClient,
    ledger: DeliveryLedger,
    pace: TypingPace,
    policy: RetryPolicy,
    redis: Redis,
    redis_prefix: str,
    make_reply: Callable[..., Reply],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pause and instance state in one read; the lease; the progress; the in-flight mark with the expected
    text; the sent record with the id; the release; the settle. A lease just taken is not renewed before
    the call."""
    from typing import Any

    from redis.asyncio.connection import AbstractConnection

    from papo_common.own_sends import OwnSends

    own_sends = OwnSends(redis, redis_prefix)
    deliverer = ReplyDeliverer(
        client, ledger, pace=pace, policy=policy, lock_ttl_seconds=5, own_sends=own_sends
    )
    await deliverer.handle(make_reply())  # loads the lease's scripts
    sent = 0
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    reply = make_reply("Abrimos às 9h.")
    assert await deliverer.handle(reply) is not None
    assert sent == 7
    monkeypatch.undo()
    chat = reply.chat_id
    assert await own_sends.is_own("acme", chat, (await ledger.sent_chunks(reply))[0].message_id, None)


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


async def test_a_held_lock_outlives_its_short_lease_and_a_dead_holders_lock_frees_after_it(
    ledger: DeliveryLedger, make_reply: Callable[..., Reply], redis: Redis, redis_prefix: str
) -> None:
    reply = make_reply()
    lock_key = f"{redis_prefix}:conv:{{acme:{reply.chat_id}}}:deliver:{reply.reply_id}:lock"
    async with ledger.lock(reply, ttl_seconds=0.3, wait_seconds=0) as lock:
        await asyncio.sleep(1.0)  # three leases long: only the background renewal keeps it
        await lock.renew()
    assert await redis.exists(lock_key) == 0
    # A holder killed mid-send leaves its token under a lease that nothing renews any more.
    await redis.set(lock_key, "killed-holder", px=300)
    async with ledger.lock(reply, ttl_seconds=0.3, wait_seconds=2):
        pass  # taken over within a lease, not a minute


async def test_a_lock_is_taken_over_once_its_holder_releases_it(
    ledger: DeliveryLedger, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply()
    holder = ledger.lock(reply, ttl_seconds=5, wait_seconds=0)
    await holder.__aenter__()
    released = asyncio.Event()

    async def release() -> None:
        await holder.__aexit__(None, None, None)
        released.set()

    waiter = asyncio.create_task(ledger.lock(reply, ttl_seconds=5, wait_seconds=2).__aenter__())
    await asyncio.sleep(0)  # the waiter polls the taken lock at least once
    assert not waiter.done()
    await release()
    taken = await asyncio.wait_for(waiter, 2)
    assert released.is_set()
    await taken.renew()  # the lease is the waiter's now
    await taken.__aexit__(None, None, None)


async def test_an_expired_lease_is_noticed_and_never_released_from_its_new_owner(
    ledger: DeliveryLedger, make_reply: Callable[..., Reply], redis: Redis, redis_prefix: str
) -> None:
    reply = make_reply()
    stale = ledger.lock(reply, ttl_seconds=5, wait_seconds=0)
    await stale.__aenter__()
    lock_key = f"{redis_prefix}:conv:{{acme:{reply.chat_id}}}:deliver:{reply.reply_id}:lock"
    assert await redis.delete(lock_key) == 1  # the lease ran out while its holder stalled
    async with ledger.lock(reply, ttl_seconds=5, wait_seconds=0) as owner:
        with pytest.raises(LockLost):
            await stale.renew()
        await stale.__aexit__(None, None, None)  # must not delete the new owner's lock
        assert await redis.exists(lock_key) == 1
        await owner.renew()


LONG = "Primeiro parágrafo, com algum texto. " * 3 + "\n\n" + "Segundo parágrafo aqui. " * 3 + "\n\nFim."


@pytest.fixture
def chunked(client: EvolutionClient, ledger: DeliveryLedger, pace: TypingPace) -> ReplyDeliverer:
    return ReplyDeliverer(
        client,
        ledger,
        pace=pace,
        policy=RetryPolicy(attempts=1, base_seconds=0.01, max_seconds=0.01),
        lock_ttl_seconds=5,
        chunk_limits=ChunkLimits(max_chars=120, max_chunks=5),
        mark_read=True,
    )


async def test_a_long_reply_is_sent_as_several_messages_in_order_each_typed_first(
    chunked: ReplyDeliverer, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    outcome = await chunked.deliver(make_reply(LONG))

    sent = evolution.sent_texts()
    assert [s.text for s in sent] == [
        "Primeiro parágrafo, com algum texto. " * 2 + "Primeiro parágrafo, com algum texto.",
        "Segundo parágrafo aqui. " * 2 + "Segundo parágrafo aqui.\n\nFim.",
    ]
    assert outcome.message_ids == tuple(s.message_id for s in sent)
    assert [r.endpoint for r in evolution.requests] == [
        "/chat/markMessageAsRead",
        *["/chat/sendPresence", "/message/sendText"] * 2,
    ]


async def test_a_failure_on_a_middle_chunk_resumes_there_without_resending_or_skipping(
    chunked: ReplyDeliverer, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply(LONG)
    evolution.fail_next("sendText", 500, timed_out_body(), skip=1)

    with pytest.raises(EvolutionUnavailable):
        await chunked.deliver(reply)
    assert len(evolution.sent_texts()) == 1
    outcome = await chunked.deliver(reply)

    texts = [s.text for s in evolution.sent_texts()]
    assert texts == list(split_reply(LONG, max_chars=120, max_chunks=5))
    assert outcome.message_ids == tuple(s.message_id for s in evolution.sent_texts())
    assert len(evolution.read_receipts()) == 1, "read once, before the first chunk only"


async def test_a_redelivery_keeps_the_first_split_even_if_the_limits_changed(
    chunked: ReplyDeliverer,
    client: EvolutionClient,
    ledger: DeliveryLedger,
    pace: TypingPace,
    policy: RetryPolicy,
    evolution: FakeEvolution,
    make_reply: Callable[..., Reply],
) -> None:
    reply = make_reply(LONG)
    evolution.fail_next("sendText", 500, timed_out_body(), skip=1)
    with pytest.raises(EvolutionUnavailable):
        await chunked.deliver(reply)
    canary = ReplyDeliverer(
        client, ledger, pace=pace, policy=policy, lock_ttl_seconds=5, chunk_limits=ChunkLimits(600, 5)
    )

    await canary.deliver(reply)

    assert [s.text for s in evolution.sent_texts()] == list(split_reply(LONG, max_chars=120, max_chunks=5))


async def test_the_answered_messages_are_marked_read_in_the_chat_before_typing(
    chunked: ReplyDeliverer, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    reply = make_reply().model_copy(update={"in_reply_to": ("3A01", "3A02", "3A01")})
    await chunked.deliver(reply)

    read, presence = evolution.requests[:2]
    assert read.path == "/chat/markMessageAsRead/acme"
    assert read.json == {
        "readMessages": [
            {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False, "id": "3A01"},
            {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False, "id": "3A02"},
        ]
    }
    assert read.status == 201
    assert [r.message_id for r in evolution.read_receipts("acme")] == ["3A01", "3A02"]
    assert presence.endpoint == "/chat/sendPresence"


@pytest.mark.parametrize(
    "failure",
    [
        (
            500,
            {"status": 500, "error": "Internal Server Error", "response": {"message": "Read messages fail"}},
        ),
        (401, None),
    ],
    ids=["evolution 500", "refused key"],
)
async def test_a_failed_read_receipt_is_logged_and_the_reply_still_goes_out(
    chunked: ReplyDeliverer,
    evolution: FakeEvolution,
    make_reply: Callable[..., Reply],
    failure: tuple[int, object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    evolution.fail_next("markMessageAsRead", failure[0], failure[1])

    await chunked.deliver(make_reply("Oi!"))

    assert [s.text for s in evolution.sent_texts()] == ["Oi!"]
    assert "markMessageAsRead failed; replying anyway" in caplog.text


async def test_a_hanging_read_receipt_delays_the_reply_only_by_its_own_timeout(
    client: EvolutionClient,
    ledger: DeliveryLedger,
    pace: TypingPace,
    policy: RetryPolicy,
    evolution: FakeEvolution,
    make_reply: Callable[..., Reply],
) -> None:
    evolution.hang_next("markMessageAsRead", 2.0)
    impatient = ReplyDeliverer(
        client,
        ledger,
        pace=pace,
        policy=policy,
        lock_ttl_seconds=5,
        mark_read=True,
        courtesies=Courtesies(client, timeout_seconds=0.2),
    )

    await impatient.deliver(make_reply("Oi!"))

    read, *_ = evolution.requests
    assert evolution.sent_texts()[0].received_monotonic - read.received_monotonic < 1.0


async def test_nothing_is_marked_read_when_disabled(
    deliverer: ReplyDeliverer, evolution: FakeEvolution, make_reply: Callable[..., Reply]
) -> None:
    await deliverer.deliver(make_reply())
    assert evolution.requests_to("markMessageAsRead") == []


async def test_a_redis_blip_while_recording_a_sent_chunk_is_retried_and_the_chunk_not_sent_again(
    deliverer: ReplyDeliverer,
    ledger: DeliveryLedger,
    evolution: FakeEvolution,
    make_reply: Callable[..., Reply],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_sent = ledger.record_sent
    failures = 2

    async def flaky(*args: object, **kwargs: object) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RedisConnectionError("connection reset")
        await record_sent(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger, "record_sent", flaky)
    reply = make_reply()
    await deliverer.deliver(reply)
    await deliverer.deliver(reply)

    assert len(evolution.sent_texts()) == 1
    assert len(await ledger.sent_chunks(reply)) == 1


async def test_a_sent_chunk_that_cannot_be_recorded_means_redelivery(
    deliverer: ReplyDeliverer,
    ledger: DeliveryLedger,
    make_reply: Callable[..., Reply],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def down(*args: object, **kwargs: object) -> None:
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(ledger, "record_sent", down)
    with pytest.raises(DependencyUnavailable):
        await deliverer.deliver(make_reply())
