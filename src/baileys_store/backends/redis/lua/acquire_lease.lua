-- KEYS: l, b, m, t, f (the durable fence tombstone). ARGV: owner, ttl_ms, floor, reset_cache
-- (0/1), key base. Reply {1, token} or {0, pttl} when another owner holds it.
local l, b, m, types = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local holder = redis.call('HGET', l, 'o')
if holder and holder ~= ARGV[1] then return {0, redis.call('PTTL', l)} end
local token = tonumber(redis.call('HGET', b, 'f') or '0')
token = math.max(token, tonumber(ARGV[3]))
if ARGV[4] == '0' then
  -- the durable fence is (token << 32) | counter; a session without a row has a tombstone
  local fence = redis.call('GET', KEYS[5]) or '0'
  if redis.call('TYPE', m)['ok'] == 'hash' then fence = redis.call('HGET', m, 'f') or '0' end
  token = math.max(token, math.floor(tonumber(fence) / 4294967296))
end
token = token + 1
redis.call('HSET', b, 'f', token)
redis.call('HSET', l, 'o', ARGV[1], 't', token)
redis.call('PEXPIRE', l, ARGV[2])
if ARGV[4] == '1' and not held(b) then evict(m, types, ARGV[5]) end
return {1, token}
