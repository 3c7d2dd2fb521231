"""Oldest burst first: the order in which bursts of one conversation that are at the llm together take the
conversation's turn lease.

The lease makes turns exclusive, not ordered: two bursts that reach the llm at the same moment (a backlog
after an outage, a debounce publisher that stalled past its claim lease) poll for it, and the newer one can
win and be answered before the older one's messages are even recorded. So before polling for the lease a
burst registers in the conversation's waiting room (`…:llm:waiting`, a sorted set scored by the burst's
`inbound_seq`, with a deadline per entry, on any replica) and tries for the lease only while no older burst
is waiting. The older one leaves the room once it holds the lease; a waiter that died is forgotten at its
deadline, which each poll pushes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from papo_common.contracts import Burst
from papo_common.redis import ConversationKeys
from papo_common.resilience import Lease, LeaseBusy, hold_lease

WAITING_SUFFIX = "llm:waiting"
_DEADLINES_SUFFIX = "llm:waiting-until"
_POLL_SECONDS = 0.05
_ENTRY_SECONDS = 10.0
"""How long an entry outlives its last poll: a waiter that died holds the others back this long at most."""

# KEYS: waiting deadlines   ARGV: burst_id seq entry_ms
# Registers (or refreshes) this burst, forgets entries past their deadline, and answers how many older bursts
# are still waiting. Redis's own clock, so replicas with drifting clocks agree.
_WAIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now + tonumber(ARGV[3]))
local older = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])) do
  local deadline = tonumber(redis.call('HGET', KEYS[2], member) or '0')
  if deadline < now then
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[2], member)
  else
    older = older + 1
  end
end
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('PEXPIRE', KEYS[2], 60000)
return older
"""


class BurstOrder:
    def __init__(self, redis: Redis, *, wait_seconds: float) -> None:
        self._redis = redis
        self._wait_seconds = wait_seconds
        self._wait: Any = redis.register_script(_WAIT)

    @contextlib.asynccontextmanager
    async def lease(
        self, keys: ConversationKeys, burst: Burst, *, lease_seconds: float
    ) -> AsyncIterator[Lease]:
        """Hold the conversation's turn lease for the block, taking it only while no older burst waits for it.
        After `wait_seconds` the burst stops deferring (an older burst that never comes must not hold the
        conversation) and, if the lease is still taken, `LeaseBusy` hands it back for redelivery."""
        place = _Place(self._redis, keys, burst)
        deadline = time.monotonic() + self._wait_seconds
        try:
            async with contextlib.AsyncExitStack() as held:
                while True:
                    late = time.monotonic() >= deadline
                    if late or not await self._older_waiting(keys, burst):
                        try:
                            lease = await held.enter_async_context(
                                hold_lease(
                                    self._redis, keys.turn_lock, lease_seconds=lease_seconds, wait_seconds=0
                                )
                            )
                            break
                        except LeaseBusy:
                            if late:
                                raise
                    await asyncio.sleep(_POLL_SECONDS)  # other replicas' bursts: Redis is all they share
                await place.leave()  # the lease is ours: newer bursts may queue on it now
                yield lease
        finally:
            await place.leave()

    async def _older_waiting(self, keys: ConversationKeys, burst: Burst) -> bool:
        older = await self._wait(
            keys=[keys.scoped(WAITING_SUFFIX), keys.scoped(_DEADLINES_SUFFIX)],
            args=[burst.burst_id, burst.inbound_seq, int(_ENTRY_SECONDS * 1000)],
        )
        return int(older) > 0


class _Place:
    """A burst's entry in the waiting room."""

    def __init__(self, redis: Redis, keys: ConversationKeys, burst: Burst) -> None:
        self._redis = redis
        self._keys = keys
        self._burst_id = burst.burst_id
        self._left = False

    async def leave(self) -> None:
        """Leave the room (once): the burst holds the lease, or is done."""
        if self._left:
            return
        self._left = True
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._keys.scoped(WAITING_SUFFIX), self._burst_id)
            pipe.hdel(self._keys.scoped(_DEADLINES_SUFFIX), self._burst_id)
            await pipe.execute()
