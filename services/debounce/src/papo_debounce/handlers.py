"""Thin handlers: a message or a transcript goes into its conversation's burst in Redis, then is acked.

An operator message (a human writing from the business phone) pauses the bot for the conversation and drops
the burst being collected; messages that arrive while paused, or that are stale on arrival, are remembered
(so they never join a later burst) but not answered. persist records all of them regardless.
"""

from __future__ import annotations

import logging
from typing import Annotated

from opentelemetry.propagate import inject
from pydantic import Field
from redis.asyncio import Redis

from papo_common.contracts import InboundMessage, Transcript
from papo_common.control import pause, paused_reason
from papo_common.metrics import DEBOUNCE_SKIPPED
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore

logger = logging.getLogger(__name__)

DebounceInput = Annotated[InboundMessage | Transcript, Field(discriminator="type")]


class Debouncer:
    def __init__(self, store: DebounceStore, redis: Redis, settings: DebounceSettings) -> None:
        self._store = store
        self._redis = redis
        self._settings = settings

    async def handle(self, message: InboundMessage | Transcript) -> None:
        if isinstance(message, Transcript):
            await self._store.add_transcript(message)
            return
        if message.from_me:
            await self._operator_took_over(message)
            return
        reason = await self._skip_reason(message)
        if reason is not None:
            if await self._store.remember(message):
                DEBOUNCE_SKIPPED.labels(reason=reason).inc()
                logger.info(
                    "message recorded but not answered",
                    extra={"reason": reason, "message_id": message.message_id},
                )
            return
        carrier: dict[str, str] = {}
        inject(carrier)
        if await self._store.add_message(message, carrier.get("traceparent", "")) is None:
            logger.info("duplicate message ignored", extra={"message_id": message.message_id})

    async def _skip_reason(self, message: InboundMessage) -> str | None:
        age = (message.received_at - message.sent_at).total_seconds()
        if age > self._settings.stale_message_seconds:
            return "stale"
        if await paused_reason(self._redis, self._settings.redis_key_prefix, message.conversation):
            return "paused"
        return None

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
        DEBOUNCE_SKIPPED.labels(reason="operator").inc()
        logger.info("operator took over; bot paused", extra={"conversation": conversation.key})
