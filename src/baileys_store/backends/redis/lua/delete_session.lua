-- KEYS: meta, types. ARGV: fence, key base. Reply {0, 1 if anything existed}, {1, fence},
-- {4, key}. The session's fence (or the higher token given) stays behind in its tombstone.
local meta, types = KEYS[1], KEYS[2]
local cur = fence_now(meta, redis.call('EXISTS', meta) == 1)
local fence = fence_of(cur, ARGV[1])
if not fence then return {1, cur} end
if foreign(types, 'set') then return {4, types} end
local keys = {meta, types}
for _, t in ipairs(redis.call('SMEMBERS', types)) do keys[#keys + 1] = ARGV[2] .. t end
local found = redis.call('UNLINK', unpack(keys)) > 0
if tonumber(fence) > 0 then redis.call('SET', tomb(meta), fence) end
return {0, found and 1 or 0}
