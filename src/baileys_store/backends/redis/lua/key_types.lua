-- KEYS: the session's set of key types. ARGV: none. Reply: its members.
return redis.call('SMEMBERS', KEYS[1])
