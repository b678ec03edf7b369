-- KEYS: meta. ARGV: token. Reply {0} or {1, current}. A session without a meta hash keeps the
-- token in its fence tombstone (and is not created).
local exists = redis.call('EXISTS', KEYS[1]) == 1
local cur = fence_now(KEYS[1], exists)
if tonumber(ARGV[1]) < tonumber(cur) then return {1, cur} end
if exists then redis.call('HSET', KEYS[1], 'f', ARGV[1])
else redis.call('SET', tomb(KEYS[1]), ARGV[1]) end
return {0}
