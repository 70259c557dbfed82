"""The Redis model of presence, as Lua scripts: each decision is atomic.

Keys (``P`` is the key prefix, ``who`` is ``<tenant>:<user>``; tenant and
user ids never hold a colon, a lease name may):

==============================  ============================================
``P leases``                    sorted set ``<who>:<lease>`` -> expiry (ms)
``P grace``                     sorted set ``<who>`` -> offline deadline (ms)
``P user:<who>``                hash: ``status``, ``at`` (last transition),
                                ``seen`` (last sign of life), ``off`` (the
                                pending offline deadline, while in grace)
``P conns:<who>``               sorted set ``<lease>`` -> expiry (ms)
``P gone:<who>:<lease>``        a closed socket, for one TTL
==============================  ============================================

A lease is one socket (``<gateway>/<connection>``). Every time is the Redis
server's clock, so replicas and gateways never compare clocks, and a user's
transitions get strictly increasing ``at`` times (the latest one wins).

Known shortcoming: standalone Redis (or one primary) only. The scripts build
key names inside rather than receiving them all as KEYS, and one sorted set
holds every tenant's leases, which Redis Cluster refuses. Running on a cluster
takes hash-tagged keys per shard and a sweep per shard.
"""

from __future__ import annotations

_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live(ckey, now)
  return redis.call('ZCOUNT', ckey, '(' .. now, '+inf')
end
"""

# KEYS: leases, grace
# ARGV: prefix, ttl ms, grace ms, keep ms, tenant,
#       n, (user, lease) * n to touch, m, (user, lease) * m to drop
# Returns the online transitions: (user, 'online', at, seen) * k
REPORT = (
    _PRELUDE
    + """
local leases, grace = KEYS[1], KEYS[2]
local prefix, tenant = ARGV[1], ARGV[5]
local ttl, grace_ms, keep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local out = {}

local function touch(user, lease)
  local who = tenant .. ':' .. user
  if redis.call('EXISTS', prefix .. 'gone:' .. who .. ':' .. lease) == 1 then
    return  -- a late heartbeat of a socket already reported closed
  end
  local ukey, ckey = prefix .. 'user:' .. who, prefix .. 'conns:' .. who
  local expires = now + ttl
  redis.call('ZADD', ckey, expires, lease)
  redis.call('PEXPIRE', ckey, 2 * ttl)
  redis.call('ZADD', leases, expires, who .. ':' .. lease)
  local state = redis.call('HMGET', ukey, 'status', 'at', 'off')
  redis.call('HSET', ukey, 'seen', now)
  if state[3] then
    -- Back within the grace: the offline never happened, so no online either.
    redis.call('HDEL', ukey, 'off')
    redis.call('ZREM', grace, who)
  elseif state[1] ~= 'online' then
    local at = math.max(now, (tonumber(state[2]) or 0) + 1)
    redis.call('HSET', ukey, 'status', 'online', 'at', at)
    table.insert(out, user)
    table.insert(out, 'online')
    table.insert(out, at)
    table.insert(out, now)
  end
  redis.call('PEXPIRE', ukey, keep)
end

local function drop(user, lease)
  local who = tenant .. ':' .. user
  local ukey, ckey = prefix .. 'user:' .. who, prefix .. 'conns:' .. who
  redis.call('SET', prefix .. 'gone:' .. who .. ':' .. lease, '1', 'PX', ttl)
  redis.call('ZREM', leases, who .. ':' .. lease)
  if redis.call('ZREM', ckey, lease) == 0 then
    return  -- unknown, or its lease already expired
  end
  redis.call('HSET', ukey, 'seen', now)
  redis.call('PEXPIRE', ukey, keep)
  if live(ckey, now) > 0 then
    return  -- another device is still here
  end
  local state = redis.call('HMGET', ukey, 'status', 'off')
  if state[1] == 'online' and not state[2] then
    local deadline = now + grace_ms
    redis.call('HSET', ukey, 'off', deadline)
    redis.call('ZADD', grace, deadline, who)
  end
