"""What happens to a message or a transcript: it joins its conversation's burst in Redis, or is remembered
without being answered.

An operator message (a human writing from the business phone) pauses the bot for the conversation and drops
the burst being collected; messages that arrive while paused, or that are stale on arrival, are remembered
(so they never join a later burst) but not answered. persist records all of them regardless.
"""

from __future__ import annotations

import logging

from opentelemetry.propagate import inject
from redis.asyncio import Redis

from papo_common.contracts import InboundMessage, Transcript
from papo_common.control import pause
from papo_common.metrics import DEBOUNCE_SKIPPED
from papo_common.privacy import conversation_ref
from papo_debounce.operator_turns import OperatorTurns
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import Added, DebounceStore

logger = logging.getLogger(__name__)


class Debouncer:
    def __init__(self, store: DebounceStore, redis: Redis, settings: DebounceSettings) -> None:
        self._store = store
        self._redis = redis
        self._settings = settings
        self._operator_turns = OperatorTurns(redis, settings.redis_key_prefix)

    async def handle(self, message: InboundMessage | Transcript) -> None:
        if isinstance(message, Transcript):
            await self._store.add_transcript(message)
            return
        if message.from_me:
            await self._operator_took_over(message)
            return
        if self._is_stale(message):
            if await self._store.remember(message):
                self._skipped(message, "stale")
            return
        carrier: dict[str, str] = {}
        inject(carrier)
        added, _ = await self._store.add_message(message, carrier.get("traceparent", ""))
        if added is Added.PAUSED:
            self._skipped(message, "paused")
        elif added is Added.DUPLICATE:
            logger.debug("duplicate message ignored", extra={"message_id": message.message_id})

    def _is_stale(self, message: InboundMessage) -> bool:
        age = (message.received_at - message.sent_at).total_seconds()
        return age > self._settings.stale_message_seconds

    @staticmethod
    def _skipped(message: InboundMessage, reason: str) -> None:
        DEBOUNCE_SKIPPED.labels(reason=reason).inc()
        logger.info(
            "message recorded but not answered",
            extra={"reason": reason, "conversation": conversation_ref(message.conversation.key)},
        )

    async def _operator_took_over(self, message: InboundMessage) -> None:
        conversation = message.conversation
        await pause(
            self._redis,
            self._settings.redis_key_prefix,
            conversation,
            seconds=self._settings.takeover_pause_seconds,
            reason="operator",
        )
        await self._store.drop_burst(conversation)
        await self._operator_turns.append(message)
        DEBOUNCE_SKIPPED.labels(reason="operator").inc()
        logger.info(
            "operator took over; bot paused", extra={"conversation": conversation_ref(conversation.key)}
        )
