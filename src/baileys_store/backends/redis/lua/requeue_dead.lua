-- Dead letters back into the outbox: only the records the cache shows are still current.
-- KEYS: b, m, o, d, k:types... ARGV: token, now_ms, dead letters seen, key body ('' = none),
-- creds blob ('' = none), creds version, fence, then per type key: n, n x (id, expected blob)
-- ('' expected = a tombstone). Reply {0, last seq, pending}, {1, issued} or {3}: changed
-- since the caller read them (read again).
local b, m, o, d = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if stale(b, ARGV[1]) then return {1, issued(b)} end
if redis.call('LLEN', d) ~= tonumber(ARGV[3]) then return {3} end
local i = 8
for k = 5, #KEYS do
  local n = tonumber(ARGV[i])
  i = i + 1
  for j = 1, n do
    if redis.call('HGET', KEYS[k], ARGV[i]) ~= ARGV[i + 1] then return {3} end
    i = i + 2
  end
end
if ARGV[5] ~= '' then
  local row = redis.call('HMGET', m, 'creds', 'v')
  if row[1] ~= ARGV[5] or row[2] ~= ARGV[6] then return {3} end
end
local token, now = tonumber(ARGV[1]) or 0, tonumber(ARGV[2])
if ARGV[4] ~= '' or ARGV[5] ~= '' then seed(b, ARGV[2]) end
local oa = tonumber(redis.call('HGET', b, 'oa') or '0')
local seq = tonumber(redis.call('HGET', b, 'os') or '0')
if seq <= oa and (ARGV[4] ~= '' or ARGV[5] ~= '') then redis.call('HSET', b, 'ot', now) end
if ARGV[4] ~= '' then
  seq = redis.call('HINCRBY', b, 'os', 1)
  redis.call('RPUSH', o, cmsgpack.pack({seq, 'k', token, now, ARGV[4]}))
end
if ARGV[5] ~= '' then
  seq = redis.call('HINCRBY', b, 'os', 1)
  redis.call('RPUSH', o, cmsgpack.pack({seq, 'c', token, now, ARGV[5], tonumber(ARGV[6]),
                                        tonumber(ARGV[7])}))
end
redis.call('DEL', d)
redis.call('HDEL', b, 'dl')
return {0, seq, seq - oa}
