"""The hot copy of a conversation's history: a Redis list of JSON turns with an idle TTL.

Every write happens under the conversation's turn lock. Appends are still made idempotent by a per
conversation watermark (the highest burst `inbound_seq` already in the list), so a redelivered burst never
adds its turn twice.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from papo_common.redis import ConversationKeys
from papo_llm.prompt import Turn

HISTORY_SEQ_SUFFIX = "history-seq"

# KEYS: history, history-seq, answered-seq. ARGV: seq, ttl ms, max turns, mark answered (0/1), turns...
_RECORD = """
local seq = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local max_turns = tonumber(ARGV[3])
if ARGV[4] == '1' and seq > tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('SET', KEYS[3], seq, 'PX', ttl)
end
if seq <= tonumber(redis.call('GET', KEYS[2]) or '0') then
  return 0
end
for i = 5, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
if max_turns > 0 then
  redis.call('LTRIM', KEYS[1], -max_turns, -1)
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('DEL', KEYS[1])
end
redis.call('SET', KEYS[2], seq, 'PX', ttl)
return 1
"""

# KEYS: history. ARGV: ttl ms, turns... Seeds only a list that is still missing.
_SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for i = 2, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


def encode_turn(turn: Turn, *, seq: int | None = None) -> str:
    return json.dumps({"role": turn.role, "content": turn.content, "seq": seq}, ensure_ascii=False)


def decode_turn(raw: bytes | str) -> Turn:
    data = json.loads(raw)
    return Turn(role=data["role"], content=data["content"])


class HistoryStore:
    """Reads and appends a conversation's turns in Redis."""

    def __init__(self, redis: Redis, *, ttl_seconds: int, max_turns: int) -> None:
        self._redis = redis
        self._ttl_ms = ttl_seconds * 1000
        self._max_turns = max_turns
        self._record: Any = redis.register_script(_RECORD)
        self._seed: Any = redis.register_script(_SEED)

    async def load(self, keys: ConversationKeys) -> list[Turn] | None:
        """The stored turns, oldest first, refreshing their idle TTL; None when Redis has no copy."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrange(keys.history, 0, -1)
            pipe.pexpire(keys.history, self._ttl_ms)
            pipe.pexpire(keys.scoped(HISTORY_SEQ_SUFFIX), self._ttl_ms)
            raw_turns, _, _ = await pipe.execute()
        if not raw_turns:
            return None
        return [decode_turn(raw) for raw in raw_turns]

    async def seed(self, keys: ConversationKeys, turns: list[Turn]) -> None:
        """Put turns reloaded from PostgreSQL back into Redis, unless a copy appeared meanwhile."""
        if turns and self._max_turns > 0:
            await self._seed(
                keys=[keys.history], args=[self._ttl_ms, *map(encode_turn, turns[-self._max_turns :])]
            )

    async def record(self, keys: ConversationKeys, seq: int, turns: list[Turn], *, answered: bool) -> bool:
        """Append a burst's turns once (False when they were already there) and, for an answered burst, raise
        the conversation's answered watermark to `seq`, all in one atomic step."""
        appended = await self._record(
            keys=[keys.history, keys.scoped(HISTORY_SEQ_SUFFIX), keys.answered_seq],
            args=[
                seq,
                self._ttl_ms,
                self._max_turns,
                int(answered),
                *(encode_turn(t, seq=seq) for t in turns),
            ],
        )
        return bool(appended)

    async def forget(self, keys: ConversationKeys) -> None:
        """Drop the hot history (a session closed). The answered watermark stays, so nothing is answered twice."""
        await self._redis.delete(keys.history, keys.scoped(HISTORY_SEQ_SUFFIX))

    async def answered_seq(self, keys: ConversationKeys) -> int:
        """The highest `inbound_seq` of a burst already answered (0 when none)."""
        return int(await self._redis.get(keys.answered_seq) or 0)

    async def inbound_seq(self, keys: ConversationKeys) -> int:
        """How many messages debounce has counted for the conversation (0 when it has no counter)."""
        return int(await self._redis.get(keys.inbound_seq) or 0)
