"""Redis ran the command, and the answer was lost with the connection: redis-py sends it again on a new one.

Every script and lease papo keeps state with must answer the repeat as the first run would have. Each test
puts a proxy in front of the real Redis that loses the answer to one command (`LostReplyProxy`) and checks
the outcome through a client of its own.
"""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from papo_common import resilience
from papo_common.contracts import ConversationRef, SessionClosed
from papo_common.redis import ConversationKeys, make_redis
from papo_common.resilience import hold_lease
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore, member_of
from papo_ingest import dedupe
from papo_ingest.dedupe import ClaimOutcome, SeenMessages, new_claim_token
from papo_llm import history, sessions
from papo_llm.history import HistoryStore, decode_turn
from papo_llm.prompt import PendingMessage, Turn
from papo_llm.sessions import SessionKeeper
from papo_testing.factories import ANA, T0, text_message
from papo_testing.lost_replies import LostReplyProxy

pytestmark = pytest.mark.integration


async def test_a_lease_whose_acquire_answer_was_lost_is_held_and_then_released(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:lease-{uuid.uuid4().hex[:6]}"
    await redis_client.script_load(resilience._ACQUIRE)  # the answer lost is the lease's, not NOSCRIPT's
    async with LostReplyProxy(redis_url, marker=key.encode()).running() as proxy:
        client = make_redis(proxy.url)
        try:
            # with redis-py's plain SET NX the repeat found the key taken by its own token: LeaseBusy, and the
            # lease held by nobody until its TTL ran out
            async with hold_lease(client, key, lease_seconds=30, wait_seconds=0) as lease:
                assert proxy.lost.is_set()
                await lease.ensure_held()
        finally:
            await client.aclose()
    assert await redis_client.exists(key) == 0, "released, not left to lapse"


async def test_a_debounce_claim_whose_answer_was_lost_is_published_now_not_after_its_lease(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    settings = DebounceSettings(redis_key_prefix=redis_prefix, debounce_seconds=1)
    clock = T0.timestamp()
    seeding = DebounceStore(redis_client, settings, clock=lambda: clock)
    await seeding.add_message(text_message("A", "oi"))
    clock += 5  # past the quiet window
    flushing_meta = ConversationKeys(redis_prefix, ANA).scoped("debounce:flushing:meta")
    async with LostReplyProxy(redis_url, marker=flushing_meta.encode()).running() as proxy:
        client = make_redis(proxy.url)
        try:
            store = DebounceStore(client, settings, clock=lambda: clock)
            [flushing] = await store.claim([member_of(ANA)])
            assert proxy.lost.is_set()
        finally:
            await client.aclose()
    assert [item.message_id for item in flushing.items] == ["A"]
    claimed = await redis_client.zscore(seeding.claims_key, member_of(ANA))
    assert claimed is not None and claimed > clock, "claimed once, by this publisher"
    assert await seeding.complete([(flushing, ["A"])]) == 1, "the claim's token is the one it answered with"


async def test_a_settle_whose_answer_was_lost_adds_its_turns_to_the_history_once(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    keys = ConversationKeys(redis_prefix, ANA)
    seeding = HistoryStore(redis_client, ttl_seconds=600, max_turns=20)
    await seeding.seed(keys, turns=[])
    state = await seeding.record(keys, 1, [PendingMessage(1000, 1, 0, "A", "oi")])
    assert state is not None
    await redis_client.script_load(history._SETTLE)
    async with LostReplyProxy(redis_url, marker=b"Hello there!").running() as proxy:
        client = make_redis(proxy.url)
        try:
            store = HistoryStore(client, ttl_seconds=600, max_turns=20)
            await store.settle(keys, state.pending, [Turn("user", "oi"), Turn("assistant", "Hello there!")])
            assert proxy.lost.is_set()
        finally:
            await client.aclose()
    turns = [decode_turn(raw) for raw in await redis_client.lrange(keys.history, 0, -1)]
    assert turns == [Turn("user", "oi"), Turn("assistant", "Hello there!")]


async def test_an_ingest_claim_whose_answer_was_lost_is_this_requests_claim(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    await redis_client.script_load(dedupe._CLAIM_SCRIPT)
    key = SeenMessages(redis_client, redis_prefix, published_ttl_seconds=600, claim_ttl_seconds=5).key(
        ANA.instance, "A"
    )
    async with LostReplyProxy(redis_url, marker=key.encode()).running() as proxy:
        client = make_redis(proxy.url)
        try:
            seen = SeenMessages(client, redis_prefix, published_ttl_seconds=600, claim_ttl_seconds=5)
            token = new_claim_token()
            # with the answer taken for another request's claim, the webhook waited out its timeout and
            # was answered 503, and Evolution retried it later
            outcome = await seen.claim(key, token, wait_seconds=0)
            assert proxy.lost.is_set()
        finally:
            await client.aclose()
    assert outcome is ClaimOutcome.CLAIMED
    assert await redis_client.get(key) == token


async def test_a_session_sweep_whose_claim_answer_was_lost_closes_the_idle_session_now(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    closed: list[SessionClosed] = []

    async def record(closing: SessionClosed) -> None:
        closed.append(closing)

    async def forget(conversation: ConversationRef) -> None:
        return None

    def keeper(client: Redis) -> SessionKeeper:
        return SessionKeeper(client, redis_prefix, idle_seconds=0, publish=record, forget=forget)

    await keeper(redis_client).touch(ANA)
    await redis_client.script_load(sessions._CLAIM_IDLE)
    closing = f"{redis_prefix}:sessions:closing"
    async with LostReplyProxy(redis_url, marker=closing.encode()).running() as proxy:
        client = make_redis(proxy.url)
        try:
            # before the sweep kept its claim, the repeat found the session already claimed (by the run whose
            # answer was lost) and claimed nothing: the session closed only after the 60 s lease
            assert await keeper(client).sweep() == 1
            assert proxy.lost.is_set()
        finally:
            await client.aclose()
    assert [c.conversation for c in closed] == [ANA]
    assert await redis_client.zcard(closing) == 0, "the claim was released"
