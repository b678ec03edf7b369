-- KEYS: meta, types, then one hash per written type (same order as the groups in ARGV).
-- ARGV: fence, now, may_create, then per type: name, n_upserts, n_deletes, id, blob, ..., id, ...
-- Reply {0, 1 created / 0}, {1, fence}, {2} (index first), {4, key}.
local meta, types = KEYS[1], KEYS[2]
local exists = redis.call('EXISTS', meta) == 1
local refused, fence = admit(meta, types, exists, ARGV[3], ARGV[1])
if refused then return refused end
local i, names = 4, {}
for k = 3, #KEYS do
  names[#names + 1] = ARGV[i]
  i = i + 3 + 2 * tonumber(ARGV[i + 1]) + tonumber(ARGV[i + 2])
end
redis.call('SADD', types, unpack(names))
i = 4
for k = 3, #KEYS do
  i = apply_group(KEYS[k], i)
end
redis.call('HSET', meta, 'f', fence, 'u', ARGV[2])
if not exists then created(meta, ARGV[2]) end
return {0, exists and 0 or 1}
