"""Oldest burst first: the order in which bursts of one conversation that are at the llm together take the
conversation's turn lease.

The lease makes turns exclusive, not ordered: two bursts that reach the llm at the same moment (a backlog
after an outage, a debounce publisher that stalled past its claim lease) poll for it, and the newer one can
win and be answered before the older one's messages are even recorded. So before polling for the lease a
burst registers in the conversation's waiting room (`…:llm:waiting`, a sorted set scored by the burst's
`inbound_seq`, with a deadline per entry, on any replica) and tries for the lease only while no older burst
is waiting. The older one leaves the room once it holds the lease; a waiter that died is forgotten at its
deadline, which each poll pushes back. Each try is one script: take the lease if it is free and no older
burst waits, else enter (or stay in) the room, so a burst that meets no contention takes it in one round trip.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from papo_common.contracts import Burst
from papo_common.redis import ConversationKeys
from papo_common.resilience import Lease, RetrySafeLock, hold_lease

WAITING_SUFFIX = "llm:waiting"
_DEADLINES_SUFFIX = "llm:waiting-until"
_POLL_SECONDS = 0.05
_ENTRY_SECONDS = 10.0
"""How long an entry outlives its last poll: a waiter that died holds the others back this long at most."""

# KEYS: lease waiting deadlines   ARGV: token lease_ms burst_id seq entry_ms defer
# Takes the lease when it is free and (while `defer` is '1') no older burst waits for it, leaving the room in
# the same step; else registers (or refreshes) this burst in the room, forgetting entries past their deadline.
# Redis's own clock, so replicas with drifting clocks agree. A repeat (redis-py sends a command again when its
# connection broke) finds its own token and answers as the first run did.
_TAKE_OLDEST_FIRST = """
local function leave()
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('HDEL', KEYS[3], ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then leave() return 1 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local older = 0
if ARGV[6] == '1' then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])) do
    local deadline = tonumber(redis.call('HGET', KEYS[3], member) or '0')
    if deadline < now then
      redis.call('ZREM', KEYS[2], member)
      redis.call('HDEL', KEYS[3], member)
    else
      older = older + 1
    end
  end
end
if older == 0 and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then leave() return 1 end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], now + tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[2], 60000)
redis.call('PEXPIRE', KEYS[3], 60000)
return 0
"""


class BurstOrder:
    def __init__(self, redis: Redis, *, wait_seconds: float) -> None:
        self._redis = redis
        self._wait_seconds = wait_seconds
        self._take: Any = redis.register_script(_TAKE_OLDEST_FIRST)

    @contextlib.asynccontextmanager
    async def lease(
        self, keys: ConversationKeys, burst: Burst, *, lease_seconds: float
    ) -> AsyncIterator[Lease]:
        """Hold the conversation's turn lease for the block, taking it only while no older burst waits for it.
        After `wait_seconds` the burst stops deferring (an older burst that never comes must not hold the
        conversation) and, if the lease is still taken, `LeaseBusy` hands it back for redelivery. A burst
        that finds the lease free and no older one waiting takes it in one round trip."""
        locks: list[_OldestFirstLock] = []

        def oldest_first(*args: Any, **options: Any) -> _OldestFirstLock:
            lock = _OldestFirstLock(
                *args,
                take=self._take,
                room=(keys.scoped(WAITING_SUFFIX), keys.scoped(_DEADLINES_SUFFIX)),
                burst=burst,
                defer_until=time.monotonic() + self._wait_seconds,
                **options,
            )
            locks.append(lock)
            return lock

        try:
            async with hold_lease(
                self._redis,
                keys.turn_lock,
                lease_seconds=lease_seconds,
                # past the deferring, a few more tries that no older burst holds back
                wait_seconds=self._wait_seconds + 2 * _POLL_SECONDS,
                poll_seconds=_POLL_SECONDS,  # other replicas' bursts: Redis is all they share
                lock_class=oldest_first,
            ) as lease:
                yield lease
        finally:
            if not locks or locks[0].waiting:  # given up (or failed) while in the room: leave it
                await _leave(self._redis, keys, burst)


class _OldestFirstLock(RetrySafeLock):
    """The turn lease's lock: each try takes it only while no older burst is in the waiting room, and
    otherwise enters (or stays in) the room."""

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        take: Any,
        room: tuple[str, str],
        burst: Burst,
        defer_until: float,
        **options: Any,
    ) -> None:
        super().__init__(redis, name, **options)
        self._take = take
        self._room = room
        self._burst = burst
        self._defer_until = defer_until
        self.waiting = False
        """Whether the last try left this burst in the waiting room."""

    async def do_acquire(self, token: str | bytes) -> bool:
        defer = time.monotonic() < self._defer_until
        self.waiting = True  # until Redis answers: a try whose answer never came may have entered the room
        took = await self._take(
            keys=[self.name, *self._room],
            args=[
                token,
                int((self.timeout or 0) * 1000),
                self._burst.burst_id,
                self._burst.inbound_seq,
                int(_ENTRY_SECONDS * 1000),
                "1" if defer else "0",
            ],
        )
        self.waiting = not took
        return bool(took)


async def _leave(redis: Redis, keys: ConversationKeys, burst: Burst) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.scoped(WAITING_SUFFIX), burst.burst_id)
        pipe.hdel(keys.scoped(_DEADLINES_SUFFIX), burst.burst_id)
        await pipe.execute()