end

local i = 6
for _ = 1, tonumber(ARGV[i]) do
  touch(ARGV[i + 1], ARGV[i + 2])
  i = i + 2
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  drop(ARGV[i + 1], ARGV[i + 2])
  i = i + 2
end
return out
"""
)

# KEYS: leases, grace
# ARGV: prefix, limit
# Claims (removes) up to ``limit`` expired leases and ended graces, so two
# replicas sweeping at once never both announce the same offline.
# Returns {expired, ended, next due ms or -1, leases, pending,
#          {(tenant, user, 'offline', at, seen, cause) * k}}
SWEEP = (
    _PRELUDE
    + """
local leases, grace = KEYS[1], KEYS[2]
local prefix, limit = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local out = {}

-- ``at`` is when the user went offline by the rules: the lease's expiry,
-- or the end of the grace.
local function offline(tenant, user, at, cause)
  local who = tenant .. ':' .. user
  local ukey = prefix .. 'user:' .. who
  local state = redis.call('HMGET', ukey, 'status', 'at', 'seen', 'off')
  if state[1] ~= 'online' or state[4] then
    return  -- already offline, or in a grace that will decide
  end
  if live(prefix .. 'conns:' .. who, now) > 0 then
    return
  end
  at = math.max(at, (tonumber(state[2]) or 0) + 1)
  redis.call('HSET', ukey, 'status', 'offline', 'at', at)
  for _, v in ipairs({tenant, user, 'offline', at, state[3] or at, cause}) do
    table.insert(out, v)
  end
end

local due = redis.call(
  'ZRANGEBYSCORE', leases, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for j = 1, #due, 2 do
  local member, expiry = due[j], tonumber(due[j + 1])
  redis.call('ZREM', leases, member)
  local tenant, user, lease = string.match(member, '^([^:]+):([^:]+):(.+)$')
  if tenant then
    local ckey = prefix .. 'conns:' .. tenant .. ':' .. user
    local score = redis.call('ZSCORE', ckey, lease)
    if score and tonumber(score) <= now then
      redis.call('ZREM', ckey, lease)
    end
    offline(tenant, user, expiry, 'expired')
  end
end

local ended = redis.call('ZRANGEBYSCORE', grace, '-inf', now, 'LIMIT', 0, limit)
for _, who in ipairs(ended) do
  redis.call('ZREM', grace, who)
  local tenant, user = string.match(who, '^([^:]+):(.+)$')
  local ukey = prefix .. 'user:' .. who
  local deadline = tonumber(redis.call('HGET', ukey, 'off'))
  if tenant and deadline then
    redis.call('HDEL', ukey, 'off')
    offline(tenant, user, deadline, 'disconnected')
  end
end

local next_due = -1
for _, key in ipairs({leases, grace}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local score = tonumber(first[2])
    if next_due < 0 or score < next_due then
      next_due = score
    end
  end
end
return {
  #due / 2, #ended, next_due, now,
  redis.call('ZCARD', leases), redis.call('ZCARD', grace), out
}
"""
)

# ARGV: prefix, tenant, user ids...
# Returns (status, seen ms or '') per user. A lease that expired or a grace
# that ended is honoured here even before a sweep has announced it.
QUERY = (
    _PRELUDE
    + """
local prefix, tenant = ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
for i = 3, #ARGV do
  local who = tenant .. ':' .. ARGV[i]
  local state = redis.call('HMGET', prefix .. 'user:' .. who, 'status', 'seen', 'off')
  local status = 'offline'
  if state[1] == 'online' then
    if state[3] then
      if tonumber(state[3]) > now then
        status = 'online'
      end
    elseif live(prefix .. 'conns:' .. who, now) > 0 then
      status = 'online'
    end
  end
  table.insert(out, status)
  table.insert(out, state[2] or '')
end
return out
"""
)
