-- Shared Lua functions of the hybrid cache's scripts (after _common.lua): the
-- bookkeeping hash ``b`` (lease tokens, write stamp, outbox sequences, dead letters) and the TTLs.
local function issued(b) return tonumber(redis.call('HGET', b, 'f') or '0') end
local function stale(b, token) return token ~= '' and tonumber(token) < issued(b) end
local function pending(b)
  local r = redis.call('HMGET', b, 'os', 'oa')
  return tonumber(r[1] or '0') > tonumber(r[2] or '0')
end
local function dead(b) return tonumber(redis.call('HGET', b, 'dl') or '0') > 0 end
-- A session with no bookkeeping (new, or lost with the rest of Redis) starts its outbox
-- sequences at now_ms << 10: above any sequence the durable tier applied before, so new
-- entries are never skipped as redeliveries. Exact: ~2^51, below Lua's 2^53.
local function seed(b, now_ms)
  if redis.call('HEXISTS', b, 'os') == 0 then
    local s = string.format('%.0f', tonumber(now_ms) * 1024)
    redis.call('HSET', b, 'os', s, 'oa', s)
  end
end
local function held(b) return pending(b) or dead(b) end
local function keep(key, ttl, hold)
  if hold then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ttl) end
end
-- Apply the groups from ARGV[i] to KEYS[3..] and give them (and `types`) the TTL, or none.
local function apply_kept(types, i, ttl, hold)
  for k = 3, #KEYS do
    redis.call('SADD', types, ARGV[i])
    i = apply_group(KEYS[k], i)
    keep(KEYS[k], ttl, hold)
  end
  keep(types, ttl, hold)
end
-- Evict what the session has cached (its type hashes, its type set, its creds), not `b`.
local function evict(m, types, base)
  local keys = {types}
  if redis.call('TYPE', types)['ok'] == 'set' then
    for _, t in ipairs(redis.call('SMEMBERS', types)) do keys[#keys + 1] = base .. t end
  end
  redis.call('UNLINK', unpack(keys))
  if redis.call('TYPE', m)['ok'] == 'hash' then redis.call('HDEL', m, 'creds', 'v') end
end
-- The master's era: ``ERA_KEY`` (``baileys_store.era``, named before the script by the runner: false
-- in a Cluster) holds the era of this server, written by every client connection when it
-- connects (see _era.py); ``e`` in ``b`` is the era the session's cache was written in. Another
-- era means this server may lack the last writes the previous master acknowledged
-- (asynchronous replication, or a restart from an older file): the session's cached data is
-- evicted, and the write stamp jumps past any stamp the old master handed out, so a fill
-- prepared there is skipped. While write-behind data is held (the only copy) nothing is
-- evicted: ``x`` marks the data for eviction once the outbox is drained, and the caller is told
-- (true) that it reads another era's data. ``tag`` (a write or a fill): record the era even
-- for a session without bookkeeping (a read of such a session only evicts, never creates ``b``,
-- so its stamp stays 0: the reset check of _reset.py relies on that). Limitation: a fill
-- prepared on the old master for a session that has no bookkeeping on the new one (not even
-- its lease) is not told apart from a fill of this era.
local function enter(b, tag)
  if not ERA_KEY then return false end
  local era = redis.call('GET', ERA_KEY)
  if not era then return false end
  local r = redis.call('HMGET', b, 'e', 'x')
  if r[1] == era and not r[2] then return false end
  local hold = held(b)
  if r[1] ~= era then
    if r[1] or redis.call('EXISTS', b) == 1 then
      redis.call('HSET', b, 'e', era)
      redis.call('HINCRBY', b, 'w', 4294967296)
      if hold then redis.call('HSET', b, 'x', '1') end
    elseif tag then
      -- A session without bookkeeping: its stamp is 0, as its reads said; keep it (a fill
      -- that read it must land), only tag the era.
      redis.call('HSET', b, 'e', era)
    end
  end
  if hold then return true end
  local base = string.sub(b, 1, -2)
  evict(base .. 'm', base .. 't', base .. 'k:')
  if r[2] then
    redis.call('HDEL', b, 'x')
    redis.call('HINCRBY', b, 'w', 1)  -- evicted now: a fill prepared before must not land
  end
  return false
end
