"""A turn end to end without a broker: a scripted model, real Redis, an in-memory archive.

Every message reaches the model exactly once, in `messageTimestamp` order, however its bursts are delivered:
out of order, twice, after a failed turn, or after Redis lost its copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, Reply, SessionClosed
from papo_common.metrics import LLM_TURNS
from papo_common.redis import ConversationKeys
from papo_llm.archive import Recalled
from papo_llm.burst_order import WAITING_SUFFIX
from papo_llm.engines import ChatMessage, Completion, CompletionFailed
from papo_llm.history import HistoryStore, decode_turn
from papo_llm.prompt import PendingMessage, Turn
from papo_llm.sessions import SessionKeeper
from papo_llm.settings import LlmSettings
from papo_llm.turns import EarlierBurstPending, TurnTaker
from papo_testing.factories import T0


class ScriptedEngine:
    model = "scripted"

    def __init__(self, during: Callable[[], Any] | None = None, fail: bool | BaseException = False) -> None:
        self.prompts: list[list[ChatMessage]] = []
        self.during = during
        self.fail = fail

    async def complete(self, messages: list[ChatMessage]) -> Completion:
        self.prompts.append(messages)
        if self.during is not None:
            await self.during()
        if self.fail:
            raise self.fail if isinstance(self.fail, BaseException) else CompletionFailed("HTTP 401")
        return Completion(
            text=f"answer {len(self.prompts)}", model="scripted-1", prompt_tokens=9, completion_tokens=2
        )

    async def aclose(self) -> None:
        pass


class MemoryArchive:
    def __init__(self, turns: list[Turn] | None = None, pending: list[PendingMessage] | None = None) -> None:
        self.turns = turns or []
        self.pending = pending or []
        self.calls: list[dict[str, Any]] = []

    async def recall(
        self,
        conversation: ConversationRef,
        *,
        max_rows: int,
        carryover_turns: int = 0,
        exclude_message_ids: Sequence[str] = (),
    ) -> Recalled:
        self.calls.append({"exclude": list(exclude_message_ids), "max_rows": max_rows})
        pending = [m for m in self.pending if m.message_id not in exclude_message_ids]
        return Recalled(turns=self.turns, pending=pending, seen=[])


async def history_of(redis: Redis, keys: ConversationKeys) -> list[Turn] | None:
    raw = await redis.lrange(keys.history, 0, -1)
    return [decode_turn(turn) for turn in raw] if raw else None


async def answered_seq(redis: Redis, keys: ConversationKeys) -> int:
    return int(await redis.get(keys.answered_seq) or 0)


NOW = T0 + timedelta(minutes=1)
"""The llm's clock in these tests: a minute after the factories' messages were sent."""


def taker(
    redis: Redis,
    prefix: str,
    engine: ScriptedEngine,
    archive: MemoryArchive | None = None,
    closed: list[SessionClosed] | None = None,
    **overrides: Any,
):
    settings = LlmSettings(redis_key_prefix=prefix, system_prompt="S", llm_turn_wait_seconds=2, **overrides)
    published: list[Reply] = []
    closed = closed if closed is not None else []
    history = HistoryStore(redis, ttl_seconds=600, max_turns=20)

    async def publish(reply: Reply) -> None:
        published.append(reply)

    async def publish_closed(session: SessionClosed) -> None:
        closed.append(session)

    async def forget(conversation: ConversationRef) -> None:
        await history.forget(ConversationKeys(prefix, conversation))

    sessions = SessionKeeper(
        redis,
        prefix,
        idle_seconds=settings.session_idle_seconds,
        publish=publish_closed,
        forget=forget,
    )

    turns = TurnTaker(
        settings=settings,
        redis=redis,
        engine=engine,
        store=HistoryStore(redis, ttl_seconds=600, max_turns=20),
        archive=archive or MemoryArchive(),  # type: ignore[arg-type]
        publish=publish,
        sessions=sessions,
        clock=lambda: NOW,
    )
    return turns, published


def keys_for(prefix: str, burst: Any) -> ConversationKeys:
    return ConversationKeys(prefix, burst.conversation)


async def test_an_answer_is_published_and_both_turns_join_the_history(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi"), make_item("m2", "tudo bem?", seconds=1), seq=2)
    keys = keys_for(prefix, burst)

    assert await turns.handle(burst) == "answered"

    [reply] = published
    assert reply.reply_id == f"reply:{burst.burst_id}"
    assert reply.in_reply_to == ("m1", "m2")
    assert (reply.text, reply.model, reply.usage.prompt_tokens) == ("answer 1", "scripted-1", 9)
    assert engine.prompts[0][-1] == {"role": "user", "content": "oi\ntudo bem?"}
    assert await history_of(redis, keys) == [Turn("user", "oi\ntudo bem?"), Turn("assistant", "answer 1")]
    assert await answered_seq(redis, keys) == 2
    assert not await redis.exists(keys.turn_lock)


async def test_a_redelivered_answered_burst_is_a_duplicate(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi"), seq=1)

    assert await turns.handle(burst) == "answered"
    assert await turns.handle(burst) == "duplicate"
    assert len(engine.prompts) == 1 and len(published) == 1


async def test_an_older_burst_handled_after_a_newer_one_is_still_answered(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    # issue 9.1: a newer burst took the lock first; the older one was acked as a duplicate, its text lost
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    older = make_burst(make_item("m1", "quero pizza"), seq=1)
    newer = make_burst(make_item("m2", "de calabresa", seconds=5), seq=2)
    keys = keys_for(prefix, older)
    await redis.set(keys.inbound_seq, 2)

    assert await turns.handle(newer) == "answered"
    assert await turns.handle(older) == "answered"
    assert await turns.handle(newer) == "duplicate"
    assert await turns.handle(older) == "duplicate"

    said = [prompt[-1]["content"] for prompt in engine.prompts]
    assert said == ["de calabresa", "quero pizza"], "each message reached the model once"
    assert [r.in_reply_to for r in published] == [("m2",), ("m1",)]


async def test_a_late_older_message_is_in_the_prompt_once_in_timestamp_order(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    # issue 9.1: m1 (T+1) waited while the llm was down; m0 (T) arrived later. Redis had lost the history and
    # PostgreSQL already held both: m0 was in the prompt twice.
    t = 100
    m0 = make_item("m0", "bom dia", seconds=t)
    m1 = make_item("m1", "vocês abrem hoje?", seconds=t + 1)
    archive = MemoryArchive(
        [Turn("user", "ontem"), Turn("assistant", "resposta de ontem")],
        pending=[
            PendingMessage(int(m.sent_at.timestamp() * 1000), 0, i, m.message_id, m.text)
            for i, m in enumerate([m0, m1])
        ],
    )
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine, archive)
    first, late = make_burst(m1, seq=1), make_burst(m0, seq=2)
    keys = keys_for(prefix, first)
    await redis.set(keys.inbound_seq, 2)

    assert await turns.handle(first) == "superseded"
    assert await turns.handle(late) == "answered"
    assert await turns.handle(first) == "duplicate"

    [prompt] = engine.prompts
    assert [m["content"] for m in prompt[1:]] == ["ontem", "resposta de ontem", "bom dia\nvocês abrem hoje?"]
    assert published[0].in_reply_to == ("m0", "m1")


async def test_a_failed_turn_leaves_its_messages_for_the_next_turn_and_its_redelivery(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    # issue 9.1: a burst failed while holding the lock; a later burst answered; the failed one's redelivery was
    # a "duplicate" and its text never reached the model
    from papo_common.errors import DependencyUnavailable

    engine = ScriptedEngine(fail=DependencyUnavailable("model server down"))
    turns, published = taker(redis, prefix, engine)
    failed = make_burst(make_item("m1", "qual o preço?"), seq=1)
    later = make_burst(make_item("m2", "e o prazo?", seconds=30), seq=2)
    keys = keys_for(prefix, failed)

    with pytest.raises(DependencyUnavailable):
        await turns.handle(failed)
    assert not await redis.exists(keys.turn_lock)
    engine.fail = False
    assert await turns.handle(later) == "answered"
    assert await turns.handle(failed) == "duplicate"

    assert engine.prompts[-1][-1]["content"] == "qual o preço?\ne o prazo?"
    assert [r.in_reply_to for r in published] == [("m1", "m2")]


async def test_a_replayed_unanswered_burst_is_answered(redis: Redis, prefix, make_burst, make_item) -> None:
    # issue 9.2: a burst dead-lettered by an outage and replayed later was dropped by the watermark
    engine = ScriptedEngine(fail=CompletionFailed("HTTP 401"))
    turns, published = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi"), seq=1)
    with pytest.raises(CompletionFailed):
        await turns.handle(burst)
    engine.fail = False

    assert await turns.handle(burst) == "answered"
    assert published[0].in_reply_to == ("m1",)


async def test_concurrent_deliveries_of_one_conversation_answer_every_message_once(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    import asyncio

    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    bursts = [make_burst(make_item(f"m{i}", f"texto {i}", seconds=i), seq=i) for i in range(1, 7)]
    keys = keys_for(prefix, bursts[0])
    await redis.set(keys.inbound_seq, 6)

    # every burst twice, newest first
    outcomes = await asyncio.gather(*(turns.handle(b) for b in [*reversed(bursts), *bursts]))

    answered = [m for r in published for m in r.in_reply_to]
    assert sorted(answered) == [f"m{i}" for i in range(1, 7)], outcomes
    said = "\n".join(prompt[-1]["content"] for prompt in engine.prompts).split("\n")
    assert sorted(said) == [f"texto {i}" for i in range(1, 7)]


async def test_a_burst_overtaken_before_its_turn_joins_pending_without_a_call(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    archive = MemoryArchive([Turn("assistant", "Oi! Em que posso ajudar?")])
    turns, published = taker(redis, prefix, engine, archive)
    first = make_burst(make_item("m1", "primeira"), seq=1)
    keys = keys_for(prefix, first)
    await redis.set(keys.inbound_seq, 2)

    assert await turns.handle(first) == "superseded"
    assert engine.prompts == [] and published == []
    # A lost history is reloaded, never restarted from this burst alone.
    assert await history_of(redis, keys) == [Turn("assistant", "Oi! Em que posso ajudar?")]
    assert await turns.handle(make_burst(make_item("m2", "segunda", seconds=5), seq=2)) == "answered"
    assert engine.prompts[0][-2:] == [
        {"role": "assistant", "content": "Oi! Em que posso ajudar?"},
        {"role": "user", "content": "primeira\nsegunda"},
    ]


async def test_more_said_while_generating_supersedes_the_reply(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    burst = make_burst(make_item("m1", "oi"), seq=1)
    keys = keys_for(prefix, burst)

    async def person_writes_again() -> None:
        await redis.set(keys.inbound_seq, 2)

    turns, published = taker(redis, prefix, ScriptedEngine(during=person_writes_again))

    assert await turns.handle(burst) == "superseded"
    assert published == []
    assert await history_of(redis, keys) is None, "nothing answered yet"
    assert await turns.handle(make_burst(make_item("m2", "tem bolo?", seconds=2), seq=2)) == "answered"
    assert published[0].in_reply_to == ("m1", "m2")


async def test_a_failed_completion_is_permanent_and_frees_the_conversation(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    turns, published = taker(redis, prefix, ScriptedEngine(fail=True))
    burst = make_burst(make_item("m1", "oi"), seq=1)
    failed_before = LLM_TURNS.labels(outcome="failed")._value.get()

    with pytest.raises(CompletionFailed):
        await turns.handle(burst)

    assert published == []
    assert not await redis.exists(keys_for(prefix, burst).turn_lock)
    assert LLM_TURNS.labels(outcome="failed")._value.get() == failed_before + 1


async def broker_down(reply: Reply) -> None:
    raise ConnectionError("broker unreachable")


async def test_a_failed_publish_keeps_the_reply_in_the_outbox_and_the_redelivery_publishes_it_unasked(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi"), seq=1)
    keys = keys_for(prefix, burst)
    publish = turns._publish

    turns._publish = broker_down
    with pytest.raises(ConnectionError):
        await turns.handle(burst)
    assert not await redis.exists(keys.turn_lock)
    turns._publish = publish
    assert await turns.handle(burst) == "duplicate", "m1 is answered: only its reply had to go out"
    [reply] = published
    assert reply.in_reply_to == ("m1",)
    assert len(engine.prompts) == 1, "the model was asked once"


async def test_a_reply_recorded_but_not_published_goes_out_before_the_next_burst_is_answered(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    """The chaos tier's double: Redis cut the llm's connection right after a reply was published, the turn
    failed, and the next burst's turn took the messages for unanswered and answered them again."""
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    first = make_burst(make_item("m1", "oi"), seq=1)
    publish = turns._publish

    turns._publish = broker_down
    with pytest.raises(ConnectionError):
        await turns.handle(first)
    turns._publish = publish
    second = make_burst(make_item("m2", "tudo bem?", seconds=5), seq=2)
    assert await turns.handle(second) == "answered"

    assert [reply.in_reply_to for reply in published] == [("m1",), ("m2",)]
    assert published[1].follows == published[0].reply_id
    assert await turns.handle(first) == "duplicate"
    assert len(published) == 2


