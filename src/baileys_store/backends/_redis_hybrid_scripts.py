"""Lua scripts of the hybrid Redis cache: guarded fills, fenced updates, the transactional outbox.

Per session (all keys carry the session's hash tag, so each script runs on one Cluster node):

- ``m`` hash ``creds``/``v`` (cached creds; ``v`` alone: the session is known to have none),
  ``t`` set of cached key types, ``k:<type>`` hash id -> blob (``""`` = a tombstone: a delete
  not yet drained to the durable tier);
- ``b`` bookkeeping, never expires: ``f`` last lease token issued, ``w`` write stamp (bumped by
  every write, so a fill prepared before a write is skipped), ``os``/``oa`` last outbox sequence
  appended / applied, ``ot`` time of the oldest pending entry, ``at``/``ae`` failed attempts and
  last error of the head entry, ``dl`` dead letters held;
- ``o`` outbox list (msgpack ``[seq, kind, token, time_ms, body, (version)]``), ``oc`` a worker's
  claim on it, ``z`` tombstones to remove once drained, ``d`` dead letters. Each entry also
  carries the durable fence its writer would have used (inside ``body`` for key writes, last
  for creds), so the worker's apply raises the durable fence past any write of that writer
  that lands late.

While outbox entries are pending the cache holds the only copy of their data: every key they
touched is persisted (no TTL) until the worker has drained the session, then expires again.
The same holds while the session has dead letters (``dl`` > 0): the cache keeps serving the
acknowledged values the durable tier did not take (tombstones included), the session's cache
is not dropped, and ``REQUEUE`` can tell which dead records are still current.
"""

from __future__ import annotations

from ._redis_scripts import _PRELUDE

OK, FENCED, CONFLICT, WRONG_TYPE = 0, 1, 3, 4
SKIPPED = 5  # a fill whose stamp is stale
NO_VERSION = 6  # write-behind creds save: the cache does not know the current version
PENDING = 7  # a write-through update / drop while outbox entries are pending
NOT_CLAIMED = 8  # the worker's claim expired or belongs to another worker

_HYBRID = (
    _PRELUDE
    + """
local function issued(b) return tonumber(redis.call('HGET', b, 'f') or '0') end
local function stale(b, token) return token ~= '' and tonumber(token) < issued(b) end
local function pending(b)
  local r = redis.call('HMGET', b, 'os', 'oa')
  return tonumber(r[1] or '0') > tonumber(r[2] or '0')
end
local function dead(b) return tonumber(redis.call('HGET', b, 'dl') or '0') > 0 end
-- A session with no bookkeeping (new, or lost with the rest of Redis) starts its outbox
-- sequences at now_ms << 10: above any sequence the durable tier applied before, so new
-- entries are never skipped as redeliveries. Exact: ~2^51, below Lua's 2^53.
local function seed(b, now_ms)
  if redis.call('HEXISTS', b, 'os') == 0 then
    local s = string.format('%.0f', tonumber(now_ms) * 1024)
    redis.call('HSET', b, 'os', s, 'oa', s)
  end
end
local function held(b) return pending(b) or dead(b) end
local function keep(key, ttl, hold)
  if hold then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ttl) end
end
-- Apply the groups from ARGV[i] to KEYS[3..] and give them (and `types`) the TTL, or none.
local function apply_kept(types, i, ttl, hold)
  for k = 3, #KEYS do
    redis.call('SADD', types, ARGV[i])
    i = apply_group(KEYS[k], i)
    keep(KEYS[k], ttl, hold)
  end
  keep(types, ttl, hold)
end
-- Evict what the session has cached (its type hashes, its type set, its creds), not `b`.
local function evict(m, types, base)
  local keys = {types}
  if redis.call('TYPE', types)['ok'] == 'set' then
    for _, t in ipairs(redis.call('SMEMBERS', types)) do keys[#keys + 1] = base .. t end
  end
  redis.call('UNLINK', unpack(keys))
  if redis.call('TYPE', m)['ok'] == 'hash' then redis.call('HDEL', m, 'creds', 'v') end
end
"""
)

# KEYS: hash, b. ARGV: ids. Reply: {stamp, values}.
READ = """
return {redis.call('HGET', KEYS[2], 'w') or '0', redis.call('HMGET', KEYS[1], unpack(ARGV))}
"""

# KEYS: m, b. Reply: {stamp, creds, version}.
READ_CREDS = """
local r = redis.call('HMGET', KEYS[1], 'creds', 'v')
return {redis.call('HGET', KEYS[2], 'w') or '0', r[1], r[2]}
"""

# KEYS: b, t, k:types... ARGV: token, stamp, ttl, groups (upserts only).
FILL = (
    _HYBRID
    + """
local b, types = KEYS[1], KEYS[2]
if stale(b, ARGV[1]) then return {1, issued(b)} end
if (redis.call('HGET', b, 'w') or '0') ~= ARGV[2] then return {5} end
local bad = check_types(types, 3)
if bad then return {4, bad} end
apply_kept(types, 4, ARGV[3], held(b))
return {0}
"""
)

# KEYS: b, t, k:types... ARGV: token, ttl, groups. After a durable write (write-through).
UPDATE = (
    _HYBRID
    + """
local b, types = KEYS[1], KEYS[2]
if stale(b, ARGV[1]) then return {1, issued(b)} end
if pending(b) then return {7} end
local bad = check_types(types, 3)
if bad then return {4, bad} end
apply_kept(types, 3, ARGV[2], dead(b))
redis.call('HINCRBY', b, 'w', 1)
return {0}
"""
)

