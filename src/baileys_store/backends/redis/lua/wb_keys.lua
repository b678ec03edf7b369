-- Write-behind keys. KEYS: b, t, o, z, k:types... ARGV: token, now_ms, body, groups.
-- Deletes become tombstones, so a read never falls through to the not yet updated durable tier.
-- Reply {0, seq, pending}, {1, issued} or {4, key}.
local b, types, o, z = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if stale(b, ARGV[1]) then return {1, issued(b)} end
enter(b, true)
local bad = check_types(types, 5)
if bad then return {4, bad} end
seed(b, ARGV[2])
local seq = redis.call('HINCRBY', b, 'os', 1)
local oa = tonumber(redis.call('HGET', b, 'oa') or '0')
local token = tonumber(ARGV[1]) or 0
redis.call('RPUSH', o, cmsgpack.pack({seq, 'k', token, tonumber(ARGV[2]), ARGV[3]}))
if seq - 1 <= oa then redis.call('HSET', b, 'ot', ARGV[2]) end
local i = 4
for k = 5, #KEYS do
  local key, name = KEYS[k], ARGV[i]
  local dels = tonumber(ARGV[i + 2])
  i = upserts(key, i + 3, tonumber(ARGV[i + 1]))
  local done = 0
  while done < dels do  -- in batches: one HSET and one SADD per BATCH tombstones
    local n = math.min(dels - done, BATCH)
    local fields, members = {}, {}
    for j = 0, n - 1 do
      fields[2 * j + 1], fields[2 * j + 2] = ARGV[i + j], ''
      members[j + 1] = name .. '\0' .. ARGV[i + j]
    end
    redis.call('HSET', key, unpack(fields))
    redis.call('SADD', z, unpack(members))
    i, done = i + n, done + n
  end
  redis.call('SADD', types, name)
  redis.call('PERSIST', key)
end
redis.call('PERSIST', types)
redis.call('HINCRBY', b, 'w', 1)
return {0, seq, seq - oa}
