-- KEYS: oc, o, b. ARGV: worker, claim_ms, n. Reply {1, entries, os, oa, attempts} or {8}.
local c = redis.call('GET', KEYS[1])
if c and c ~= ARGV[1] then return {8} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local r = redis.call('HMGET', KEYS[3], 'os', 'oa', 'at')
local entries = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return {1, entries, r[1] or '0', r[2] or '0', r[3] or '0'}
