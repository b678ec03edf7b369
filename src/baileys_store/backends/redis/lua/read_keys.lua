-- KEYS: hash, b. ARGV: ids. Reply: {stamp, values, 1 when the values are another era's (held)}.
local suspect = enter(KEYS[2], false)
return {redis.call('HGET', KEYS[2], 'w') or '0', redis.call('HMGET', KEYS[1], unpack(ARGV)),
        suspect and 1 or 0}
