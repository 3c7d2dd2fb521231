"""Sessions: a conversation idle for `PAPO_SESSION_IDLE_SECONDS` closes, and a closing record is persisted.

Every answered burst marks its conversation active in one Redis sorted set (score: Redis time). Every
replica runs `sweep` periodically: it claims idle conversations atomically — with a lease, so a replica that
dies mid-close leaves the claim to another — publishes `SessionClosed`, and forgets the hot history. The next message
starts a new session, whose context the llm rebuilds from PostgreSQL after the last closing record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from papo_common.contracts import CloseReason, ConversationRef, SessionClosed, utcnow
from papo_common.privacy import conversation_ref

logger = logging.getLogger(__name__)

PublishClosed = Callable[[SessionClosed], Awaitable[None]]
ForgetHistory = Callable[[ConversationRef], Awaitable[None]]

# KEYS: active. ARGV: member
_TOUCH = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
return 1
"""

# KEYS: active closing sweep. ARGV: idle seconds, lease seconds, limit, seconds to keep the claim. Moves idle
# members (and expired claims) to `closing` with a fresh lease and returns them, each with its lease as Redis
# wrote it: exactly one replica gets each, and the lease is the claim's token. `sweep` is this sweep's own key
# (a random token in its name): what it claimed is kept there briefly, so that redis-py repeating the script
# after its answer was lost with the connection (within a second) gets the same claim back, not an empty one
# while the sessions wait out the lease. Briefly, because the members are people's numbers: an erasure
# removes them from `active` and `closing`, and this copy is gone within seconds.
_CLAIM_IDLE = """
local done = redis.call('GET', KEYS[3])
if done then return cjson.decode(done) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local claimed = {}
local function take(member)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), member)
  table.insert(claimed, member)
  table.insert(claimed, redis.call('ZSCORE', KEYS[2], member))
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[1], member)
  take(member)
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  take(member)
end
if #claimed > 0 then
  redis.call('SET', KEYS[3], cjson.encode(claimed), 'EX', ARGV[4])
end
return claimed
"""

# KEYS: closing. ARGV: member, lease. A replica that stalled past its lease finds another one's lease there:
# it must not remove that claim (with release) nor close a session it no longer holds (holds).
_HOLDS = """
return redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] and 1 or 0
"""
_RELEASE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

_LEASE_SECONDS = 60
_CLAIM_KEPT_SECONDS = 10
_BATCH = 100


def _member(conversation: ConversationRef) -> str:
    return json.dumps([conversation.instance, conversation.user_id], separators=(",", ":"))


class SessionKeeper:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        idle_seconds: float,
        publish: PublishClosed,
        forget: ForgetHistory,
    ) -> None:
        self._redis = redis
        self._active = f"{prefix}:sessions:active"
        self._closing = f"{prefix}:sessions:closing"
        self._sweeps = f"{prefix}:sessions:sweep"
        self._idle = idle_seconds
        self._publish = publish
        self._forget = forget
        self._touch: Any = redis.register_script(_TOUCH)
        self._claim: Any = redis.register_script(_CLAIM_IDLE)
        self._holds: Any = redis.register_script(_HOLDS)
        self._release: Any = redis.register_script(_RELEASE)

    async def touch(self, conversation: ConversationRef) -> None:
        """The conversation had a turn just now."""
        await self._touch(keys=[self._active], args=[_member(conversation)])

    async def close(self, conversation: ConversationRef, reason: CloseReason) -> None:
        """Close a session now (the person asked to start over): record it and forget the hot history."""
        await self._publish(SessionClosed(conversation=conversation, reason=reason, closed_at=utcnow()))
        await self._forget(conversation)
        await self._redis.zrem(self._active, _member(conversation))

    async def sweep(self) -> int:
        """Close every idle session; returns how many were closed."""
        sweep = f"{self._sweeps}:{os.urandom(8).hex()}"
        claimed = await self._claim(
            keys=[self._active, self._closing, sweep],
            args=[self._idle, _LEASE_SECONDS, _BATCH, _CLAIM_KEPT_SECONDS],
        )
        closed = 0
        for member, lease in zip(claimed[::2], claimed[1::2], strict=True):
            instance, user_id = json.loads(member)
            conversation = ConversationRef(instance=instance, user_id=user_id)
            if not await self._holds(keys=[self._closing], args=[member, lease]):
                continue  # taken over after this replica's lease ran out
            await self._publish(SessionClosed(conversation=conversation, reason="idle", closed_at=utcnow()))
            await self._forget(conversation)
            await self._release(keys=[self._closing], args=[member, lease])
            closed += 1
            logger.info(
                "session closed after being idle", extra={"conversation": conversation_ref(conversation.key)}
            )
        return closed
