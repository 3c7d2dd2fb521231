"""The Lua scripts that make every debounce state change atomic.

Time comes from Redis (`TIME`), never from a replica's clock, so replicas with skewed clocks agree on when a
burst is due; every script's first argument may carry "now" instead (an injected clock, in tests). A
conversation's burst state is four keys: `items` (message id -> "<arrival seq>|<json>"), `meta` (first_at,
last_at, count, chat_id, push_name, pending_deadline), `pending` (voice notes still being transcribed) and
`texts` (transcripts, which may arrive before their voice note does). Two global sorted sets say what is due
(`due`: conversation -> due time) and what a replica is publishing (`claims`: conversation -> lease expiry).
A claimed burst is renamed to `flushing:*` keys, so the next burst can start at once while the claimed one is
published, and a crashed publisher's burst is republished by any replica when its lease ends. The claim's
token in `flushing:meta` names the replica that may finish it: a publisher that stalled past its lease and
lost the claim can no longer touch what came after.

redis-py repeats a command whose connection broke before its answer came, not knowing whether Redis ran it.
So every script here is safe to run twice: a repeated message is seen, a repeated claim finds its own
token and answers what the first run did, a repeated transcript or completion changes nothing more.
"""

from __future__ import annotations

_PRELUDE = """
local function now_seconds(given)
  if given ~= '' then return tonumber(given) end
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

-- What a publisher needs, read in the same step as its claim: the burst, its transcripts, and a pause.
local function claimed(flushing_items, flushing_meta, texts, paused)
  return {1, redis.call('HGETALL', flushing_items), redis.call('HGETALL', flushing_meta),
          redis.call('HGETALL', texts), redis.call('GET', paused) or ''}
end
"""

ADD_MESSAGE = (
    _PRELUDE
    + """
-- KEYS: seen items meta pending texts inbound_seq answered_seq due paused
-- ARGV: now message_id item_json is_audio chat_id push_name member window max_wait max_size
--       transcription_timeout state_ttl traceparent
-- Returns {1, seq} when buffered, {0, 0} when seen before, {2, 0} when remembered but not buffered (paused).
local now = now_seconds(ARGV[1])
if redis.call('SADD', KEYS[1], ARGV[2]) == 0 then return {0, 0} end
redis.call('EXPIRE', KEYS[1], ARGV[12])
if redis.call('EXISTS', KEYS[9]) == 1 then return {2, 0} end
-- a counter that expired restarts from the llm's answered watermark, never below it
if redis.call('EXISTS', KEYS[6]) == 0 then
  redis.call('SET', KEYS[6], redis.call('GET', KEYS[7]) or 0)
end
local seq = redis.call('INCR', KEYS[6])
redis.call('EXPIRE', KEYS[6], ARGV[12])
redis.call('HSET', KEYS[2], ARGV[2], seq .. '|' .. ARGV[3])
redis.call('HSETNX', KEYS[3], 'first_at', now)
-- the burst continues the trace of its first message, so one trace runs from webhook to reply
if ARGV[13] ~= '' then redis.call('HSETNX', KEYS[3], 'traceparent', ARGV[13]) end
redis.call('HSET', KEYS[3], 'last_at', now, 'chat_id', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], 'push_name', ARGV[6]) end
redis.call('HINCRBY', KEYS[3], 'count', 1)
if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[5], ARGV[2]) == 0 then
  redis.call('SADD', KEYS[4], ARGV[2])
  local deadline = now + tonumber(ARGV[11])
  if deadline > tonumber(redis.call('HGET', KEYS[3], 'pending_deadline') or '0') then
    redis.call('HSET', KEYS[3], 'pending_deadline', deadline)
  end
  redis.call('EXPIRE', KEYS[4], ARGV[12])
end
redis.call('EXPIRE', KEYS[2], ARGV[12])
redis.call('EXPIRE', KEYS[3], ARGV[12])
schedule(KEYS[3], KEYS[4], KEYS[8], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), now)
return {1, seq}
"""
)

