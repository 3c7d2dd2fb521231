"""Spacing the messages one WhatsApp number sends, across every replica: WhatsApp bans numbers that send in
bulk or in parallel, and Evolution API has no rate limit of its own.

Two atomic scripts on one hash per instance, on Redis's own clock (`TIME`) so replicas with drifting clocks
agree:

- `reserve`, when a send is planned: its slot is `max(now + lead, next)` and `next` moves to slot + interval.
  Senders queue in order and plan their typing to end at their slot. A slot that goes unused (a crash, a
  failure) only delays later sends.
- `claim`, right before the HTTP call: passes only if the last send through the instance was at least the
  interval ago, and records this one. A reservation cannot make a sender punctual (a slow typing call, a
  busy event loop), so this is what guarantees the spacing of the sends themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval = tonumber(ARGV[2])
"""
# Both return milliseconds to wait. The key outlives the last use by a minute: an idle instance leaves nothing.
_RESERVE = (
    _NOW
    + """
local slot = now + tonumber(ARGV[1])
local next_free = tonumber(redis.call('HGET', KEYS[1], 'next'))
if next_free and next_free > slot then slot = next_free end
redis.call('HSET', KEYS[1], 'next', slot + interval)
redis.call('PEXPIRE', KEYS[1], slot + interval - now + 60000)
return slot - now
"""
)
_CLAIM = (
    _NOW
    + """
local sends_at = now + tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'sent'))
if last and sends_at < last + interval then return last + interval - sends_at end
redis.call('HSET', KEYS[1], 'sent', sends_at)
if redis.call('PTTL', KEYS[1]) < sends_at - now + interval + 60000 then
  redis.call('PEXPIRE', KEYS[1], sends_at - now + interval + 60000)
end
return 0
"""
)

Renew = Callable[[], Awaitable[None]]


class SendSlots:
    """When each send through an instance may go out. `interval_ms` 0 spaces nothing and touches no Redis."""

    def __init__(self, redis: Redis | None, prefix: str, *, interval_ms: int) -> None:
        if interval_ms > 0 and redis is None:
            raise ValueError("spacing sends needs Redis")
        self._prefix = prefix
        self._interval_ms = interval_ms
        spaced = redis is not None and interval_ms > 0
        self._reserve = redis.register_script(_RESERVE) if redis is not None and spaced else None
        self._claim = redis.register_script(_CLAIM) if redis is not None and spaced else None

    def key(self, instance: str) -> str:
        return f"{self._prefix}:instance:{{{instance}}}:deliver:next-send"

    async def reserve(self, instance: str, *, lead_ms: int = 0) -> float:
        """Reserve the next send through `instance`, no sooner than `lead_ms` from now; returns the
        `time.monotonic()` at which to send."""
        if self._reserve is None:
            wait_ms = lead_ms
        else:
            wait_ms = int(await self._reserve(keys=[self.key(instance)], args=[lead_ms, self._interval_ms]))
        # Counted from when the answer arrived, so the round trip only ever makes a send later, not earlier.
        return time.monotonic() + wait_ms / 1000

    async def claim(self, instance: str, *, lead_ms: int = 0) -> float:
        """Take the turn to send through `instance` now (Evolution sending `lead_ms` later): 0 when taken,
        else the seconds to wait before claiming again."""
        if self._claim is None:
            return 0.0
        return int(await self._claim(keys=[self.key(instance)], args=[lead_ms, self._interval_ms])) / 1000


async def sleep_until(deadline: float, *, renew: Renew, renew_every_seconds: float) -> None:
    """Sleep until `time.monotonic()` reaches `deadline`, calling `renew` between naps so a lease held while
    waiting (the reply's lock) does not run out during a long wait."""
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(remaining, renew_every_seconds))
        if deadline - time.monotonic() > 0:
            await renew()
