"""Burst semantics over the real Redis, on an injected clock: window, cap, size, order, dedupe, voice notes,
crashes, races, and stalled publishers."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from papo_common.contracts import UNDERSTOOD_NOTHING, Burst, ConversationRef
from papo_common.redis import ConversationKeys
from papo_debounce.flusher import Flusher
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import Added, DebounceStore
from papo_testing.factories import ANA, FakeClock, audio_message, text_message, transcript

pytestmark = pytest.mark.integration


class Collector:
    def __init__(self) -> None:
        self.bursts: list[Burst] = []

    async def __call__(self, burst: Burst) -> None:
        self.bursts.append(burst)


def flusher_for(store: DebounceStore) -> tuple[Flusher, Collector]:
    collected = Collector()
    return Flusher(store, collected), collected


async def test_quiet_window_flushes_one_ordered_burst(store: DebounceStore, clock: FakeClock) -> None:
    flusher, out = flusher_for(store)
    # arrival order differs from send order: Evolution retries webhooks independently
    for message in (
        text_message("B", "tudo bem?", seconds=2),
        text_message("A", "oi", seconds=1),
        text_message("C", "quero um bolo", seconds=3),
    ):
        assert (await store.add_message(message))[0] is Added.BUFFERED
    clock.advance(14.9)
    assert await flusher.flush_due() == 0, "nothing is due inside the quiet window"
    clock.advance(0.2)
    assert await flusher.flush_due() == 1
    [burst] = out.bursts
    assert [item.text for item in burst.items] == ["oi", "tudo bem?", "quero um bolo"]
    assert burst.reason == "quiet"
    assert burst.inbound_seq == 3
    assert burst.chat_id == ANA.user_id and burst.push_name == "Ana"
    assert ANA.user_id.split("@")[0] not in burst.burst_id, "a burst's id does not carry the number"
    assert await flusher.flush_due() == 0, "a burst is flushed exactly once"


async def test_each_message_restarts_the_window(store: DebounceStore, clock: FakeClock) -> None:
    flusher, out = flusher_for(store)
    for index in range(3):
        await store.add_message(text_message(f"m{index}", f"parte {index}", seconds=index))
        clock.advance(10)
        assert await flusher.flush_due() == 0
    clock.advance(5.1)
    assert await flusher.flush_due() == 1
    assert len(out.bursts[0].items) == 3


async def test_chatty_person_is_flushed_at_the_cap(
    store: DebounceStore, redis: Redis, settings: DebounceSettings, clock: FakeClock
) -> None:
    store = DebounceStore(redis, settings.model_copy(update={"debounce_max_messages": 20}), clock=clock)
    flusher, out = flusher_for(store)
    started = clock.now
    index = 0
    while not out.bursts:
        await store.add_message(text_message(f"m{index}", f"msg {index}", seconds=index))
        index += 1
        clock.advance(10)
        await flusher.flush_due()
        assert clock.now - started < 100, "the cap must end the burst"
    assert out.bursts[0].reason == "max_wait"
    assert settings.debounce_max_wait_seconds <= clock.now - started < settings.debounce_max_wait_seconds + 10


async def test_full_burst_is_flushed_at_once(store: DebounceStore, settings: DebounceSettings) -> None:
    flusher, out = flusher_for(store)
    for index in range(settings.debounce_max_messages):
        await store.add_message(text_message(f"m{index}", "x", seconds=index))
    assert await flusher.flush_due() == 1
    assert out.bursts[0].reason == "max_size"
    assert len(out.bursts[0].items) == settings.debounce_max_messages


async def test_duplicates_and_redeliveries_join_no_burst(store: DebounceStore, clock: FakeClock) -> None:
    flusher, out = flusher_for(store)
    assert await store.add_message(text_message("A", "oi")) == (Added.BUFFERED, 1)
    assert (await store.add_message(text_message("A", "oi")))[0] is Added.DUPLICATE
    clock.advance(16)
    await flusher.flush_due()
    assert (await store.add_message(text_message("A", "oi")))[0] is Added.DUPLICATE, (
        "seen, even after its flush"
    )
    clock.advance(16)
    assert await flusher.flush_due() == 0
    assert len(out.bursts) == 1 and len(out.bursts[0].items) == 1


async def test_voice_note_holds_its_burst_until_transcribed(store: DebounceStore, clock: FakeClock) -> None:
    flusher, out = flusher_for(store)
    await store.add_message(text_message("t1", "oi", seconds=1))
    await store.add_message(audio_message("v1", seconds=2))
    await store.add_message(text_message("t2", "e aí?", seconds=3))
    clock.advance(20)
    assert await flusher.flush_due() == 0, "the quiet window passed but the voice note is still transcribing"
    assert await store.add_transcript(transcript("v1", "queria saber o preço do bolo", seconds=2))
    assert await flusher.flush_due() == 1
    assert [item.text for item in out.bursts[0].items] == ["oi", "queria saber o preço do bolo", "e aí?"]
    assert out.bursts[0].items[1].transcribed


async def test_transcription_timeout_puts_the_marker_in(store: DebounceStore, clock: FakeClock) -> None:
    flusher, out = flusher_for(store)
    await store.add_message(audio_message("v1", seconds=1))
    await store.add_message(text_message("t1", "?", seconds=2))
    clock.advance(119)
    assert await flusher.flush_due() == 0
    clock.advance(2)
    assert await flusher.flush_due() == 1
    assert out.bursts[0].items[0].text == UNDERSTOOD_NOTHING
    # a late transcript neither resurrects nor breaks anything
    assert not await store.add_transcript(transcript("v1", "tarde demais"))
    clock.advance(16)
    assert await flusher.flush_due() == 0


async def test_failed_transcription_becomes_the_marker(store: DebounceStore, clock: FakeClock) -> None:
    flusher, out = flusher_for(store)
    await store.add_message(audio_message("v1"))
    await store.add_transcript(transcript("v1", None))
    clock.advance(16)
    await flusher.flush_due()
    assert out.bursts[0].items[0].text == UNDERSTOOD_NOTHING


async def test_transcript_that_overtakes_its_voice_note(store: DebounceStore, clock: FakeClock) -> None:
    flusher, out = flusher_for(store)
    assert not await store.add_transcript(transcript("v1", "cheguei antes"))
    await store.add_message(audio_message("v1"))
    clock.advance(16)
    assert await flusher.flush_due() == 1, "nothing is pending: the transcript was already there"
    assert out.bursts[0].items[0].text == "cheguei antes"


async def test_publisher_crash_is_recovered_with_the_same_burst(
    store: DebounceStore, clock: FakeClock
) -> None:
    await store.add_message(text_message("A", "oi"))
    clock.advance(16)
    attempted: list[Burst] = []

    async def crash(burst: Burst) -> None:
        attempted.append(burst)
        raise ConnectionError("broker went away")

    crashed = Flusher(store, crash)
    assert await crashed.flush_due() == 0
    survivor, out = flusher_for(store)
    assert await survivor.flush_due() == 0, "the claim is leased to the crashed replica for a while"
    clock.advance(31)
    assert await survivor.flush_due() == 1
    assert [item.message_id for item in out.bursts[0].items] == ["A"]
    assert out.bursts[0].burst_id == attempted[0].burst_id, "the same burst, deduplicated downstream"


async def test_next_burst_waits_for_the_previous_publish(store: DebounceStore, clock: FakeClock) -> None:
    gate = asyncio.Event()
    publishing = asyncio.Event()
    out: list[Burst] = []

    async def slow(burst: Burst) -> None:
        publishing.set()
        await gate.wait()
        out.append(burst)

    await store.add_message(text_message("A", "primeiro", seconds=1))
    clock.advance(16)
    first = asyncio.create_task(Flusher(store, slow).flush_due())
    await publishing.wait()
    await store.add_message(text_message("B", "segundo", seconds=2))
    clock.advance(16)
    other, other_out = flusher_for(store)
    assert await other.flush_due() == 0, "burst 2 is due but burst 1 is still being published"
    gate.set()
    await first
    assert await other.flush_due() == 1
    assert [b.items[0].text for b in (*out, *other_out.bursts)] == ["primeiro", "segundo"]
    assert other_out.bursts[0].inbound_seq == 2


async def test_publisher_stalled_past_its_lease_cannot_touch_the_next_burst(
    store: DebounceStore, clock: FakeClock
) -> None:
    """A stalls with burst 1 past its lease; B republishes burst 1; C claims burst 2 and crashes before its
    publish is confirmed. A finishing late must not delete burst 2's state: D publishes burst 2."""
    stalled, stalling = asyncio.Event(), asyncio.Event()
    late: list[Burst] = []

    async def stall(burst: Burst) -> None:
        stalling.set()
        await stalled.wait()
        late.append(burst)

    crashed = asyncio.Event()

    async def crash(burst: Burst) -> None:
        crashed.set()
        raise ConnectionError("broker went away")

    await store.add_message(text_message("A", "primeiro", seconds=1))
    clock.advance(16)
    replica_a = asyncio.create_task(Flusher(store, stall).flush_due())
    await stalling.wait()
    clock.advance(31)  # A's lease runs out
    replica_b, b_out = flusher_for(store)
    assert await replica_b.flush_due() == 1
    await store.add_message(text_message("B", "segundo", seconds=2))
    clock.advance(16)
    assert await Flusher(store, crash).flush_due() == 0
    assert crashed.is_set(), "C claimed burst 2"
    stalled.set()
    await replica_a  # A's publish of burst 1 finally returns, and it tries to complete
    clock.advance(31)  # C's lease runs out
    replica_d, d_out = flusher_for(store)
    assert await replica_d.flush_due() == 1, "burst 2 survived the stalled publisher"
    assert [b.items[0].text for b in (*b_out.bursts, *d_out.bursts)] == ["primeiro", "segundo"]
    assert late[0].burst_id == b_out.bursts[0].burst_id, "A's late publish is the same burst, deduplicated"
    assert await replica_d.flush_due() == 0


