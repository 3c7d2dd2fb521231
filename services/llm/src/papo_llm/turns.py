"""Answering a burst: one turn of a conversation, from the lock to the published reply.

Outcomes: `answered` (a Reply was published and the history updated), `superseded` (the person said more
while we were thinking: the burst joins the history and the next burst's reply answers both), `duplicate`
(a burst at or below the answered watermark: a redelivery, or an older burst overtaken by a newer one),
`paused` (a human has taken over: the burst joins the history, unanswered), `human_requested` and `reset`
(the person sent a keyword: papo confirms with a notice, and pauses or starts a new session).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from redis.asyncio import Redis

from papo_common.contracts import Burst, Reply, TokenUsage, utcnow
from papo_common.control import pause, paused_reason
from papo_common.errors import PermanentError
from papo_common.metrics import LLM_REQUEST_SECONDS, LLM_TOKENS, LLM_TURNS
from papo_common.redis import ConversationKeys
from papo_llm.archive import HistoryArchive
from papo_llm.engines import ChatEngine, ChatMessage, Completion
from papo_llm.history import HistoryStore
from papo_llm.keywords import Command, KeywordMatcher
from papo_llm.prompt import Turn, build_messages, trim_history, user_turn
from papo_llm.sessions import SessionKeeper
from papo_llm.settings import LlmSettings
from papo_llm.turn_lock import TurnLock, acquire_turn

logger = logging.getLogger(__name__)

Outcome = Literal["answered", "superseded", "duplicate", "paused", "human_requested", "reset"]
Publish = Callable[[Reply], Awaitable[None]]

_ARCHIVE_ROWS_PER_TURN = 4
"""A person's turn is often several messages: read this many rows per history turn wanted."""


def reply_id_for(burst: Burst) -> str:
    """Deterministic, so a reply regenerated for a redelivered burst is deduplicated downstream."""
    return f"reply:{burst.burst_id}"


def reply_for(burst: Burst, completion: Completion) -> Reply:
    """The reply that answers every message of `burst` with the model's text."""
    return Reply(
        reply_id=reply_id_for(burst),
        burst_id=burst.burst_id,
        conversation=burst.conversation,
        chat_id=burst.chat_id,
        text=completion.text,
        in_reply_to=tuple(item.message_id for item in burst.items),
        model=completion.model,
        usage=TokenUsage(
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens
        ),
        created_at=utcnow(),
    )


def notice_for(burst: Burst, text: str) -> Reply:
    """papo's own answer to a keyword: sent even while a human has the conversation."""
    return Reply(
        reply_id=reply_id_for(burst),
        burst_id=burst.burst_id,
        conversation=burst.conversation,
        chat_id=burst.chat_id,
        text=text,
        in_reply_to=tuple(item.message_id for item in burst.items),
        model="papo",
        kind="notice",
        created_at=utcnow(),
    )


