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
