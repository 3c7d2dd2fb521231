"""The flush loop every replica runs: claim due bursts in Redis, publish them, then forget them.

There is no timer per conversation in any process: due times live in Redis, and any replica's loop may claim
a due burst (atomically, so exactly one does). A burst is removed from Redis only after the broker confirmed
its publish; a replica that dies in between leaves a claim whose lease runs out, and another replica
publishes the same burst (same `burst_id`) again — downstream deduplicates it.

A pass costs three Redis round trips whatever its size (scan, claim a page, complete the page); after a full
page the loop goes again at once, otherwise it sleeps until the next burst falls due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from opentelemetry.propagate import extract
from prometheus_client import Histogram

from papo_common.contracts import Burst
from papo_common.metrics import DEBOUNCE_BURST_MESSAGES, DEBOUNCE_WAIT_SECONDS
from papo_common.privacy import conversation_ref
from papo_common.telemetry import recording, tracer
from papo_debounce.burst import build_burst
from papo_debounce.store import DebounceStore, Flushing

logger = logging.getLogger(__name__)

Publish = Callable[[Burst], Awaitable[None]]

PAGE_SIZE = 500
"""Bursts claimed in one pass."""
_MAX_CONCURRENT_PUBLISHES = 256


class Flusher:
    def __init__(
        self,
        store: DebounceStore,
        publish: Publish,
        *,
        poll_interval: float = 0.2,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._store = store
        self._publish = publish
        self._poll_interval = poll_interval
        self._page_size = page_size
        self._limit = asyncio.Semaphore(_MAX_CONCURRENT_PUBLISHES)
        self._next_delay = poll_interval
        self._tracer = tracer(__name__)  # once: asking the provider for it costs more than the span
        self._by_reason: dict[str, tuple[Histogram, Histogram]] = {}

    def next_delay(self) -> float:
        """How long the loop should wait after the last pass: nothing after a full page, else until the next
        burst falls due (at most the poll interval, which bounds how late another replica's work is seen)."""
        return self._next_delay

    async def flush_due(self) -> int:
        """One pass: publish every due burst and every burst whose publisher's lease expired (one page of
        each); returns how many were published."""
        due, expired, wait = await self._store.scan(self._page_size)
        self._next_delay = self._poll_interval if wait is None else min(self._poll_interval, wait)
        claimed: list[Flushing] = []
        if expired:
            retaken = await self._store.reclaim(expired)
            if retaken:
                logger.warning(
                    "republishing bursts whose publisher did not finish", extra={"bursts": len(retaken)}
                )
            claimed += retaken
        if due:
            claimed += await self._store.claim(due)
        if claimed and max(len(due), len(expired)) >= self._page_size:
            # more is waiting; but a page of bursts all held behind their previous publish is no reason to spin
            self._next_delay = 0.0
        if not claimed:
            return 0
        return await self._publish_all(claimed)

    async def _publish_all(self, claimed: Sequence[Flushing]) -> int:
        results = await asyncio.gather(*(self._publish_one(f) for f in claimed), return_exceptions=True)
        finished: list[tuple[Flushing, list[str]]] = []
        published = 0
        for flushing, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                logger.error(
                    "flushing a burst failed; its lease will expire and it will be retried",
                    extra={"conversation": conversation_ref(flushing.conversation.key)},
                    exc_info=result,
                )
                continue
            finished.append((flushing, [item.message_id for item in flushing.items]))
            published += result
        if finished:
            await self._store.complete(finished)
        return published

    async def _publish_one(self, flushing: Flushing) -> bool:
        """Publish one claimed burst; False when it was dropped instead (the bot is paused)."""
        burst = build_burst(flushing)
        if flushing.paused:
            # paused after the burst was cut (an admin, or a takeover racing the flush): a human answers it
            logger.info(
                "burst dropped: the bot is paused",
                extra={"burst_id": burst.burst_id, "conversation": conversation_ref(burst.conversation.key)},
            )
            return False
        async with self._limit:
            if recording():  # off: no span at all, not even a dropped one
                parent = extract({"traceparent": flushing.traceparent}) if flushing.traceparent else None
                with self._tracer.start_as_current_span("papo.debounce.flush", context=parent) as span:
                    span.set_attribute("papo.burst_id", burst.burst_id)
                    span.set_attribute("papo.burst.messages", len(burst.items))
                    await self._publish(burst)
            else:
                await self._publish(burst)
        sizes, waits = self._observers(burst.reason)
        sizes.observe(len(burst.items))
        waits.observe(flushing.claimed_at - flushing.first_at)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "burst flushed",
                extra={
                    "burst_id": burst.burst_id,
                    "conversation": conversation_ref(burst.conversation.key),
                    "messages": len(burst.items),
                    "reason": burst.reason,
                },
            )
        return True

    def _observers(self, reason: str) -> tuple[Histogram, Histogram]:
        """The burst-size and wait histograms of `reason`, made once: `labels()` per burst was measurable."""
        if (observers := self._by_reason.get(reason)) is None:
            observers = (
                DEBOUNCE_BURST_MESSAGES.labels(reason=reason),
                DEBOUNCE_WAIT_SECONDS.labels(reason=reason),
            )
            self._by_reason[reason] = observers
        return observers