# KEYS: m, b. ARGV: token, stamp ('' = an update, which bumps the stamp), ttl, blob ('' = the
# session has no creds), version.
PUT_CREDS = (
    _HYBRID
    + """
local m, b = KEYS[1], KEYS[2]
if stale(b, ARGV[1]) then return {1, issued(b)} end
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
"""
)

# KEYS: m, t, b, d, z. ARGV: token, key base, wipe ('1': the session is being cleared or
# deleted, so its dead letters go too). Evicts the session (not its bookkeeping).
# Reply {0, 1 when dead letters were discarded, else 0}.
DROP = (
    _HYBRID
    + """
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
"""
)

# Write-behind keys. KEYS: b, t, o, z, k:types... ARGV: token, now_ms, body, groups.
# Deletes become tombstones, so a read never falls through to the not yet updated durable tier.
WB_KEYS = (
    _HYBRID
    + """
local b, types, o, z = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if stale(b, ARGV[1]) then return {1, issued(b)} end
local bad = check_types(types, 5)
if bad then return {4, bad} end
seed(b, ARGV[2])
local seq = redis.call('HINCRBY', b, 'os', 1)
local oa = tonumber(redis.call('HGET', b, 'oa') or '0')
local token = tonumber(ARGV[1]) or 0
redis.call('RPUSH', o, cmsgpack.pack({seq, 'k', token, tonumber(ARGV[2]), ARGV[3]}))
if seq - 1 <= oa then redis.call('HSET', b, 'ot', ARGV[2]) end
local i = 4
for k = 5, #KEYS do
  local key, name = KEYS[k], ARGV[i]
  local dels = tonumber(ARGV[i + 2])
  i = upserts(key, i + 3, tonumber(ARGV[i + 1]))
  local done = 0
  while done < dels do  -- in batches: one HSET and one SADD per BATCH tombstones
    local n = math.min(dels - done, BATCH)
    local fields, members = {}, {}
    for j = 0, n - 1 do
      fields[2 * j + 1], fields[2 * j + 2] = ARGV[i + j], ''
      members[j + 1] = name .. '\\0' .. ARGV[i + j]
    end
    redis.call('HSET', key, unpack(fields))
    redis.call('SADD', z, unpack(members))
    i, done = i + n, done + n
  end
  redis.call('SADD', types, name)
  redis.call('PERSIST', key)
end
redis.call('PERSIST', types)
redis.call('HINCRBY', b, 'w', 1)
return {0, seq, seq - oa}
"""
)

# Write-behind creds (compare-and-set on the cached version). KEYS: b, m, o.
# ARGV: token, now_ms, blob, expected ('' = any), durable fence for the entry ('0': none).
WB_CREDS = (
    _HYBRID
    + """
local b, m, o = KEYS[1], KEYS[2], KEYS[3]
if stale(b, ARGV[1]) then return {1, issued(b)} end
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
"""
)

# KEYS: oc, o, b. ARGV: worker, claim_ms, n. Reply {1, entries, os, oa, attempts} or {8}.
CLAIM = """
local c = redis.call('GET', KEYS[1])
if c and c ~= ARGV[1] then return {8} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local r = redis.call('HMGET', KEYS[3], 'os', 'oa', 'at')
local entries = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return {1, entries, r[1] or '0', r[2] or '0', r[3] or '0'}
"""

# KEYS: oc, o, b, m, t, z. ARGV: worker, n applied, last seq, ttl, key base.
# Reply {0, pending}. Once drained: tombstones removed, TTLs back, claim released.
ACK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {8} end
local o, b, m, types, z = KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if tonumber(ARGV[2]) > 0 then redis.call('LTRIM', o, tonumber(ARGV[2]), -1) end
redis.call('HSET', b, 'oa', ARGV[3])
redis.call('HDEL', b, 'at', 'ae')
local left = tonumber(redis.call('HGET', b, 'os') or '0') - tonumber(ARGV[3])
if left > 0 then
  local head = redis.call('LINDEX', o, 0)
  if head then redis.call('HSET', b, 'ot', cmsgpack.unpack(head)[4]) end
  return {0, left}
end
if tonumber(redis.call('HGET', b, 'dl') or '0') > 0 then
  -- dead letters: keep tombstones and no TTLs (the cache holds what the durable tier lacks)
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', b, 'ot')
  return {0, 0}
end
for _, member in ipairs(redis.call('SMEMBERS', z)) do
  local cut = string.find(member, '\\0', 1, true)
  local key = ARGV[5] .. string.sub(member, 1, cut - 1)
  local id = string.sub(member, cut + 1)
  if redis.call('HGET', key, id) == '' then redis.call('HDEL', key, id) end
end
redis.call('DEL', z, KEYS[1])
redis.call('HDEL', b, 'ot')
if redis.call('TYPE', types)['ok'] == 'set' then
  for _, t in ipairs(redis.call('SMEMBERS', types)) do
    redis.call('PEXPIRE', ARGV[5] .. t, ARGV[4])
  end
  redis.call('PEXPIRE', types, ARGV[4])
end
if redis.call('EXISTS', m) == 1 then redis.call('PEXPIRE', m, ARGV[4]) end
return {0, 0}
"""

# KEYS: oc, o, b, d. ARGV: worker, error, max attempts, now_ms.
# Reply {0, attempts} or, once the head entry moved to the dead letters, {2, its seq}.
FAIL = """
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
"""

# Dead letters back into the outbox: only the records the cache shows are still current.
# KEYS: b, m, o, d, k:types... ARGV: token, now_ms, dead letters seen, key body ('' = none),
# creds blob ('' = none), creds version, fence, then per type key: n, n x (id, expected blob)
# ('' expected = a tombstone). Reply {0, last seq, pending}, {1, issued} or {3}: changed
# since the caller read them (read again).
REQUEUE = (
    _HYBRID
    + """
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
"""
)