ADD_TRANSCRIPT = (
    _PRELUDE
    + """
-- KEYS: meta pending texts due
-- ARGV: now message_id transcript_json member window max_wait max_size texts_ttl
local now = now_seconds(ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[8])
if redis.call('SREM', KEYS[2], ARGV[2]) == 1 then
  schedule(KEYS[1], KEYS[2], KEYS[4], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), now)
  return 1
end
return 0
"""
)

SCAN = (
    _PRELUDE
    + """
-- KEYS: due claims   ARGV: now limit
-- Returns the due conversations, the expired claims, and the seconds until the next burst or lease after
-- them falls due (-1: none).
local now = now_seconds(ARGV[1])
local wait = -1
for _, key in ipairs(KEYS) do
  local at = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2]
  if at and (wait < 0 or tonumber(at) - now < wait) then wait = tonumber(at) - now end
end
return {
  redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2]),
  redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[2]),
  tostring(wait),
}
"""
)

CLAIM = (
    _PRELUDE
    + """
-- KEYS: due claims items meta pending flushing_items flushing_meta inbound_seq texts paused last_cut
-- ARGV: now member lease max_size window state_ttl token burst_id
-- a repeat of this claim (redis-py retries a command whose answer was lost) answers what the first one did
if redis.call('HGET', KEYS[7], 'claim_token') == ARGV[7] then
  return claimed(KEYS[6], KEYS[7], KEYS[9], KEYS[10])
end
local now = now_seconds(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) > now then return {0} end
-- the previous burst is still being published: keep bursts in order
if redis.call('EXISTS', KEYS[7]) == 1 then return {0} end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return {0}
end
local m = redis.call('HMGET', KEYS[4], 'last_at', 'count')
local reason = 'quiet'
if tonumber(m[2]) >= tonumber(ARGV[4]) then
  reason = 'max_size'
elseif now < tonumber(m[1]) + tonumber(ARGV[5]) then
  reason = 'max_wait'
end
redis.call('RENAME', KEYS[3], KEYS[6])
redis.call('RENAME', KEYS[4], KEYS[7])
redis.call('DEL', KEYS[5])
local seq = redis.call('GET', KEYS[8]) or 0
-- the burst names the one cut before it, so the llm can wait for that one if it has not arrived yet
redis.call('HSET', KEYS[7], 'inbound_seq', seq, 'reason', reason, 'claimed_at', now,
           'claim_token', ARGV[7], 'burst_id', ARGV[8], 'previous_seq', redis.call('GET', KEYS[11]) or '')
redis.call('SET', KEYS[11], seq, 'EX', ARGV[6])
redis.call('EXPIRE', KEYS[6], ARGV[6])
redis.call('EXPIRE', KEYS[7], ARGV[6])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
return claimed(KEYS[6], KEYS[7], KEYS[9], KEYS[10])
"""
)

RECLAIM = (
    _PRELUDE
    + """
-- KEYS: claims flushing_items flushing_meta texts paused   ARGV: now member lease token
-- Takes over a claim whose lease ran out; the new token makes the stalled publisher's COMPLETE a no-op.
if redis.call('HGET', KEYS[3], 'claim_token') == ARGV[4] then
  return claimed(KEYS[2], KEYS[3], KEYS[4], KEYS[5])
end
local now = now_seconds(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) > now then return {0} end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return {0}
end
redis.call('HSET', KEYS[3], 'claim_token', ARGV[4])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
return claimed(KEYS[2], KEYS[3], KEYS[4], KEYS[5])
"""
)

COMPLETE = """
-- KEYS: claims flushing_items flushing_meta texts   ARGV: member token message_ids...
-- Only the holder of the claim may finish it: a stale publisher would delete the next burst's state.
if redis.call('HGET', KEYS[3], 'claim_token') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
for i = 3, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
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