class TurnTaker:
    """Answers bursts, one turn at a time per conversation."""

    def __init__(
        self,
        *,
        settings: LlmSettings,
        redis: Redis,
        engine: ChatEngine,
        store: HistoryStore,
        archive: HistoryArchive,
        publish: Publish,
        sessions: SessionKeeper,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._engine = engine
        self._store = store
        self._archive = archive
        self._publish = publish
        self._sessions = sessions
        self._keywords = KeywordMatcher(reset=settings.reset_keywords, human=settings.human_keywords)

    async def handle(self, burst: Burst) -> Outcome:
        """Answer `burst` unless it was answered or superseded; returns what happened."""
        keys = ConversationKeys(self._settings.redis_key_prefix, burst.conversation)
        try:
            if await self._store.answered_seq(keys) >= burst.inbound_seq:
                outcome: Outcome = "duplicate"
            else:
                async with acquire_turn(
                    self._redis,
                    keys.turn_lock,
                    lease_seconds=self._settings.llm_turn_lock_ttl_seconds,
                    wait_seconds=self._settings.llm_turn_wait_seconds,
                ) as lock:
                    outcome = await self._take_turn(keys, burst, lock)
        except PermanentError:
            LLM_TURNS.labels(outcome="failed").inc()
            raise
        LLM_TURNS.labels(outcome=outcome).inc()
        if outcome not in ("duplicate", "reset"):
            await self._sessions.touch(burst.conversation)
        logger.info("burst handled", extra={"burst_id": burst.burst_id, "outcome": outcome})
        return outcome

    async def _take_turn(self, keys: ConversationKeys, burst: Burst, lock: TurnLock) -> Outcome:
        # Checked again under the lock: another replica may have answered while we waited for it.
        if await self._store.answered_seq(keys) >= burst.inbound_seq:
            return "duplicate"
        said = user_turn(burst)
        prefix = self._settings.redis_key_prefix
        if await paused_reason(self._redis, prefix, burst.conversation):
            # A human has the conversation: the burst is theirs to answer; keep it for context.
            await self._store.record(keys, burst.inbound_seq, [said], answered=True)
            return "paused"
        command = self._keywords.command_in(burst)
        if command is not None:
            return await self._obey(keys, burst, said, command, lock)
        # Loaded (and rehydrated) even when superseded: appending to a lost history would start a new one
        # that hides what PostgreSQL still has.
        history = await self._history(keys, burst)
        if await self._superseded(keys, burst):
            await self._store.record(keys, burst.inbound_seq, [said], answered=False)
            return "superseded"
        messages = build_messages(self._settings.system_prompt, history, said, push_name=burst.push_name)
        completion = await self._complete(messages)
        if await self._superseded(keys, burst):
            await self._store.record(keys, burst.inbound_seq, [said], answered=False)
            return "superseded"
        await lock.ensure_held()
        await self._publish(reply_for(burst, completion))
        answer = Turn("assistant", completion.text)
        await self._store.record(keys, burst.inbound_seq, [said, answer], answered=True)
        return "answered"

    async def _obey(
        self, keys: ConversationKeys, burst: Burst, said: Turn, command: Command, lock: TurnLock
    ) -> Outcome:
        settings = self._settings
        if command == "human":
            await pause(
                self._redis,
                settings.redis_key_prefix,
                burst.conversation,
                seconds=settings.human_pause_seconds,
                reason="human_requested",
            )
        text = settings.human_reply if command == "human" else settings.reset_reply
        await lock.ensure_held()
        await self._publish(notice_for(burst, text))
        await self._store.record(keys, burst.inbound_seq, [said, Turn("assistant", text)], answered=True)
        if command == "reset":
            await self._sessions.close(burst.conversation, "reset")
            return "reset"
        return "human_requested"

    async def _superseded(self, keys: ConversationKeys, burst: Burst) -> bool:
        return await self._store.inbound_seq(keys) > burst.inbound_seq

    async def _history(self, keys: ConversationKeys, burst: Burst) -> list[Turn]:
        """The hot history, or, when Redis lost it, the last turns from PostgreSQL (seeded back)."""
        settings = self._settings
        turns = await self._store.load(keys)
        if turns is None:
            turns = await self._archive.recent_turns(
                burst.conversation,
                exclude_message_ids=[item.message_id for item in burst.items],
                until=max(item.sent_at for item in burst.items),
                max_rows=settings.llm_history_max_turns * _ARCHIVE_ROWS_PER_TURN,
                carryover_turns=settings.session_carryover_turns,
            )
            await self._store.seed(keys, turns)
        return trim_history(
            turns, max_turns=settings.llm_history_max_turns, max_chars=settings.llm_history_max_chars
        )

    async def _complete(self, messages: list[ChatMessage]) -> Completion:
        model = self._engine.model
        started = time.perf_counter()
        outcome = "error"
        try:
            completion = await self._engine.complete(messages)
            outcome = "ok"
        except PermanentError:
            outcome = "failed"
            raise
        finally:
            LLM_REQUEST_SECONDS.labels(model=model, outcome=outcome).observe(time.perf_counter() - started)
        LLM_TOKENS.labels(model=model, kind="prompt").inc(completion.prompt_tokens)
        LLM_TOKENS.labels(model=model, kind="completion").inc(completion.completion_tokens)
        return completion
