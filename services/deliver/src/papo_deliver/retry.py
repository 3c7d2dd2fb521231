"""Bounded exponential backoff with jitter around one call to Evolution API."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from papo_common.errors import DependencyUnavailable, PermanentError
from papo_deliver.classify import classify
from papo_deliver.evolution import EvolutionError

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE = (EvolutionError, httpx.TransportError)
"""What a call to Evolution raises; anything else (Redis, a lost lock) propagates untouched."""


class EvolutionUnavailable(DependencyUnavailable):
    """Evolution kept failing transiently for every attempt: the message is handed back for redelivery."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    base_seconds: float
    max_seconds: float

    def backoff_seconds(self, failed_attempts: int) -> float:
        """Exponential in the attempts made, capped, with "equal jitter": half fixed so retries really wait,
        half random so replicas hit by the same outage do not retry in lockstep."""
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** (failed_attempts - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call`, retrying transient failures. A permanent failure raises `PermanentError` at once; a
    transient one that outlasts every attempt raises `EvolutionUnavailable`."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return await call()
        except RETRYABLE as error:
            verdict = classify(error)
            if not verdict.transient:
                raise PermanentError(f"{what}: {verdict.reason}") from error
            if attempt == policy.attempts:
                raise EvolutionUnavailable(f"{what}: {verdict.reason} (after {attempt} attempts)") from error
            pause = policy.backoff_seconds(attempt)
            logger.warning(
                "transient Evolution API failure, retrying",
                extra={
                    "what": what,
                    "attempt": attempt,
                    "retry_in_s": round(pause, 3),
                    "reason": verdict.reason,
                },
            )
            await sleep(pause)
    raise AssertionError("unreachable: the loop returns or raises")  # policy.attempts >= 1
