"""Remembering which messages were published, so Evolution's retries and duplicate deliveries publish once.

A message id moves through two states in Redis: *claimed* (a request is publishing it; the value is that
request's random token, with a short TTL in case the process dies) and *published* (the broker confirmed
it; kept for the dedupe TTL). A failed publish deletes its own claim, so Evolution's retry is accepted. A
request that finds another's claim waits for the outcome rather than answering "duplicate" for a message
that may still fail to publish.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from enum import Enum

from redis.asyncio import Redis

PUBLISHED = b"published"

# Delete the claim only if it is still ours: after a slow publish it may have expired and been re-claimed.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


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

    def key(self, instance: str, message_id: str) -> str:
        """The Redis key of one message."""
        return f"{self._prefix}:{instance}:{message_id}"

    async def claim(self, key: str, token: bytes, *, wait_seconds: float) -> ClaimOutcome:
        """Claim the message for publishing, or learn that it was published, waiting up to `wait_seconds`
        for a concurrent holder to finish."""
        deadline = time.monotonic() + wait_seconds
        while True:
            if await self._redis.set(key, token, nx=True, px=self._claim_ttl_ms):
                return ClaimOutcome.CLAIMED
            if await self._redis.get(key) == PUBLISHED:
                return ClaimOutcome.DUPLICATE
            if time.monotonic() >= deadline:
                return ClaimOutcome.IN_FLIGHT
            await asyncio.sleep(self._poll)

    async def confirm(self, key: str) -> None:
        """Mark the message published for the dedupe TTL."""
        await self._redis.set(key, PUBLISHED, ex=self._published_ttl)

    async def release(self, key: str, token: bytes) -> None:
        """Give up a claim after a failed publish, so the retry can claim it."""
        await self._release(keys=[key], args=[token])


def new_claim_token() -> bytes:
    """A random value that identifies one request's claim."""
    return secrets.token_hex(16).encode()
