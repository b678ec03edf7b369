-- KEYS: meta. ARGV: fence ('' = none), now. An empty write: fence check + updated time, only
-- for a session that exists (a touch never creates one; a missing one checks its tombstone).
-- Reply {0} or {1, fence}.
local exists = redis.call('EXISTS', KEYS[1]) == 1
local cur = tonumber(fence_now(KEYS[1], exists))
if ARGV[1] ~= '' and tonumber(ARGV[1]) < cur then return {1, cur} end
if not exists then return {0} end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'f', ARGV[1]) end
redis.call('HSET', KEYS[1], 'u', ARGV[2])
return {0}
