-- KEYS: m, t, b, d, z. ARGV: token, key base, wipe ('1': the session is being cleared or
-- deleted, so its dead letters go too). Evicts the session (not its bookkeeping).
-- Reply {0, 1 when dead letters were discarded, else 0}, {1, issued} or {7}.
local m, types, b = KEYS[1], KEYS[2], KEYS[3]
if stale(b, ARGV[1]) then return {1, issued(b)} end
if pending(b) then return {7} end
local discarded = 0
if dead(b) then
  if ARGV[3] ~= '1' then return {7} end
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('HDEL', b, 'dl')
  discarded = 1
end
evict(m, types, ARGV[2])
redis.call('HINCRBY', b, 'w', 1)
return {0, discarded}
