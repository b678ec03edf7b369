-- Before a lease is acquired (both tiers). KEYS: b. ARGV: none. Reply 1 when tokens jumped.
-- The first acquisition in a new master era (see ``enter`` in _hybrid.lua) raises the last
-- token issued (``f``) by 1024: the previous master may have issued tokens it did not
-- replicate, and a token issued twice would let two holders write. ``te`` is the era of ``f``
-- (apart from the cache's ``e``, so a read entering the era first does not hide it). A live
-- lease keeps working (its holder's token is not touched); 1024 exceeds by far the tokens one
-- session can be issued in a replication lag, and keeps fences (token << 32) exact in Lua.
if not ERA_KEY then return 0 end
local era = redis.call('GET', ERA_KEY)
if not era then return 0 end
local r = redis.call('HMGET', KEYS[1], 'te', 'f')
if r[1] == era then return 0 end
redis.call('HSET', KEYS[1], 'te', era)
if r[2] then
  redis.call('HINCRBY', KEYS[1], 'f', 1024)
  return 1
end
return 0
