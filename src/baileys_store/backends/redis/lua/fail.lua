-- KEYS: oc, o, b, d. ARGV: worker, error, max attempts, now_ms.
-- Reply {0, attempts} or, once the head entry moved to the dead letters, {2, its seq}; {8}.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {8} end
local b = KEYS[3]
local at = redis.call('HINCRBY', b, 'at', 1)
redis.call('HSET', b, 'ae', ARGV[2])
if at < tonumber(ARGV[3]) then return {0, at} end
local entry = redis.call('LPOP', KEYS[2])
if not entry then return {0, at} end
redis.call('RPUSH', KEYS[4], cmsgpack.pack({entry, ARGV[2], tonumber(ARGV[4])}))
redis.call('HDEL', b, 'at', 'ae')
redis.call('HINCRBY', b, 'dl', 1)
return {2, cmsgpack.unpack(entry)[1]}