async def test_concurrent_handlers_and_replicas_flush_once(store: DebounceStore, clock: FakeClock) -> None:
    messages = [text_message(f"m{i:02}", f"msg {i}", seconds=i) for i in range(4)]
    # every message delivered twice, all at once, as two replicas with prefetch would
    results = await asyncio.gather(*(store.add_message(m) for m in messages + messages))
    assert sorted(seq for added, seq in results if added is Added.BUFFERED) == [1, 2, 3, 4]
    clock.advance(16)
    replicas = [flusher_for(store) for _ in range(4)]
    flushed = await asyncio.gather(*(flusher.flush_due() for flusher, _ in replicas))
    assert sum(flushed) == 1
    [burst] = [b for _, out in replicas for b in out.bursts]
    assert [item.message_id for item in burst.items] == ["m00", "m01", "m02", "m03"]


async def test_conversations_are_isolated(store: DebounceStore, clock: FakeClock) -> None:
    flusher, out = flusher_for(store)
    other_instance = ConversationRef(instance="padaria", user_id=ANA.user_id)
    await store.add_message(text_message("A", "oi loja"))
    await store.add_message(text_message("A", "oi padaria", conversation=other_instance))
    clock.advance(16)
    assert await flusher.flush_due() == 2
    texts = sorted(b.items[0].text for b in out.bursts)
    assert texts == ["oi loja", "oi padaria"]
    assert {b.conversation.instance for b in out.bursts} == {"loja", "padaria"}


