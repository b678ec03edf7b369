-- KEYS: hash, b. ARGV: ids. Reply: {stamp, values}.
return {redis.call('HGET', KEYS[2], 'w') or '0', redis.call('HMGET', KEYS[1], unpack(ARGV))}
