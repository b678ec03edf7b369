-- KEYS: oc, o, b, m, t, z. ARGV: worker, n applied, last seq, ttl, key base.
-- Reply {0, pending} or {8}. Once drained: tombstones removed, TTLs back, claim released.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {8} end
local o, b, m, types, z = KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if tonumber(ARGV[2]) > 0 then redis.call('LTRIM', o, tonumber(ARGV[2]), -1) end
redis.call('HSET', b, 'oa', ARGV[3])
redis.call('HDEL', b, 'at', 'ae')
local left = tonumber(redis.call('HGET', b, 'os') or '0') - tonumber(ARGV[3])
if left > 0 then
  local head = redis.call('LINDEX', o, 0)
  if head then redis.call('HSET', b, 'ot', cmsgpack.unpack(head)[4]) end
  return {0, left}
end
if tonumber(redis.call('HGET', b, 'dl') or '0') > 0 then
  -- dead letters: keep tombstones and no TTLs (the cache holds what the durable tier lacks)
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', b, 'ot')
  return {0, 0}
end
for _, member in ipairs(redis.call('SMEMBERS', z)) do
  local cut = string.find(member, '\0', 1, true)
  local key = ARGV[5] .. string.sub(member, 1, cut - 1)
  local id = string.sub(member, cut + 1)
  if redis.call('HGET', key, id) == '' then redis.call('HDEL', key, id) end
end
redis.call('DEL', z, KEYS[1])
redis.call('HDEL', b, 'ot')
if redis.call('TYPE', types)['ok'] == 'set' then
  for _, t in ipairs(redis.call('SMEMBERS', types)) do
    redis.call('PEXPIRE', ARGV[5] .. t, ARGV[4])
  end
  redis.call('PEXPIRE', types, ARGV[4])
end
if redis.call('EXISTS', m) == 1 then redis.call('PEXPIRE', m, ARGV[4]) end
return {0, 0}
