"""The Lua scripts that make every debounce state change atomic.

Time comes from Redis (`TIME`), never from a replica's clock, so replicas with skewed clocks agree on when a
burst is due. A conversation's burst state is four keys: `items` (message id -> "<arrival seq>|<json>"),
`meta` (first_at, last_at, count, chat_id, push_name, pending_deadline), `pending` (voice notes still being
transcribed) and `texts` (transcripts, which may arrive before their voice note does). Two global sorted sets
say what is due (`due`: conversation -> due time) and what a replica is publishing (`claims`: conversation ->
lease expiry). A claimed burst is renamed to `flushing:*` keys, so the next burst can start at once while the
claimed one is published, and a crashed publisher's burst is republished by any replica when its lease ends.
"""

from __future__ import annotations

_PRELUDE = """
local function now_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Due time of the burst in `meta`: quiet window after the last message, capped by max_wait after the first,
-- now when it is full; while a voice note is pending, not before its transcript or its deadline.
local function schedule(meta, pending, due, member, window, max_wait, max_size, now)
  local m = redis.call('HMGET', meta, 'first_at', 'last_at', 'count', 'pending_deadline')
  if not m[1] then return nil end
  local ready = math.min(tonumber(m[2]) + window, tonumber(m[1]) + max_wait)
  if tonumber(m[3]) >= max_size then ready = now end
  if redis.call('SCARD', pending) > 0 then ready = math.max(ready, tonumber(m[4]) or now) end
  redis.call('ZADD', due, ready, member)
  return ready
end
"""

ADD_MESSAGE = (
    _PRELUDE
    + """
-- KEYS: seen items meta pending texts inbound_seq answered_seq due
-- ARGV: message_id item_json is_audio chat_id push_name member window max_wait max_size
--       transcription_timeout state_ttl traceparent
local now = now_seconds()
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return {0, 0} end
redis.call('EXPIRE', KEYS[1], ARGV[11])
-- a counter that expired restarts from the llm's answered watermark, never below it
if redis.call('EXISTS', KEYS[6]) == 0 then
  redis.call('SET', KEYS[6], redis.call('GET', KEYS[7]) or 0)
end
local seq = redis.call('INCR', KEYS[6])
redis.call('EXPIRE', KEYS[6], ARGV[11])
redis.call('HSET', KEYS[2], ARGV[1], seq .. '|' .. ARGV[2])
redis.call('HSETNX', KEYS[3], 'first_at', now)
-- the burst continues the trace of its first message, so one trace runs from webhook to reply
if ARGV[12] ~= '' then redis.call('HSETNX', KEYS[3], 'traceparent', ARGV[12]) end
redis.call('HSET', KEYS[3], 'last_at', now, 'chat_id', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], 'push_name', ARGV[5]) end
redis.call('HINCRBY', KEYS[3], 'count', 1)
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[5], ARGV[1]) == 0 then
  redis.call('SADD', KEYS[4], ARGV[1])
  local deadline = now + tonumber(ARGV[10])
  if deadline > tonumber(redis.call('HGET', KEYS[3], 'pending_deadline') or '0') then
    redis.call('HSET', KEYS[3], 'pending_deadline', deadline)
  end
  redis.call('EXPIRE', KEYS[4], ARGV[11])
end
redis.call('EXPIRE', KEYS[2], ARGV[11])
redis.call('EXPIRE', KEYS[3], ARGV[11])
schedule(KEYS[3], KEYS[4], KEYS[8], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), now)
return {1, seq}
"""
)

ADD_TRANSCRIPT = (
    _PRELUDE
    + """
-- KEYS: meta pending texts due
-- ARGV: message_id transcript_json member window max_wait max_size texts_ttl
local now = now_seconds()
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[7])
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then
  schedule(KEYS[1], KEYS[2], KEYS[4], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), now)
  return 1
end
return 0
"""
)

SCAN = (
    _PRELUDE
    + """
-- KEYS: due claims   ARGV: limit
local now = now_seconds()
return {
  redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1]),
  redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[1]),
}
"""
)

CLAIM = (
    _PRELUDE
    + """
-- KEYS: due claims items meta pending flushing_items flushing_meta inbound_seq
-- ARGV: member lease max_size window state_ttl
local now = now_seconds()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > now then return 0 end
-- the previous burst is still being published: keep bursts in order
if redis.call('EXISTS', KEYS[7]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
local m = redis.call('HMGET', KEYS[4], 'last_at', 'count')
local reason = 'quiet'
if tonumber(m[2]) >= tonumber(ARGV[3]) then
  reason = 'max_size'
elseif now < tonumber(m[1]) + tonumber(ARGV[4]) then
  reason = 'max_wait'
end
redis.call('RENAME', KEYS[3], KEYS[6])
redis.call('RENAME', KEYS[4], KEYS[7])
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[7], 'inbound_seq', redis.call('GET', KEYS[8]) or 0, 'reason', reason, 'claimed_at', now)
redis.call('EXPIRE', KEYS[6], ARGV[5])
redis.call('EXPIRE', KEYS[7], ARGV[5])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

RECLAIM = (
    _PRELUDE
    + """
-- KEYS: claims   ARGV: member lease
local now = now_seconds()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

COMPLETE = """
-- KEYS: claims flushing_items flushing_meta texts   ARGV: member message_ids...
redis.call('DEL', KEYS[2], KEYS[3])
for i = 2, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

DROP_BURST = """
-- KEYS: items meta pending due inbound_seq answered_seq   ARGV: member state_ttl
-- A human took over: forget the burst being collected, and move the inbound counter on so that a reply
-- already being generated is superseded instead of sent.
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('SET', KEYS[5], redis.call('GET', KEYS[6]) or 0)
end
redis.call('INCR', KEYS[5])
redis.call('EXPIRE', KEYS[5], ARGV[2])
return 1
"""
