"""One turn at a time per conversation, across every replica: a leased Redis lock with a watchdog.

The lock is `SET key token NX PX lease`; only the holder's token can renew or release it (Lua compares it),
so a holder that stalled past its lease can never release a successor's lock. A waiter polls with capped,
jittered backoff instead of handing the message back to RabbitMQ, where every requeue of a quorum queue
counts toward the delivery limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_FIRST_POLL_SECONDS = 0.05
_MAX_POLL_SECONDS = 0.5


class TurnBusy(Exception):
    """The conversation's turn did not come within the wait limit. Transient: the burst is redelivered."""


class TurnLockLost(Exception):
    """The lease lapsed while the turn was running (Redis unreachable, or the process stalled), so another
    replica may be answering. Transient: the burst is redelivered and its watermark check decides."""


class TurnLock:
    """A held turn lock. Use `acquire_turn` to get one."""

    def __init__(self, redis: Redis, key: str, token: str, lease_ms: int) -> None:
        self._redis = redis
        self._key = key
        self._token = token
        self._lease_ms = lease_ms
        self._lost = False
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours."""
        renewed = bool(await self._renew(keys=[self._key], args=[self._token, self._lease_ms]))
        self._lost = self._lost or not renewed
        return renewed

    async def ensure_held(self) -> None:
        """Raise `TurnLockLost` unless the lock is still ours: checked before a reply is published."""
        if self._lost or await self._redis.get(self._key) != self._token.encode():
            self._lost = True
            raise TurnLockLost(self._key)

    async def release(self) -> None:
        """Give the turn back. A failure is only logged: the lease frees the conversation soon anyway, and
        the error that ended the turn matters more."""
        try:
            await self._release(keys=[self._key], args=[self._token])
        except RedisError as error:
            logger.warning("could not release turn lock", extra={"lock": self._key, "error": repr(error)})

    async def watchdog(self) -> None:
        """Renew the lease every third of it until cancelled; a Redis hiccup is retried on the next beat."""
        interval = self._lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.renew():
                    logger.error("turn lock lost while generating", extra={"lock": self._key})
                    return
            except RedisError as error:
                logger.warning("could not renew turn lock", extra={"lock": self._key, "error": repr(error)})


@contextlib.asynccontextmanager
async def acquire_turn(
    redis: Redis, key: str, *, lease_seconds: float, wait_seconds: float
) -> AsyncIterator[TurnLock]:
    """Hold the conversation's turn lock for the block, renewed while held and always released after.
    Waits up to `wait_seconds` for it, then raises `TurnBusy`."""
    token = secrets.token_hex(16)
    lease_ms = max(1, int(lease_seconds * 1000))
    deadline = time.monotonic() + wait_seconds
    pause = _FIRST_POLL_SECONDS
    while not await redis.set(key, token, nx=True, px=lease_ms):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TurnBusy(key)
        await asyncio.sleep(min(remaining, random.uniform(pause / 2, pause)))
        pause = min(_MAX_POLL_SECONDS, pause * 2)
    lock = TurnLock(redis, key, token, lease_ms)
    watchdog = asyncio.create_task(lock.watchdog(), name=f"turn-lock-watchdog:{key}")
    try:
        yield lock
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        await lock.release()