async def test_lost_history_is_reloaded_from_the_archive_and_seeded(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    archive = MemoryArchive([Turn("user", "ontem"), Turn("assistant", "resposta de ontem")])
    engine = ScriptedEngine()
    turns, _ = taker(redis, prefix, engine, archive)
    burst = make_burst(make_item("m1", "hoje"), make_item("m2", "de novo", seconds=3), seq=7)

    await turns.handle(burst)

    assert archive.calls == [{"exclude": [], "max_rows": 80}]
    assert [m["content"] for m in engine.prompts[0][1:]] == ["ontem", "resposta de ontem", "hoje\nde novo"]
    assert (await history_of(redis, keys_for(prefix, burst)))[:2] == archive.turns
    await turns.handle(make_burst(make_item("m3", "e agora", seconds=60), seq=8))
    assert len(archive.calls) == 1


async def test_a_conversation_new_to_papo_is_read_from_the_archive_once(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    archive = MemoryArchive()  # nothing answered yet: Redis keeps no empty history, the recall must do
    engine = ScriptedEngine()
    turns, _ = taker(redis, prefix, engine, archive)

    assert await turns.handle(make_burst(make_item("m1", "oi"), seq=1)) == "answered"

    assert archive.calls == [{"exclude": [], "max_rows": 80}]
    assert [m["content"] for m in engine.prompts[0][1:]] == ["oi"]


async def test_a_turn_takes_seven_redis_round_trips_and_a_new_conversation_two_more(
    redis: Redis, prefix, make_burst, make_item, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease; the record, which reads the outbox; debounce's counter with the lease after the model; the
    settle beside the session's touch; the outbox emptied; the release. A conversation Redis does not know
    is recorded, seeded and recorded again."""
    from redis.asyncio.connection import AbstractConnection

    from papo_common.contracts import ConversationRef

    turns, published = taker(redis, prefix, ScriptedEngine())
    assert await turns.handle(make_burst(make_item("m1", "oi"), seq=1)) == "answered"  # loads the scripts
    sent = 0
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    assert await turns.handle(make_burst(make_item("m2", "tudo bem?", seconds=30), seq=2)) == "answered"
    assert sent == 7
    sent = 0
    someone_new = ConversationRef(instance="loja", user_id="5511900000001@s.whatsapp.net")
    assert (
        await turns.handle(make_burst(make_item("n1", "oi"), seq=1, conversation=someone_new)) == "answered"
    )
    assert sent == 9
    assert len(published) == 3


# --- a human, keywords and sessions ---------------------------------------------------------------------------


async def test_a_paused_conversation_is_not_answered_but_remembered(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    from papo_common.control import pause

    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi, tem bolo?"), seq=1)
    await pause(redis, prefix, burst.conversation, seconds=60, reason="operator")

    assert await turns.handle(burst) == "paused"
    assert published == [] and engine.prompts == []
    keys = ConversationKeys(prefix, burst.conversation)
    assert await history_of(redis, keys) == [Turn("user", "oi, tem bolo?")]
    assert await turns.handle(burst) == "duplicate", "a redelivery after the pause is not answered either"


@pytest.mark.parametrize("said", ["Atendente!", "atendênte", "  FALAR com um atendente 🙏 "])
async def test_asking_for_a_human_pauses_the_bot_with_a_notice(
    redis: Redis, prefix, make_burst, make_item, said: str
) -> None:
    from papo_common.control import paused_reason

    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi"), make_item("m2", said, seconds=1), seq=2)

    assert await turns.handle(burst) == "human_requested"
    [notice] = published
    assert notice.kind == "notice" and "equipe" in notice.text
    assert engine.prompts == [], "no model call"
    assert await paused_reason(redis, prefix, burst.conversation) == "human_requested"


async def test_a_keyword_inside_a_sentence_is_just_a_message(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "não preciso de atendente, só quero o preço"), seq=1)
    assert await turns.handle(burst) == "answered"
    assert published[0].kind == "answer"


async def test_reset_confirms_closes_the_session_and_starts_fresh(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    closed: list[SessionClosed] = []
    turns, published = taker(redis, prefix, engine, closed=closed)
    first = make_burst(make_item("m1", "meu nome é Ana"), seq=1)
    assert await turns.handle(first) == "answered"
    reset = make_burst(make_item("m2", "Reiniciar", seconds=5), seq=2)

    assert await turns.handle(reset) == "reset"
    assert published[-1].kind == "notice" and "encerrada" in published[-1].text
    assert [(c.reason, c.conversation) for c in closed] == [("reset", first.conversation)]
    keys = ConversationKeys(prefix, first.conversation)
    assert await history_of(redis, keys) is None, "the hot history is gone"
    assert await turns.handle(reset) == "duplicate", "but nothing is answered twice"
    assert await turns.handle(first) == "duplicate"


async def test_idle_sessions_close_once_with_a_record(redis: Redis, prefix, make_burst, make_item) -> None:
    import asyncio

    engine = ScriptedEngine()
    closed: list[SessionClosed] = []
    turns, _ = taker(redis, prefix, engine, closed=closed, session_idle_seconds=60)
    burst = make_burst(make_item("m1", "oi"), seq=1)
    assert await turns.handle(burst) == "answered"
    sessions = turns._sessions
    assert await sessions.sweep() == 0, "not idle yet"
    # the last turn an hour ago, by Redis's clock (the scripts read Redis TIME)
    seconds, _ = await redis.time()
    active = f"{prefix}:sessions:active"
    [(member, _)] = await redis.zrange(active, 0, -1, withscores=True)
    await redis.zadd(active, {member: seconds - 3600})
    assert await asyncio.gather(sessions.sweep(), sessions.sweep()) in ([1, 0], [0, 1]), (
        "one replica closes it"
    )
    assert [c.reason for c in closed] == ["idle"]
    assert await history_of(redis, keys_for(prefix, burst)) is None


def test_a_new_session_starts_after_the_last_closing_record() -> None:
    from papo_llm.archive import session_turns

    rows = [
        ("user", "text", "sou a Ana", None),
        ("assistant", "text", "Oi Ana!", None),
        ("user", "text", "quero um bolo", None),
        ("assistant", "text", "De qual sabor?", None),
        ("system", "session_closed", "idle", None),
        ("user", "text", "voltei", None),
    ]
    assert session_turns(rows, complete=True, carryover_turns=0) == [Turn("user", "voltei")]
    assert session_turns(rows, complete=True, carryover_turns=2) == [
        Turn("user", "quero um bolo"),
        Turn("assistant", "De qual sabor?"),
        Turn("user", "voltei"),
    ]
    after_reset = [*rows[:4], ("system", "session_closed", "reset", None), rows[5]]
    assert session_turns(after_reset, complete=True, carryover_turns=2) == [Turn("user", "voltei")]


async def test_bursts_at_the_llm_together_take_their_turns_oldest_first(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    """The chaos tier's reorder: two bursts of one conversation reached the llm at once (a debounce publisher
    had stalled past its claim lease), and the newer won the race for the lease."""
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine)
    older = make_burst(make_item("m1", "oi"), seq=1)
    newer = make_burst(make_item("m2", "tudo bem?", seconds=5), seq=2)
    keys = keys_for(prefix, older)
    await redis.set(keys.turn_lock, b"another turn", px=30_000)  # both arrive while a turn is running

    newer_task = asyncio.create_task(turns.handle(newer))  # the newer even starts polling first
    while not await redis.zscore(keys.scoped(WAITING_SUFFIX), newer.burst_id):
        await asyncio.sleep(0.01)
    older_task = asyncio.create_task(turns.handle(older))
    while await redis.zcard(keys.scoped(WAITING_SUFFIX)) < 2:
        await asyncio.sleep(0.01)
    await redis.delete(keys.turn_lock)  # the running turn ends
    await asyncio.gather(newer_task, older_task)

    assert [reply.in_reply_to for reply in published] == [("m1",), ("m2",)]
    assert published[1].follows == published[0].reply_id
    assert await redis.zcard(keys.scoped(WAITING_SUFFIX)) == 0, "both left the waiting room"


async def test_a_burst_whose_predecessor_has_not_arrived_waits_for_it_and_both_are_answered_in_order(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    """The chaos tier's last reorder: the older burst failed once and waited in a retry queue while the newer
    one arrived, took the turn and was answered first."""
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine, llm_order_horizon_seconds=60)
    older = make_burst(make_item("m1", "oi"), seq=1).model_copy(update={"flushed_at": NOW})
    newer = make_burst(make_item("m2", "tudo bem?", seconds=5), seq=2).model_copy(
        update={"flushed_at": NOW, "previous_inbound_seq": 1}
    )

    with pytest.raises(EarlierBurstPending):
        await turns.handle(newer)  # its messages are recorded; the turn waits for the older burst
    assert engine.prompts == []
    assert await turns.handle(older) == "answered"
    assert await turns.handle(newer) == "duplicate", "the older burst's turn answered both, in order"

    [reply] = published
    assert reply.in_reply_to == ("m1", "m2")


async def test_past_the_horizon_a_missing_predecessor_no_longer_holds_a_burst_back(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    turns, published = taker(redis, prefix, engine, llm_order_horizon_seconds=10)
    flushed = NOW - timedelta(seconds=11)
    orphan = make_burst(make_item("m2", "tudo bem?"), seq=2).model_copy(
        update={"flushed_at": flushed, "previous_inbound_seq": 1}
    )

    assert await turns.handle(orphan) == "answered"
    assert published[0].in_reply_to == ("m2",)
