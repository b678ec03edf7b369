-- KEYS: meta hash. ARGV: name, value, replace ('1'). Reply: the value stored.
-- One script, so concurrent binders agree.
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) end
return redis.call('HGET', KEYS[1], ARGV[1])
