"""A conversation's state in Redis: the answered turns, the person's messages not answered yet, and every
message id already recorded.

- `history`: a list of JSON turns (what was said and answered), bounded, with an idle TTL;
- `pending`: a hash `message id -> "<sent_at ms>|<burst seq>|<position>|<text>"`, the person's messages no
  answer covers yet;
- `seen`: a set of every message id recorded (pending or answered), so recording again is a no-op;
- `answered_seq`: the highest burst `inbound_seq` recorded (debounce restarts an expired counter from it).

Every write happens under the conversation's turn lease. A turn records its burst's messages first (one
script, which also reads back all the turn needs), then generates from every pending message in
`messageTimestamp` order, then settles them (moves them into the history with the answer). A burst whose
messages are all answered already is a duplicate; a failed turn leaves its messages pending for the next.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from papo_common.redis import ConversationKeys
from papo_llm.prompt import PendingMessage, Turn

PENDING_SUFFIX = "pending"
SEEN_SUFFIX = "seen"
_SENTINEL = ""
"""A member that keeps the `seen` set in existence once it was seeded, even before any message."""

# KEYS: seen pending answered_seq inbound_seq paused history bursts outbox.
# ARGV: ttl ms, burst seq, previous burst seq or '', then (id, value)...
# Returns {0} when `seen` is missing (Redis lost the state: reload it first); else
# {1, answered_seq, inbound_seq, paused, history exists, previous recorded, outbox or '', history..., '',
#  pending flat...}.
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local ttl = tonumber(ARGV[1])
-- has the burst cut before this one been recorded? (bursts recorded, by inbound_seq)
local previous_recorded = 1
if ARGV[3] ~= '' then previous_recorded = redis.call('SISMEMBER', KEYS[7], ARGV[3]) end
redis.call('SADD', KEYS[7], ARGV[2])
redis.call('PEXPIRE', KEYS[7], ttl)
-- a message new here is pending. One reloaded from PostgreSQL (burst seq 0) takes the burst's place for it:
-- debounce's order within a second is the one to keep, the reloaded copy only knows the second
for i = 4, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  else
    local reloaded = redis.call('HGET', KEYS[2], ARGV[i])
    if reloaded and string.match(reloaded, '^%-?%d+|0|') then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
  end
end
local recorded = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[2]) > recorded then
  recorded = tonumber(ARGV[2])
  redis.call('SET', KEYS[3], recorded, 'PX', ttl)
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local has_history = redis.call('PEXPIRE', KEYS[6], ttl)
local reply = {1, recorded, tonumber(redis.call('GET', KEYS[4]) or '0'), redis.call('EXISTS', KEYS[5]), has_history,
               previous_recorded, redis.call('GET', KEYS[8]) or ''}
for _, turn in ipairs(redis.call('LRANGE', KEYS[6], 0, -1)) do table.insert(reply, turn) end
table.insert(reply, '')
for _, field in ipairs(redis.call('HGETALL', KEYS[2])) do table.insert(reply, field) end
return reply
"""

# KEYS: seen pending history. ARGV: ttl ms, max turns, #seen, seen ids..., #pending, (id, value)..., turns...
# The history is seeded only when missing; seen ids and pending messages are added to what is there.
_SEED = """
local ttl = tonumber(ARGV[1])
local i = 3
redis.call('SADD', KEYS[1], '')
for _ = 1, tonumber(ARGV[i]) do i = i + 1; redis.call('SADD', KEYS[1], ARGV[i]) end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  if redis.call('SADD', KEYS[1], ARGV[i + 1]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  end
  i = i + 2
end
if redis.call('EXISTS', KEYS[3]) == 0 and tonumber(ARGV[2]) > 0 then
  for j = i + 1, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[j]) end
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[2]), -1)
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl) end
return 1
"""

# KEYS: pending history. ARGV: ttl ms, max turns, turns..., '', settled ids...
BURSTS_SUFFIX = "llm:bursts"
"""The `inbound_seq` of every burst recorded: whether a burst's predecessor has reached the llm."""
OUTBOX_SUFFIX = "llm:last-reply"
"""The conversation's latest reply, the one it follows, and (until it is published) the reply itself."""

_SETTLE = """
local ttl = tonumber(ARGV[1])
local max_turns = tonumber(ARGV[2])
-- the reply answering these messages, kept until it is published (the outbox): atomically with the answer
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
local ids = 6
while ARGV[ids - 1] ~= '' do ids = ids + 1 end
-- settled messages none of which is pending any more: this settle ran already, and redis-py repeats it
-- because its answer was lost with the connection; its turns must not join the history twice
if ids <= #ARGV then
  local still_pending = 0
  for j = ids, #ARGV do still_pending = still_pending + redis.call('HEXISTS', KEYS[1], ARGV[j]) end
  if still_pending == 0 then return 0 end
end
local i = 5
while ARGV[i] ~= '' do
  if max_turns > 0 then redis.call('RPUSH', KEYS[2], ARGV[i]) end
  i = i + 1
end
for j = i + 1, #ARGV do redis.call('HDEL', KEYS[1], ARGV[j]) end
if max_turns > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('LTRIM', KEYS[2], -max_turns, -1)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
"""


