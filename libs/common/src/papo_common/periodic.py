"""A background loop that runs one coroutine every few seconds, for the polling work of a service (due bursts,
idle sessions) whose state lives in Redis, never in the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)


class Periodic:
    """Runs `tick` every `interval` seconds until stopped. A failing tick is logged and retried with doubling
    back-off up to `max_backoff`, so an outage (Redis, the broker) neither kills the loop nor floods the log.
    `delay`, when given, says how long to wait after a successful tick instead (e.g. nothing after a full page
    of work)."""

    def __init__(
        self,
        name: str,
        tick: Callable[[], Awaitable[Any]],
        *,
        interval: float,
        max_backoff: float = 5.0,
        delay: Callable[[], float] | None = None,
    ) -> None:
        self._name = name
        self._tick = tick
        self._delay = delay or (lambda: interval)
        self._interval = interval
        self._max_backoff = max(max_backoff, interval)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        delay = self._interval
        while True:
            try:
                await self._tick()
                delay = self._delay()
            except Exception:
                logger.exception("%s failed; retrying", self._name)
                delay = min(max(delay, self._interval) * 2, self._max_backoff)
            await asyncio.sleep(delay)

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
