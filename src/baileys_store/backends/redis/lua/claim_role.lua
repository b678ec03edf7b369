-- KEYS: role key. ARGV: role. Reply: the role the prefix has (ARGV[1] when it had none).
local r = redis.call('GET', KEYS[1])
if r then return r end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
