-- KEYS: m, b. ARGV: none. Reply: {stamp, creds, version}.
local r = redis.call('HMGET', KEYS[1], 'creds', 'v')
return {redis.call('HGET', KEYS[2], 'w') or '0', r[1], r[2]}
