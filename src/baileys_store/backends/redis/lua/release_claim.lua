-- KEYS: oc. ARGV: worker. Drops the claim if the worker holds it (compare-and-delete).
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
