"""Answering a burst: one turn of a conversation, from the lease to the published reply.

Under the conversation's lease a turn first records the burst's messages (once each, whatever the order or
number of deliveries), then answers every message no answer covers yet, in the order they were sent. So a
burst handled out of order, redelivered, or left behind by a failed turn never loses a message and never
shows one twice: whichever turn runs next answers it.

Outcomes: `answered` (a Reply was published and the history updated), `superseded` (the person said more
since: a later burst answers this one's messages too), `duplicate` (every message of the burst is answered
already), `paused` (a human has taken over: the messages join the history, unanswered), `human_requested`
and `reset` (the person sent a keyword: papo confirms with a notice, and pauses or starts a new session).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from redis.asyncio import Redis

from papo_common.contracts import Burst, Reply, TokenUsage, utcnow
from papo_common.control import pause
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.metrics import LLM_REQUEST_SECONDS, LLM_TOKENS, LLM_TURNS
from papo_common.privacy import conversation_ref
from papo_common.redis import ConversationKeys
from papo_common.resilience import Lease
from papo_llm.archive import HistoryArchive
from papo_llm.burst_order import BurstOrder
from papo_llm.engines import ChatEngine, ChatMessage, Completion
from papo_llm.history import OUTBOX_SUFFIX, HistoryStore, TurnState
from papo_llm.keywords import Command, KeywordMatcher
from papo_llm.prompt import PendingMessage, Turn, build_messages, messages_of, trim_history, user_turn
from papo_llm.sessions import SessionKeeper
from papo_llm.settings import LlmSettings

logger = logging.getLogger(__name__)

Outcome = Literal["answered", "superseded", "duplicate", "paused", "human_requested", "reset"]
Publish = Callable[[Reply], Awaitable[None]]

_ARCHIVE_ROWS_PER_TURN = 4
"""A person's turn is often several messages: read this many rows per history turn wanted."""
_LAST_REPLY_TTL_SECONDS = 7 * 24 * 3600


class EarlierBurstPending(DependencyUnavailable):
    """An older burst of the conversation is still on its way: redeliver this one later, with backoff."""


def in_order(last: dict[str, str | None], reply: Reply) -> Reply:
    """`reply`, naming the conversation's previous reply (`Reply.follows`), so deliver keeps their order.
    A turn redone after a failure decides the same reply again: it follows what it followed then."""
    follows = last["follows"] if last["reply_id"] == reply.reply_id else last["reply_id"]
    return reply.model_copy(update={"follows": follows})


def outbox_entry(keys: ConversationKeys, reply: Reply) -> tuple[str, str, int]:
    """What the settle script writes beside the answer: the reply, until it is published."""
    value = {"reply_id": reply.reply_id, "follows": reply.follows, "reply": reply.model_dump_json()}
    return keys.scoped(OUTBOX_SUFFIX), json.dumps(value), _LAST_REPLY_TTL_SECONDS


def reply_id_for(burst: Burst) -> str:
    """Deterministic, so a reply regenerated for a redelivered burst is deduplicated downstream."""
    return f"reply:{burst.burst_id}"


def reply_for(burst: Burst, answered: Sequence[PendingMessage], completion: Completion) -> Reply:
    """The reply that answers every message in `answered` with the model's text."""
    return Reply(
        reply_id=reply_id_for(burst),
        burst_id=burst.burst_id,
        conversation=burst.conversation,
        chat_id=burst.chat_id,
        text=completion.text,
        in_reply_to=tuple(message.message_id for message in answered),
        model=completion.model,
        usage=TokenUsage(
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens
        ),
        created_at=utcnow(),
    )


def notice_for(burst: Burst, answered: Sequence[PendingMessage], text: str) -> Reply:
    """papo's own answer to a keyword: sent even while a human has the conversation."""
    return Reply(
        reply_id=reply_id_for(burst),
        burst_id=burst.burst_id,
        conversation=burst.conversation,
        chat_id=burst.chat_id,
        text=text,
        in_reply_to=tuple(message.message_id for message in answered),
        model="papo",
        kind="notice",
        created_at=utcnow(),
    )