@dataclass(frozen=True)
class TurnState:
    """What a turn reads back after recording its burst."""

    recorded_seq: int
    """The highest burst `inbound_seq` recorded so far, this burst's included."""
    inbound_seq: int
    """debounce's counter: above `recorded_seq`, the person said more that a later burst will bring."""
    paused: bool
    history: list[Turn] | None
    """The answered turns; None when Redis has no copy (reload it from PostgreSQL)."""
    pending: list[PendingMessage]
    """Every message not answered yet, in the order it was sent."""
    previous_recorded: bool = True
    """Whether the burst cut before this one (`Burst.previous_inbound_seq`) has been recorded already."""
    outbox: bytes | None = None
    """The conversation's outbox (`OUTBOX_SUFFIX`) as the turn found it."""


def encode_turn(turn: Turn) -> str:
    return json.dumps({"role": turn.role, "content": turn.content}, ensure_ascii=False)


def decode_turn(raw: bytes | str) -> Turn:
    data = json.loads(raw)
    return Turn(role=data["role"], content=data["content"])


def _flat(messages: Iterable[PendingMessage]) -> list[str]:
    return [
        value
        for m in messages
        for value in (m.message_id, f"{m.sent_at_ms}|{m.seq}|{m.position}|{m.content}")
    ]


class HistoryStore:
    """Records, reads and settles a conversation's messages and turns in Redis."""

    def __init__(self, redis: Redis, *, ttl_seconds: int, max_turns: int) -> None:
        self._redis = redis
        self._ttl_ms = ttl_seconds * 1000
        self._max_turns = max_turns
        self._record: Any = redis.register_script(_RECORD)
        self._seed: Any = redis.register_script(_SEED)
        self._settle: Any = redis.register_script(_SETTLE)

    async def record(
        self,
        keys: ConversationKeys,
        seq: int,
        messages: Sequence[PendingMessage],
        *,
        previous_seq: int | None = None,
    ) -> TurnState | None:
        """Record a burst's messages (each once, ever) and read back the conversation's state; None when
        Redis lost it (no `seen` set), in which case nothing was recorded: `seed` it, then record again."""
        reply = await self._record(
            keys=[
                keys.scoped(SEEN_SUFFIX),
                keys.scoped(PENDING_SUFFIX),
                keys.answered_seq,
                keys.inbound_seq,
                keys.paused,
                keys.history,
                keys.scoped(BURSTS_SUFFIX),
                keys.scoped(OUTBOX_SUFFIX),
            ],
            args=[self._ttl_ms, seq, "" if previous_seq is None else previous_seq, *_flat(messages)],
        )
        if not reply[0]:
            return None
        recorded, inbound, paused, has_history, previous_recorded = (int(value) for value in reply[1:6])
        split = reply.index(b"", 7)
        pending = reply[split + 1 :]
        return TurnState(
            recorded_seq=recorded,
            inbound_seq=inbound,
            paused=bool(paused),
            history=[decode_turn(raw) for raw in reply[7:split]] if has_history else None,
            pending=sorted(_pending(pending[0::2], pending[1::2])),
            previous_recorded=bool(previous_recorded),
            outbox=reply[6] or None,
        )

    async def seed(
        self,
        keys: ConversationKeys,
        *,
        turns: Sequence[Turn],
        seen: Sequence[str] = (),
        pending: Sequence[PendingMessage] = (),
    ) -> None:
        """Put what PostgreSQL remembers back: the turns (only if Redis has no history), the ids already
        answered, and the messages still pending."""
        await self._seed(
            keys=[keys.scoped(SEEN_SUFFIX), keys.scoped(PENDING_SUFFIX), keys.history],
            args=[
                self._ttl_ms,
                self._max_turns,
                len(seen),
                *seen,
                len(pending),
                *_flat(pending),
                *map(encode_turn, turns[-self._max_turns :] if self._max_turns else ()),
            ],
        )

    async def settle(
        self,
        keys: ConversationKeys,
        settled: Sequence[PendingMessage],
        turns: Sequence[Turn],
        *,
        outbox: tuple[str, str, int] | None = None,
    ) -> None:
        """The `settled` messages are answered (or handled by a human): they leave `pending`, and `turns`
        (their user turn, and the answer when there is one) join the history. `outbox` (key, value, ttl
        seconds) is written in the same step: the reply that still has to be published."""
        outbox_key, outbox_value, outbox_ttl = outbox or (keys.scoped(OUTBOX_SUFFIX), "", 0)
        await self._settle(
            keys=[keys.scoped(PENDING_SUFFIX), keys.history, outbox_key],
            args=[
                self._ttl_ms,
                self._max_turns,
                outbox_value,
                outbox_ttl,
                *map(encode_turn, turns),
                "",
                *(m.message_id for m in settled),
            ],
        )

    async def forget(self, keys: ConversationKeys) -> None:
        """Drop the hot history (a session closed). What was recorded stays, so nothing is answered twice."""
        await self._redis.delete(keys.history)

    async def counter_and_lease(self, keys: ConversationKeys) -> tuple[int, bytes | None]:
        """debounce's counter and the turn lease's value, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.inbound_seq)
            pipe.get(keys.turn_lock)
            counter, lease = await pipe.execute()
        return int(counter or 0), lease

    async def inbound_seq(self, keys: ConversationKeys) -> int:
        """How many messages debounce has counted for the conversation (0 when it has no counter)."""
        return int(await self._redis.get(keys.inbound_seq) or 0)


def _pending(ids: Sequence[bytes], values: Sequence[bytes]) -> Iterable[PendingMessage]:
    for message_id, value in zip(ids, values, strict=True):
        at, seq, position, content = value.decode().split("|", 3)
        yield PendingMessage(int(at), int(seq), int(position), message_id.decode(), content)
