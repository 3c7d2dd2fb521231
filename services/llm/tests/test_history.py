"""The conversation's state in Redis: recording once, pending in send order, settling, seeding, bounds, TTL."""

from __future__ import annotations

from redis.asyncio import Redis

from papo_common.redis import ConversationKeys
from papo_llm.history import HistoryStore, decode_turn
from papo_llm.prompt import PendingMessage, Turn


def keys_for(prefix: str, make_burst, make_item) -> ConversationKeys:
    return ConversationKeys(prefix, make_burst(make_item("m", "x")).conversation)


def message(message_id: str, at: int, text: str, *, seq: int = 1, position: int = 0) -> PendingMessage:
    return PendingMessage(at, seq, position, message_id, text)


async def history(redis: Redis, keys: ConversationKeys) -> list[Turn]:
    return [decode_turn(raw) for raw in await redis.lrange(keys.history, 0, -1)]


async def test_a_lost_state_records_nothing_until_it_is_seeded(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)

    assert await store.record(keys, 1, [message("m1", 1000, "oi")]) is None
    assert not await redis.exists(keys.scoped("pending"))

    await store.seed(keys, turns=[])
    state = await store.record(keys, 1, [message("m1", 1000, "oi")])
    assert state is not None
    assert state.pending == [message("m1", 1000, "oi")]
    assert state.history is None, "no answered turns yet"
    assert state.recorded_seq == 1


async def test_a_message_is_recorded_once_and_pending_is_in_send_order(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    await store.seed(keys, turns=[])
    await store.record(
        keys, 2, [message("b", 2000, "second", seq=2), message("c", 2000, "third", seq=2, position=1)]
    )
    state = await store.record(
        keys, 1, [message("a", 1000, "first"), message("b", 2000, "second again", seq=9)]
    )

    assert state is not None
    assert [(m.message_id, m.content) for m in state.pending] == [
        ("a", "first"),
        ("b", "second"),
        ("c", "third"),
    ]
    assert state.recorded_seq == 2, "the recorded watermark never goes back"


async def test_settling_moves_messages_into_the_history_and_they_are_never_pending_again(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    await store.seed(keys, turns=[])
    state = await store.record(keys, 1, [message("a", 1000, "oi")])
    assert state is not None

    await store.settle(keys, state.pending, [Turn("user", "oi"), Turn("assistant", "Olá!")])
    again = await store.record(keys, 1, [message("a", 1000, "oi")])

    assert again is not None and again.pending == []
    assert again.history == [Turn("user", "oi"), Turn("assistant", "Olá!")]


async def test_the_history_is_bounded_and_its_idle_ttl_refreshed_on_record(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=3)
    keys = keys_for(prefix, make_burst, make_item)
    await store.seed(keys, turns=[])
    for seq in range(1, 4):
        await store.settle(keys, [], [Turn("user", f"u{seq}"), Turn("assistant", f"a{seq}")])
    await redis.pexpire(keys.history, 5000)

    state = await store.record(keys, 4, [])

    assert state is not None
    assert state.history == [Turn("assistant", "a2"), Turn("user", "u3"), Turn("assistant", "a3")]
    assert await redis.pttl(keys.history) > 500_000


async def test_seeding_fills_only_a_missing_history_and_adds_what_is_pending(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    await store.seed(
        keys, turns=[Turn("user", "from postgres")], seen=["old"], pending=[message("p", 5, "later")]
    )
    await store.seed(keys, turns=[Turn("user", "a second reload")])

    assert await history(redis, keys) == [Turn("user", "from postgres")]
    state = await store.record(keys, 3, [message("old", 1, "answered long ago"), message("p", 5, "later")])
    assert state is not None and [m.message_id for m in state.pending] == ["p"]
    assert 0 < await redis.pttl(keys.history) <= 600_000


async def test_forgetting_drops_the_history_but_not_what_was_recorded(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    await store.seed(keys, turns=[Turn("user", "a")])
    await store.record(keys, 1, [message("a", 1, "a")])

    await store.forget(keys)

    state = await store.record(keys, 1, [message("a", 1, "a")])
    assert state is not None and state.history is None
    assert [m.message_id for m in state.pending] == ["a"]


async def test_inbound_seq_is_read_from_debounces_counter(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    assert await store.inbound_seq(keys) == 0
    await redis.incr(keys.inbound_seq)
    await redis.incr(keys.inbound_seq)

    assert await store.inbound_seq(keys) == 2


async def test_a_burst_orders_its_messages_that_were_reloaded_from_postgresql(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    # PostgreSQL knows the second each was sent in, not their order within it; the burst does
    store = HistoryStore(redis, ttl_seconds=600, max_turns=10)
    keys = keys_for(prefix, make_burst, make_item)
    reloaded = [
        message("c", 1000, "to the city centre", seq=0, position=0),
        message("a", 1000, "hi", seq=0, position=1),
    ]
    await store.seed(keys, turns=[], pending=reloaded)
    burst = [
        message("a", 1000, "hi", seq=3, position=0),
        message("b", 1000, "do you deliver?", seq=3, position=1),
        message("c", 1000, "to the city centre", seq=3, position=2),
    ]
    state = await store.record(keys, 3, burst)

    assert state is not None
    assert [m.content for m in state.pending] == ["hi", "do you deliver?", "to the city centre"]
