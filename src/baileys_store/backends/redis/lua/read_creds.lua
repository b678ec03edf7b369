-- KEYS: m, b. ARGV: none. Reply: {stamp, creds, version, 1 when another era's (held)}.
local suspect = enter(KEYS[2], false)
local r = redis.call('HMGET', KEYS[1], 'creds', 'v')
return {redis.call('HGET', KEYS[2], 'w') or '0', r[1], r[2], suspect and 1 or 0}
