-- KEYS: m, b. ARGV: token, stamp ('' = an update, which bumps the stamp), ttl, blob ('' = the
-- session has no creds), version. Reply {0}, {1, issued}, {4, key}, {5} or {7}.
local m, b = KEYS[1], KEYS[2]
if stale(b, ARGV[1]) then return {1, issued(b)} end
enter(b, true)
if ARGV[2] ~= '' and (redis.call('HGET', b, 'w') or '0') ~= ARGV[2] then return {5} end
if foreign(m, 'hash') then return {4, m} end
if ARGV[2] == '' and pending(b) then return {7} end
local hold = held(b)
if ARGV[4] == '' then
  redis.call('HDEL', m, 'creds')
  redis.call('HSET', m, 'v', ARGV[5])
else
  redis.call('HSET', m, 'creds', ARGV[4], 'v', ARGV[5])
end
keep(m, ARGV[3], hold)
if ARGV[2] == '' then redis.call('HINCRBY', b, 'w', 1) end
return {0}
