-- One send, checked and (when allowed) recorded in a single atomic step, so
-- concurrent sends on any number of replicas can never both take the last
-- slot or both pass as the first of two identical bodies.
--
-- KEYS[1]  tenant overrides (hash)        KEYS[2]  user overrides (hash)
-- KEYS[3]  the user's accepted sends (sorted set: message id -> time in µs)
-- KEYS[4]  duplicate marker of (user, conversation, body fingerprint)
-- KEYS[5]  idempotency marker of (user, client_msg_id); unused without one
-- ARGV[1]  message id               ARGV[2]  default limit
-- ARGV[3]  default window (s)       ARGV[4]  default duplicate window (s)
-- ARGV[5]  "1" if the send carries a client_msg_id
-- ARGV[6]  lifetime of an idempotency marker (ms)
--
-- Returns {verdict, original message id or "", limit, window (s),
--          duplicate window (ms), remaining sends, µs until a slot frees}.

-- TIME before a write: Redis 6 must replicate the script's effects, not the
-- script, or a replica would compute another time.
redis.replicate_commands()

local function setting(field, default, lowest)
  local value = tonumber(redis.call('HGET', KEYS[2], field))
  if value == nil or value < lowest then
    value = tonumber(redis.call('HGET', KEYS[1], field))
  end
  if value == nil or value < lowest then
    value = default
  end
  return value
end

local limit = math.floor(setting('limit', tonumber(ARGV[2]), 1))
local window = math.floor(setting('window', tonumber(ARGV[3]), 1))
local duplicate_ms = math.floor(setting('duplicate_window', tonumber(ARGV[4]), 0) * 1000)

-- Redis's clock, not the callers': every replica of the guard agrees.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local window_us = window * 1000000

-- A sliding log: only sends in (now - window, now] count, so no window
-- boundary lets a second burst through.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window_us)
local used = redis.call('ZCARD', KEYS[3])

-- When one more send will fit: once the entry keeping the log full leaves
-- the window (after a limit was lowered, that is not the oldest one).
local function next_slot_us()
  if used == 0 then
    return 0
  end
  local index = math.max(used - limit, 0)
  local entry = redis.call('ZRANGE', KEYS[3], index, index, 'WITHSCORES')
  return math.max(tonumber(entry[2]) + window_us - now, 0)
end

local function answer(verdict, original)
  return {verdict, original, limit, window, duplicate_ms,
          math.max(limit - used, 0), next_slot_us()}
end

if ARGV[5] == '1' then
  local original = redis.call('GET', KEYS[5])
  if original then
    return answer('retry', original)
  end
end
if duplicate_ms > 0 then
  local original = redis.call('GET', KEYS[4])
  if original then
    return answer('duplicate', original)
  end
end
if used >= limit then
  return answer('rate_limited', '')
end

redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('PEXPIRE', KEYS[3], window * 1000)
used = used + 1
if duplicate_ms > 0 then
  redis.call('SET', KEYS[4], ARGV[1], 'PX', duplicate_ms)
end
if ARGV[5] == '1' then
  redis.call('SET', KEYS[5], ARGV[1], 'PX', tonumber(ARGV[6]))
end
return answer('allow', '')
