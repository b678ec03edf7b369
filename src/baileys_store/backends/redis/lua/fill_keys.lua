-- KEYS: b, t, k:types... ARGV: token, stamp, ttl, groups (upserts only).
-- Reply {0}, {1, issued}, {4, key} or {5} (stale stamp: skipped).
local b, types = KEYS[1], KEYS[2]
if stale(b, ARGV[1]) then return {1, issued(b)} end
enter(b, true)  -- a new era jumps the stamp: a fill prepared on the old master is skipped
if (redis.call('HGET', b, 'w') or '0') ~= ARGV[2] then return {5} end
local bad = check_types(types, 3)
if bad then return {4, bad} end
apply_kept(types, 4, ARGV[3], held(b))
return {0}