async def test_a_full_page_is_followed_at_once_and_every_burst_flushed_once(
    store: DebounceStore, clock: FakeClock
) -> None:
    people = [ConversationRef(instance="loja", user_id=f"55119{n:08}@s.whatsapp.net") for n in range(25)]
    for person in people:
        await store.add_message(text_message("A", "oi", conversation=person))
    clock.advance(16)
    collected = Collector()
    flusher = Flusher(store, collected, page_size=10, poll_interval=0.2)
    assert await flusher.flush_due() == 10
    assert flusher.next_delay() == 0, "a full page: go again at once"
    assert await flusher.flush_due() == 10
    assert await flusher.flush_due() == 5
    assert flusher.next_delay() == 0.2, "nothing more is waiting"
    assert sorted(b.conversation.user_id for b in collected.bursts) == sorted(p.user_id for p in people)


async def test_the_loop_sleeps_until_the_next_burst_is_due(store: DebounceStore, clock: FakeClock) -> None:
    flusher, _ = flusher_for(store)
    await store.add_message(text_message("A", "oi"))
    clock.advance(0.05)
    await store.add_message(
        text_message("B", "oi", conversation=ConversationRef(instance="padaria", user_id=ANA.user_id))
    )
    clock.advance(14.95)
    assert await flusher.flush_due() == 1
    assert flusher.next_delay() == pytest.approx(0.05), "not the poll interval: the next burst is due sooner"
    clock.advance(0.05)
    assert await flusher.flush_due() == 1
    assert flusher.next_delay() == 0.2, "nothing is waiting: the poll interval"


