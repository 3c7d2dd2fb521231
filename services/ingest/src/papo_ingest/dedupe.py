"""Remembering which messages were published, so Evolution's retries and duplicate deliveries publish once.

A message id moves through two states in Redis: *claimed* (a request is publishing it; the value is that
request's random token, with a short TTL in case the process dies) and *published* (the broker confirmed
it; kept for the dedupe TTL). A failed publish deletes its own claim, so Evolution's retry is accepted. A
request that finds another's claim waits for the outcome rather than answering "duplicate" for a message
that may still fail to publish.

One Redis round trip per webhook: `SET NX GET` claims the id and, when it was taken, says by whom in the
same reply. Marking an id published is written behind the answer, many ids per round trip; if that write is
lost (Redis down, the process killed), the claim expires on its own and a later duplicate is published again
and deduplicated downstream by its message id, exactly as if the mark had been evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PUBLISHED = b"published"

# Delete the claim only if it is still ours: after a slow publish it may have expired and been re-claimed.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


Alongside = tuple[Callable[[Pipeline], Awaitable[int]], Callable[[Any], None]]
"""Commands sent in the claim's round trip: (queue them on the pipeline, returning how many; take the reply)."""


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    """This request owns the message and must publish it, then `confirm` or `release`."""
    DUPLICATE = "duplicate"
    """Already published."""
    IN_FLIGHT = "in_flight"
    """Another request still holds the claim after the wait: let Evolution retry later."""


class SeenMessages:
    """The (instance, message id) pairs that were published, in Redis under `<prefix>:ingest:seen:`."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        published_ttl_seconds: int,
        claim_ttl_seconds: float,
        poll_seconds: float = 0.02,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:ingest:seen"
        self._published_ttl = published_ttl_seconds
        self._claim_ttl_ms = int(claim_ttl_seconds * 1000)
        self._poll = poll_seconds
        self._release = redis.register_script(_RELEASE_SCRIPT)
        self._to_confirm: list[str] = []
        self._writer: asyncio.Task[None] | None = None

    def key(self, instance: str, message_id: str) -> str:
        """The Redis key of one message."""
        return f"{self._prefix}:{instance}:{message_id}"

    async def claim(
        self, key: str, token: bytes, *, wait_seconds: float, alongside: Alongside | None = None
    ) -> ClaimOutcome:
        """Claim the message for publishing, or learn that it was published, waiting up to `wait_seconds`
        for a concurrent holder to finish. `alongside` rides on the first round trip: it queues its own
        commands on the pipeline, returns how many, and is given their replies."""
        deadline = time.monotonic() + wait_seconds
        holder = await self._first_claim(key, token, alongside)
        while True:
            if holder is None:
                return ClaimOutcome.CLAIMED
            if holder == PUBLISHED:
                return ClaimOutcome.DUPLICATE
            if time.monotonic() >= deadline:
                return ClaimOutcome.IN_FLIGHT
            await asyncio.sleep(self._poll)  # the holder's outcome arrives as a value: poll for it
            holder = await self._redis.set(key, token, nx=True, px=self._claim_ttl_ms, get=True)

    async def _first_claim(self, key: str, token: bytes, alongside: Alongside | None) -> Any:
        if alongside is None:
            return await self._redis.set(key, token, nx=True, px=self._claim_ttl_ms, get=True)
        queue, answer = alongside
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(key, token, nx=True, px=self._claim_ttl_ms, get=True)
            added = await queue(pipe)
            holder, *replies = await pipe.execute()
        if added:
            answer(replies[0])
        return holder

    def confirm(self, key: str) -> None:
        """Mark the message published for the dedupe TTL, written behind the answer with the others that
        were confirmed meanwhile."""
        self._to_confirm.append(key)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_confirmed(), name="papo-ingest-confirm")

    async def flush(self) -> None:
        """Wait until every confirmed message is marked (at shutdown, and in tests)."""
        while self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)

    async def release(self, key: str, token: bytes) -> None:
        """Give up a claim after a failed publish, so the retry can claim it."""
        await self._release(keys=[key], args=[token])

    async def _write_confirmed(self) -> None:
        while self._to_confirm:
            keys, self._to_confirm = self._to_confirm, []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.set(key, PUBLISHED, ex=self._published_ttl)
                    await pipe.execute()
            except (RedisError, OSError) as error:
                # the messages are safely on the broker; their claims expire by themselves
                logger.warning(
                    "published but not remembered",
                    extra={"messages": len(keys), "error": f"{type(error).__name__}: {error}"[:300]},
                )


def new_claim_token() -> bytes:
    """A random value that identifies one request's claim."""
    return secrets.token_hex(16).encode()