def burst_ref(burst: Burst) -> str:
    """The burst as logs may name it: a keyed hash of its conversation and its sequence, no number."""
    return f"{conversation_ref(burst.conversation.key)}:{burst.inbound_seq}"


class TurnTaker:
    """Answers bursts, one turn at a time per conversation, at most `llm_turns_in_flight` completions at once."""

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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._redis = redis
        self._engine = engine
        self._store = store
        self._archive = archive
        self._publish = publish
        self._sessions = sessions
        self._keywords = KeywordMatcher(reset=settings.reset_keywords, human=settings.human_keywords)
        self._completions = asyncio.Semaphore(settings.llm_turns_in_flight)
        self._order = BurstOrder(redis, wait_seconds=settings.llm_turn_wait_seconds)

    async def handle(self, burst: Burst) -> Outcome:
        """Record `burst` and answer what is unanswered, unless a later burst will; returns what happened."""
        keys = ConversationKeys(self._settings.redis_key_prefix, burst.conversation)
        said = messages_of(burst)
        try:
            lease_seconds = self._settings.llm_turn_lock_ttl_seconds
            async with self._order.lease(keys, burst, lease_seconds=lease_seconds) as lease:
                outcome = await self._take_turn(keys, burst, said, lease)
        except (PermanentError, DependencyUnavailable) as error:
            LLM_TURNS.labels(outcome="failed" if isinstance(error, PermanentError) else "unavailable").inc()
            raise
        LLM_TURNS.labels(outcome=outcome).inc()
        logger.info("burst handled", extra={"burst": burst_ref(burst), "outcome": outcome})
        return outcome

    async def _take_turn(
        self, keys: ConversationKeys, burst: Burst, said: list[PendingMessage], lease: Lease
    ) -> Outcome:
        state = await self._recorded(keys, burst, said)
        last = await self._flush_outbox(keys, state.outbox)
        pending = state.pending
        if not pending:
            return "duplicate"
        if not state.previous_recorded and not self._waited_enough(burst):
            # The burst cut before this one has not reached the llm (it failed and waits in a retry queue):
            # answering now would answer the newer messages first. This one's are recorded; back off.
            raise EarlierBurstPending("an earlier burst of this conversation has not reached the llm yet")
        if state.paused:
            # A human has the conversation: the messages are theirs to answer; keep them for context.
            await self._settle(keys, burst, pending, [user_turn(pending)])
            return "paused"
        command = self._keywords.command_in(burst)
        if command is not None:
            return await self._obey(keys, burst, pending, command, lease=lease, last=last)
        latest = state.recorded_seq
        if state.inbound_seq > latest:
            return "superseded"
        history = trim_history(
            state.history or [],
            max_turns=self._settings.llm_history_max_turns,
            max_chars=self._settings.llm_history_max_chars,
        )
        prompt = build_messages(
            self._settings.system_prompt, history, user_turn(pending), push_name=burst.push_name
        )
        async with self._completions:
            completion = await self._complete(prompt)
        counter, holder = await self._store.counter_and_lease(keys)
        if counter > latest:
            # the person said more while we were thinking: the next burst answers everything at once
            return "superseded"
        lease.confirm(holder)
        reply = in_order(last, reply_for(burst, pending, completion))
        await self._settle(
            keys, burst, pending, [user_turn(pending), Turn("assistant", completion.text)], reply=reply
        )
        await self._publish_outbox(keys, reply)
        return "answered"

    async def _recorded(self, keys: ConversationKeys, burst: Burst, said: list[PendingMessage]) -> TurnState:
        """Record the burst and read the conversation back, reloading from PostgreSQL what Redis lost."""
        settings = self._settings
        rows = settings.llm_history_max_turns * _ARCHIVE_ROWS_PER_TURN
        previous = burst.previous_inbound_seq
        state = await self._store.record(keys, burst.inbound_seq, said, previous_seq=previous)
        if state is None:
            recalled = await self._archive.recall(
                burst.conversation, max_rows=rows, carryover_turns=settings.session_carryover_turns
            )
            await self._store.seed(keys, turns=recalled.turns, seen=recalled.seen, pending=recalled.pending)
            state = await self._store.record(keys, burst.inbound_seq, said, previous_seq=previous)
            if state is None:
                raise DependencyUnavailable("Redis lost the conversation while it was being reloaded")
            if state.history is None:
                # Redis keeps no empty list: a conversation with nothing answered yet has no history key.
                # The recall just read it, without the pending messages; reading it again finds the same.
                state = dataclasses.replace(state, history=list(recalled.turns))
        if state.history is None:
            recalled = await self._archive.recall(
                burst.conversation,
                max_rows=rows,
                carryover_turns=settings.session_carryover_turns,
                exclude_message_ids=[message.message_id for message in state.pending],
            )
            await self._store.seed(keys, turns=recalled.turns)
            state = dataclasses.replace(state, history=recalled.turns)
        return state

    async def _publish_outbox(self, keys: ConversationKeys, reply: Reply) -> None:
        """Publish the reply the turn settled with, then empty the outbox. A failure in between leaves it
        there for the conversation's next turn (its redelivery, or a later burst) to publish first; deliver
        sends a reply id once, so publishing it twice is harmless."""
        await self._publish(reply)
        published = {"reply_id": reply.reply_id, "follows": reply.follows}
        await self._redis.set(keys.scoped(OUTBOX_SUFFIX), json.dumps(published), ex=_LAST_REPLY_TTL_SECONDS)

    async def _flush_outbox(self, keys: ConversationKeys, raw: bytes | None) -> dict[str, str | None]:
        """Publish a reply an earlier turn settled but did not get out (killed, or the broker or Redis failed
        right after the answer was recorded), before this turn decides anything; returns the conversation's
        last reply and the one it follows. `raw` is the outbox, read with the burst's record. Under the lease,
        nothing else changes it until this turn does."""
        last = json.loads(raw) if raw else {"reply_id": None, "follows": None}
        if unpublished := last.pop("reply", None):
            logger.warning("publishing a reply an earlier turn recorded but did not publish")
            await self._publish_outbox(keys, Reply.model_validate_json(unpublished))
        return last

    async def _settle(
        self,
        keys: ConversationKeys,
        burst: Burst,
        settled: Sequence[PendingMessage],
        turns: Sequence[Turn],
        *,
        reply: Reply | None = None,
    ) -> None:
        """Record the answer, and with it (one script) the `reply` to publish: from here on the messages are
        answered, so a failure before the publish must not answer them again, only publish this."""
        outbox = None if reply is None else outbox_entry(keys, reply)
        await asyncio.gather(
            self._store.settle(keys, settled, turns, outbox=outbox), self._sessions.touch(burst.conversation)
        )

    async def _obey(
        self,
        keys: ConversationKeys,
        burst: Burst,
        pending: list[PendingMessage],
        command: Command,
        *,
        lease: Lease,
        last: dict[str, str | None],
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
        await lease.ensure_held()
        notice = in_order(last, notice_for(burst, pending, text))
        await self._store.settle(
            keys, pending, [user_turn(pending), Turn("assistant", text)], outbox=outbox_entry(keys, notice)
        )
        await self._publish_outbox(keys, notice)
        if command == "reset":
            await self._sessions.close(burst.conversation, "reset")
            return "reset"
        await self._sessions.touch(burst.conversation)
        return "human_requested"

    def _waited_enough(self, burst: Burst) -> bool:
        """Past the horizon, a missing predecessor no longer holds a burst back: it may never come (a burst
        debounce dropped because a human took over, or one lost upstream)."""
        waited = self._clock() - burst.flushed_at
        return waited >= timedelta(seconds=self._settings.llm_order_horizon_seconds)

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
