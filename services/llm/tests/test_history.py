"""The hot history in Redis: missing vs present, idempotent appends, the answered watermark, bounds, TTL."""

from __future__ import annotations

from redis.asyncio import Redis

from papo_common.redis import ConversationKeys
from papo_llm.history import HistoryStore
from papo_llm.prompt import Turn


def keys_for(prefix: str, make_burst, make_item) -> ConversationKeys:
    return ConversationKeys(prefix, make_burst(make_item("m", "x")).conversation)


async def test_a_missing_history_is_none_and_an_answer_appends_both_turns(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    assert await store.load(keys) is None

    assert await store.record(keys, 3, [Turn("user", "oi"), Turn("assistant", "Olá!")], answered=True)

    assert await store.load(keys) == [Turn("user", "oi"), Turn("assistant", "Olá!")]
    assert await store.answered_seq(keys) == 3


async def test_a_burst_is_appended_once_however_often_it_is_recorded(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    await store.record(keys, 2, [Turn("user", "a")], answered=False)

    assert not await store.record(keys, 2, [Turn("user", "a")], answered=False)
    assert not await store.record(keys, 1, [Turn("user", "older")], answered=False)
    assert await store.load(keys) == [Turn("user", "a")]
    assert await store.answered_seq(keys) == 0


async def test_the_answered_watermark_never_goes_back(redis: Redis, prefix, make_burst, make_item) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    await store.record(keys, 5, [Turn("user", "b")], answered=True)
    await store.record(keys, 4, [Turn("user", "a")], answered=True)

    assert await store.answered_seq(keys) == 5


async def test_the_list_is_bounded_and_its_idle_ttl_refreshed_on_read(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=3)
    keys = keys_for(prefix, make_burst, make_item)
    for seq in range(1, 4):
        await store.record(keys, seq, [Turn("user", f"u{seq}"), Turn("assistant", f"a{seq}")], answered=True)
    await redis.pexpire(keys.history, 5000)

    turns = await store.load(keys)

    assert turns == [Turn("assistant", "a2"), Turn("user", "u3"), Turn("assistant", "a3")]
    assert await redis.pttl(keys.history) > 500_000


async def test_seeding_fills_only_a_missing_history(redis: Redis, prefix, make_burst, make_item) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    await store.seed(keys, [Turn("user", "from postgres")])
    await store.seed(keys, [Turn("user", "a second reload")])

    assert await store.load(keys) == [Turn("user", "from postgres")]
    assert 0 < await redis.pttl(keys.history) <= 600_000


async def test_inbound_seq_is_read_from_debounces_counter(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    assert await store.inbound_seq(keys) == 0
    await redis.incr(keys.inbound_seq)
    await redis.incr(keys.inbound_seq)

    assert await store.inbound_seq(keys) == 2