async def test_expired_counter_restarts_above_the_answered_watermark(
    store: DebounceStore, redis: Redis, settings: DebounceSettings
) -> None:
    keys = ConversationKeys(settings.redis_key_prefix, ANA)
    await redis.set(keys.answered_seq, 41)
    assert await store.add_message(text_message("A", "voltei")) == (Added.BUFFERED, 42)


async def test_flush_continues_the_trace_of_the_first_message(
    store: DebounceStore, redis: Redis, settings: DebounceSettings, clock: FakeClock
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from papo_common.telemetry import setup_tracing, tracer
    from papo_debounce.debouncer import Debouncer

    exporter = InMemorySpanExporter()
    setup_tracing("debounce-test", processor=SimpleSpanProcessor(exporter))
    debouncer = Debouncer(store, redis, settings)
    with tracer("test").start_as_current_span("webhook") as webhook:
        await debouncer.handle(text_message("A", "oi"))
    await debouncer.handle(text_message("B", "tudo bem?", seconds=1))  # another trace, or none
    clock.advance(16)
    flusher, _ = flusher_for(store)
    assert await flusher.flush_due() == 1
    [flush] = [span for span in exporter.get_finished_spans() if span.name == "papo.debounce.flush"]
    assert flush.context.trace_id == webhook.get_span_context().trace_id
    assert flush.attributes["papo.burst.messages"] == 2


async def test_a_burst_claimed_by_the_previous_version_is_republished(
    store: DebounceStore, redis: Redis, settings: DebounceSettings, clock: FakeClock
) -> None:
    """A rolling upgrade: the old scripts wrote no burst id or token into the claim; its lease runs out and a new
    replica still publishes the burst."""
    await store.add_message(text_message("A", "oi"))
    clock.advance(16)

    async def crash(burst: Burst) -> None:
        raise ConnectionError("the old replica died")

    await Flusher(store, crash).flush_due()
    meta = ConversationKeys(settings.redis_key_prefix, ANA).scoped("debounce:flushing:meta")
    await redis.hdel(meta, "burst_id", "claim_token")
    clock.advance(31)
    flusher, out = flusher_for(store)
    assert await flusher.flush_due() == 1
    assert [item.message_id for item in out.bursts[0].items] == ["A"]
    assert await flusher.flush_due() == 0


async def test_a_full_page_held_behind_unfinished_publishes_does_not_spin(
    store: DebounceStore, clock: FakeClock
) -> None:
    people = [ConversationRef(instance="loja", user_id=f"55119{n:08}@s.whatsapp.net") for n in range(3)]
    for person in people:
        await store.add_message(text_message("A", "oi", conversation=person))
    clock.advance(16)

    async def crash(burst: Burst) -> None:
        raise ConnectionError("broker went away")

    await Flusher(store, crash).flush_due()  # each conversation's first burst is claimed, unfinished
    for person in people:
        await store.add_message(text_message("B", "oi?", seconds=1, conversation=person))
    clock.advance(16)
    flusher = Flusher(store, Collector(), page_size=3, poll_interval=0.2)
    assert await flusher.flush_due() == 0, "every second burst waits for its first"
    assert flusher.next_delay() == 0.2, "a full page, but nothing could be claimed: wait"


async def test_each_burst_names_the_one_cut_before_it(store: DebounceStore, clock: FakeClock) -> None:
    """So the llm can hold a burst back while its predecessor is still on its way (a retry queue)."""
    flusher, out = flusher_for(store)
    await store.add_message(text_message("A", "oi", seconds=1))
    clock.advance(15.1)
    assert await flusher.flush_due() == 1
    await store.add_message(text_message("B", "tudo bem?", seconds=30))
    await store.add_message(text_message("C", "quero um bolo", seconds=31))
    clock.advance(15.1)
    assert await flusher.flush_due() == 1

    first, second = out.bursts
    assert first.previous_inbound_seq is None, "the conversation's first burst follows none"
    assert second.previous_inbound_seq == first.inbound_seq == 1
    assert second.inbound_seq == 3
