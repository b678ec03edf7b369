-- Write-behind creds (compare-and-set on the cached version). KEYS: b, m, o.
-- ARGV: token, now_ms, blob, expected ('' = any), durable fence for the entry ('0': none).
-- Reply {0, version, seq, pending}, {1, issued}, {3, version}, {4, key} or {6} (no version).
local b, m, o = KEYS[1], KEYS[2], KEYS[3]
if stale(b, ARGV[1]) then return {1, issued(b)} end
enter(b, true)
if foreign(m, 'hash') then return {4, m} end
local row = redis.call('HMGET', m, 'v', 'creds')
if not row[1] then return {6} end
local v = tonumber(row[1])
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= v then
  if v == tonumber(ARGV[4]) + 1 and row[2] == ARGV[3] then return {0, v, 0, 0} end
  return {3, v}
end
v = v + 1
redis.call('HSET', m, 'creds', ARGV[3], 'v', v)
redis.call('PERSIST', m)
seed(b, ARGV[2])
local seq = redis.call('HINCRBY', b, 'os', 1)
local oa = tonumber(redis.call('HGET', b, 'oa') or '0')
local token = tonumber(ARGV[1]) or 0
redis.call('RPUSH', o, cmsgpack.pack({seq, 'c', token, tonumber(ARGV[2]), ARGV[3], v,
                                      tonumber(ARGV[5])}))
if seq - 1 <= oa then redis.call('HSET', b, 'ot', ARGV[2]) end
redis.call('HINCRBY', b, 'w', 1)
return {0, v, seq, seq - oa}
