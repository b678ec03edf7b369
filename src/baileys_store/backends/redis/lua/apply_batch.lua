-- KEYS: meta, types, then one hash per written type. ARGV: fence, now, may_create, seq,
-- creds blob ('' = none), creds version, then the groups as in write_keys.lua.
-- Reply {0, 1 applied / 0 skipped}, {1, fence}, {2} (index first), {4, key}.
local meta, types = KEYS[1], KEYS[2]
local exists = redis.call('EXISTS', meta) == 1
if exists and tonumber(redis.call('HGET', meta, 's') or '0') >= tonumber(ARGV[4]) then
  return {0, 0}
end
local refused, fence = admit(meta, types, exists, ARGV[3], ARGV[1])
if refused then return refused end
local i = 7
for k = 3, #KEYS do
  redis.call('SADD', types, ARGV[i])
  i = apply_group(KEYS[k], i)
end
if ARGV[5] ~= '' then redis.call('HSET', meta, 'creds', ARGV[5], 'v', ARGV[6]) end
redis.call('HSET', meta, 'f', fence, 'u', ARGV[2], 's', ARGV[4])
if not exists then created(meta, ARGV[2]) end
return {0, 1}
