-- KEYS: meta, types. ARGV: fence, now, key base ('<prefix>:{tag}:k:').
-- Reply {0, keys deleted}, {1, fence}, {4, key}.
local meta, types = KEYS[1], KEYS[2]
local exists = redis.call('EXISTS', meta) == 1
local cur = fence_now(meta, exists)
local fence = fence_of(cur, ARGV[1])
if not fence then return {1, cur} end
if not exists then return {0, 0} end
if foreign(types, 'set') then return {4, types} end
local keys, n = {}, 0
for _, t in ipairs(redis.call('SMEMBERS', types)) do
  local key = ARGV[3] .. t
  if foreign(key, 'hash') then return {4, key} end
  n = n + redis.call('HLEN', key)
  keys[#keys + 1] = key
end
keys[#keys + 1] = types
redis.call('UNLINK', unpack(keys))
redis.call('HSET', meta, 'f', fence, 'u', ARGV[2])
return {0, n}
