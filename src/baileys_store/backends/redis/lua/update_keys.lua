-- KEYS: b, t, k:types... ARGV: token, ttl, groups. After a durable write (write-through).
-- Reply {0}, {1, issued}, {4, key} or {7} (outbox entries pending).
local b, types = KEYS[1], KEYS[2]
if stale(b, ARGV[1]) then return {1, issued(b)} end
if pending(b) then return {7} end
enter(b, true)
local bad = check_types(types, 3)
if bad then return {4, bad} end
apply_kept(types, 3, ARGV[2], dead(b))
redis.call('HINCRBY', b, 'w', 1)
return {0}
