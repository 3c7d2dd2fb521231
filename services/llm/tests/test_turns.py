"""A turn end to end without a broker: a scripted model, real Redis, an in-memory archive."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, Reply, SessionClosed
from papo_common.metrics import LLM_TURNS
from papo_common.redis import ConversationKeys
from papo_llm.engines import ChatMessage, Completion, CompletionFailed
from papo_llm.history import HistoryStore
from papo_llm.prompt import Turn
from papo_llm.sessions import SessionKeeper
from papo_llm.settings import LlmSettings
from papo_llm.turns import TurnTaker


class ScriptedEngine:
    model = "scripted"

    def __init__(self, during: Callable[[], Any] | None = None, fail: bool = False) -> None:
        self.prompts: list[list[ChatMessage]] = []
        self.during = during
        self.fail = fail

    async def complete(self, messages: list[ChatMessage]) -> Completion:
        self.prompts.append(messages)
        if self.during is not None:
            await self.during()
        if self.fail:
            raise CompletionFailed("HTTP 401")
        return Completion(
            text=f"answer {len(self.prompts)}", model="scripted-1", prompt_tokens=9, completion_tokens=2
        )

    async def aclose(self) -> None:
        pass


class MemoryArchive:
    def __init__(self, turns: list[Turn] | None = None) -> None:
        self.turns = turns or []
        self.calls: list[dict[str, Any]] = []

    async def recent_turns(
        self,
        conversation: ConversationRef,
        *,
        exclude_message_ids: list[str],
        until: datetime,
        max_rows: int,
        carryover_turns: int = 0,
    ) -> list[Turn]:
        self.calls.append({"exclude": exclude_message_ids, "until": until, "max_rows": max_rows})
        return self.turns


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
    )
    return turns, published, HistoryStore(redis, ttl_seconds=600, max_turns=20)


async def test_an_answer_is_published_and_both_turns_join_the_history(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    turns, published, store = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi"), make_item("m2", "tudo bem?", seconds=1), seq=2)
    keys = ConversationKeys(prefix, burst.conversation)

    assert await turns.handle(burst) == "answered"

    [reply] = published
    assert reply.reply_id == f"reply:{burst.burst_id}"
    assert reply.in_reply_to == ("m1", "m2")
    assert (reply.text, reply.model, reply.usage.prompt_tokens) == ("answer 1", "scripted-1", 9)
    assert engine.prompts[0][-1] == {"role": "user", "content": "oi\ntudo bem?"}
    assert await store.load(keys) == [Turn("user", "oi\ntudo bem?"), Turn("assistant", "answer 1")]
    assert await store.answered_seq(keys) == 2
    assert not await redis.exists(keys.turn_lock)


async def test_a_burst_at_or_below_the_watermark_is_a_duplicate(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    turns, published, _ = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi"), seq=1)

    assert await turns.handle(burst) == "answered"
    assert await turns.handle(burst) == "duplicate"
    assert len(engine.prompts) == 1 and len(published) == 1


async def test_a_burst_overtaken_before_its_turn_joins_history_without_a_call(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    archive = MemoryArchive([Turn("assistant", "Oi! Em que posso ajudar?")])
    turns, published, store = taker(redis, prefix, engine, archive)
    first = make_burst(make_item("m1", "primeira"), seq=1)
    keys = ConversationKeys(prefix, first.conversation)
    await redis.set(keys.inbound_seq, 2)

    assert await turns.handle(first) == "superseded"
    assert engine.prompts == [] and published == []
    # A lost history is reloaded before the burst joins it, never restarted from this burst alone.
    assert await store.load(keys) == [Turn("assistant", "Oi! Em que posso ajudar?"), Turn("user", "primeira")]
    assert await turns.handle(make_burst(make_item("m2", "segunda", seconds=5), seq=2)) == "answered"
    assert engine.prompts[0][-2:] == [
        {"role": "assistant", "content": "Oi! Em que posso ajudar?"},
        {"role": "user", "content": "primeira\nsegunda"},
    ]


async def test_more_said_while_generating_supersedes_the_reply(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    burst = make_burst(make_item("m1", "oi"), seq=1)
    keys = ConversationKeys(prefix, burst.conversation)

    async def person_writes_again() -> None:
        await redis.set(keys.inbound_seq, 2)

    turns, published, store = taker(redis, prefix, ScriptedEngine(during=person_writes_again))

    assert await turns.handle(burst) == "superseded"
    assert published == []
    assert await store.load(keys) == [Turn("user", "oi")]
    assert await store.answered_seq(keys) == 0


async def test_a_failed_completion_is_permanent_and_frees_the_conversation(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    turns, published, _ = taker(redis, prefix, ScriptedEngine(fail=True))
    burst = make_burst(make_item("m1", "oi"), seq=1)
    failed_before = LLM_TURNS.labels(outcome="failed")._value.get()

    with pytest.raises(CompletionFailed):
        await turns.handle(burst)

    assert published == []
    assert not await redis.exists(ConversationKeys(prefix, burst.conversation).turn_lock)
    assert LLM_TURNS.labels(outcome="failed")._value.get() == failed_before + 1


async def test_a_failed_publish_leaves_the_watermark_so_the_redelivery_answers(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    turns, _published, store = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi"), seq=1)
    keys = ConversationKeys(prefix, burst.conversation)

    async def broker_down(reply: Reply) -> None:
        raise ConnectionError("broker unreachable")

    turns._publish = broker_down
    with pytest.raises(ConnectionError):
        await turns.handle(burst)
    assert await store.answered_seq(keys) == 0 and await store.load(keys) is None
    assert not await redis.exists(keys.turn_lock)


async def test_lost_history_is_reloaded_from_the_archive_and_seeded(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    archive = MemoryArchive([Turn("user", "ontem"), Turn("assistant", "resposta de ontem")])
    engine = ScriptedEngine()
    turns, _, store = taker(redis, prefix, engine, archive)
    burst = make_burst(make_item("m1", "hoje"), make_item("m2", "de novo", seconds=3), seq=7)

    await turns.handle(burst)

    assert archive.calls == [{"exclude": ["m1", "m2"], "until": burst.items[-1].sent_at, "max_rows": 80}]
    assert [m["content"] for m in engine.prompts[0][1:]] == ["ontem", "resposta de ontem", "hoje\nde novo"]
    assert (await store.load(ConversationKeys(prefix, burst.conversation)))[:2] == archive.turns
    await turns.handle(make_burst(make_item("m3", "e agora", seconds=60), seq=8))
    assert len(archive.calls) == 1


# --- a human, keywords and sessions ---------------------------------------------------------------------------


async def test_a_paused_conversation_is_not_answered_but_remembered(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    from papo_common.control import pause

    engine = ScriptedEngine()
    turns, published, store = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "oi, tem bolo?"), seq=1)
    await pause(redis, prefix, burst.conversation, seconds=60, reason="operator")

    assert await turns.handle(burst) == "paused"
    assert published == [] and engine.prompts == []
    keys = ConversationKeys(prefix, burst.conversation)
    assert await store.load(keys) == [Turn("user", "oi, tem bolo?")]
    assert await turns.handle(burst) == "duplicate", "a redelivery after the pause is not answered either"


@pytest.mark.parametrize("said", ["Atendente!", "atendênte", "  FALAR com um atendente 🙏 "])
async def test_asking_for_a_human_pauses_the_bot_with_a_notice(
    redis: Redis, prefix, make_burst, make_item, said: str
) -> None:
    from papo_common.control import paused_reason

    engine = ScriptedEngine()
    turns, published, _ = taker(redis, prefix, engine)
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
    turns, published, _ = taker(redis, prefix, engine)
    burst = make_burst(make_item("m1", "não preciso de atendente, só quero o preço"), seq=1)
    assert await turns.handle(burst) == "answered"
    assert published[0].kind == "answer"


async def test_reset_confirms_closes_the_session_and_starts_fresh(
    redis: Redis, prefix, make_burst, make_item
) -> None:
    engine = ScriptedEngine()
    closed: list[SessionClosed] = []
    turns, published, store = taker(redis, prefix, engine, closed=closed)
    first = make_burst(make_item("m1", "meu nome é Ana"), seq=1)
    assert await turns.handle(first) == "answered"
    reset = make_burst(make_item("m2", "Reiniciar", seconds=5), seq=2)

    assert await turns.handle(reset) == "reset"
    assert published[-1].kind == "notice" and "encerrada" in published[-1].text
    assert [(c.reason, c.conversation) for c in closed] == [("reset", first.conversation)]
    keys = ConversationKeys(prefix, first.conversation)
    assert await store.load(keys) is None, "the hot history is gone"
    assert await store.answered_seq(keys) == 2, "but nothing will be answered twice"


async def test_idle_sessions_close_once_with_a_record(redis: Redis, prefix, make_burst, make_item) -> None:
    import asyncio

    engine = ScriptedEngine()
    closed: list[SessionClosed] = []
    turns, _, store = taker(redis, prefix, engine, closed=closed, session_idle_seconds=0.3)
    burst = make_burst(make_item("m1", "oi"), seq=1)
    assert await turns.handle(burst) == "answered"
    sessions = turns._sessions
    assert await sessions.sweep() == 0, "not idle yet"
    await asyncio.sleep(0.4)
    assert await asyncio.gather(sessions.sweep(), sessions.sweep()) in ([1, 0], [0, 1]), (
        "one replica closes it"
    )
    assert [c.reason for c in closed] == ["idle"]
    assert await store.load(ConversationKeys(prefix, burst.conversation)) is None


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
