-- KEYS: l. ARGV: owner, token. Reply 1 (released) or 0 (not held).
local r = redis.call('HMGET', KEYS[1], 'o', 't')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
