"""The flush loop every replica runs: claim due bursts in Redis, publish them, then forget them.

There is no timer per conversation in any process: due times live in Redis, and any replica's loop may claim
a due burst (atomically, so exactly one does). A burst is removed from Redis only after the broker confirmed
its publish; a replica that dies in between leaves a claim whose lease runs out, and another replica
publishes the same burst (same `burst_id`) again — downstream deduplicates it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from opentelemetry.propagate import extract

from papo_common.contracts import Burst, ConversationRef
from papo_common.metrics import DEBOUNCE_BURST_MESSAGES, DEBOUNCE_WAIT_SECONDS
from papo_common.telemetry import tracer
from papo_debounce.burst import build_burst
from papo_debounce.store import DebounceStore, conversation_of

logger = logging.getLogger(__name__)

Publish = Callable[[Burst], Awaitable[None]]
IsPaused = Callable[[ConversationRef], Awaitable[str | None]]


async def _never_paused(conversation: ConversationRef) -> None:
    return None


_MAX_CONCURRENT_FLUSHES = 16


class Flusher:
    def __init__(
        self,
        store: DebounceStore,
        publish: Publish,
        *,
        is_paused: IsPaused = _never_paused,
    ) -> None:
        self._store = store
        self._publish = publish
        self._is_paused = is_paused
        self._limit = asyncio.Semaphore(_MAX_CONCURRENT_FLUSHES)

    async def flush_due(self) -> int:
        """One pass: publish every due burst and every burst whose publisher's lease expired."""
        due, expired = await self._store.scan()
        jobs = [self._republish(member) for member in expired] + [self._claim_and_publish(m) for m in due]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                logger.error(
                    "flushing a burst failed; its lease will expire and it will be retried", exc_info=result
                )
        return sum(1 for result in results if result is True)

    async def _claim_and_publish(self, member: bytes) -> bool:
        async with self._limit:
            if not await self._store.claim(member):
                return False
            return await self._publish_claimed(member)

    async def _republish(self, member: bytes) -> bool:
        async with self._limit:
            if not await self._store.reclaim(member):
                return False
            logger.warning("republishing a burst whose publisher did not finish", extra={"member": member})
            return await self._publish_claimed(member)

    async def _publish_claimed(self, member: bytes) -> bool:
        conversation = conversation_of(member)
        flushing = await self._store.read_flushing(conversation)
        if flushing is None:
            await self._store.complete(conversation, [])
            return False
        burst = build_burst(flushing)
        if await self._is_paused(conversation):
            # paused after the burst was cut (an admin, or a takeover racing the flush): a human answers it
            await self._store.complete(conversation, [item.message_id for item in burst.items])
            logger.info("burst dropped: the bot is paused", extra={"burst_id": burst.burst_id})
            return False
        parent = extract({"traceparent": flushing.traceparent}) if flushing.traceparent else None
        with tracer(__name__).start_as_current_span("papo.debounce.flush", context=parent) as span:
            span.set_attribute("papo.burst_id", burst.burst_id)
            span.set_attribute("papo.burst.messages", len(burst.items))
            await self._publish(burst)
        await self._store.complete(conversation, [item.message_id for item in burst.items])
        DEBOUNCE_BURST_MESSAGES.labels(reason=burst.reason).observe(len(burst.items))
        DEBOUNCE_WAIT_SECONDS.labels(reason=burst.reason).observe(flushing.claimed_at - flushing.first_at)
        logger.info(
            "burst flushed",
            extra={"burst_id": burst.burst_id, "messages": len(burst.items), "reason": burst.reason},
        )
        return True
