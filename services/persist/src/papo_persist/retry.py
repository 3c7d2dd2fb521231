"""Riding out a short outage of a dependency without giving up the messages that wait on it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from papo_common.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0


async def retry_while_unavailable(call: Callable[[], Awaitable[None]], *, for_s: float) -> None:
    """Run `call`; while it raises `DependencyUnavailable`, retry with jittered exponential backoff for up to
    `for_s` seconds, then raise the last error. The messages waiting on it stay unacknowledged meanwhile, so
    a restart of PostgreSQL costs latency, not redeliveries."""
    deadline = asyncio.get_running_loop().time() + for_s
    backoff = FIRST_BACKOFF_S
    while True:
        try:
            await call()
            return
        except DependencyUnavailable as error:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise
            logger.warning("database unavailable, retrying", extra={"error": str(error)[:300]})
            await asyncio.sleep(min(remaining, backoff * random.uniform(0.5, 1.0)))
            backoff = min(backoff * 2, MAX_BACKOFF_S)
