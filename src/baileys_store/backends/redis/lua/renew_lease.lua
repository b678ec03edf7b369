-- KEYS: l. ARGV: owner, token, ttl_ms. Reply 1 (renewed) or 0 (not held).
local r = redis.call('HMGET', KEYS[1], 'o', 't')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
