-- KEYS: one type hash. ARGV: none. Reply: its ids.
return redis.call('HKEYS', KEYS[1])
