"""Lua scripts of the Redis backend: each write is one script, so it is atomic and one round trip.

Every key a script touches carries the session's hash tag, so a script runs on one Cluster node.
The per-type key names ``<base>k:<type>`` are derived inside ``clear``/``delete``/``drop`` from
the session's set of types, and the fence tombstone ``<base>f`` from the meta key's name; they
share the tag (and so the slot) of the declared keys.

Fence tombstone: a session without a meta hash (deleted, or fenced before its first write) keeps
its fence in the string ``<base>f``, so a stale lease holder cannot resurrect it. Scripts read it
only when the meta hash is missing (the hot path stays one read), and drop it when they create
the session (its fence moves into the meta hash).

A Redis script is not rolled back when a command fails halfway, so every script first does all
its checks (fence, version, key types) with reads, and only then writes (Redis refuses a script
for ``maxmemory`` only at its first write, never halfway). Replies are tables whose first element
is a status code (see ``OK`` ... ``WRONG_TYPE``).
"""

from __future__ import annotations

OK = 0
FENCED = 1  # {1, current_fence}
NEEDS_INDEX = 2  # the session does not exist yet and the caller did not index it first
CONFLICT = 3  # {3, current_version}
WRONG_TYPE = 4  # {4, key}: a key of the session holds another Redis type (foreign data)

# Shared prelude. ``fence_of`` returns the fence to record or nil when ``token`` is stale.
_PRELUDE = """
local function fence_of(current, token)
  if token == '' then return current end
  if tonumber(token) < tonumber(current) then return nil end
  return token
end
-- Values per command built with unpack(): under its stack limit (LUAI_MAXCSTACK, 8000), and
-- few commands per call (each redis.call costs more than the values it carries).
local BATCH = 3000
-- HSET of the `ups` (id, blob) pairs of ARGV from index i to `key`; the index after them.
local function upserts(key, i, ups)
  local done = 0
  while done < ups do
    local n = math.min(ups - done, BATCH)
    redis.call('HSET', key, unpack(ARGV, i, i + 2 * n - 1))
    i, done = i + 2 * n, done + n
  end
  return i
end
-- Applies one group of ARGV (name, n_upserts, n_deletes, id, blob, ..., id, ...) starting at
-- index i to the hash `key`; returns the index after the group.
local function apply_group(key, i)
  local dels = tonumber(ARGV[i + 2])
  i = upserts(key, i + 3, tonumber(ARGV[i + 1]))
  local done = 0
  while done < dels do
    local n = math.min(dels - done, 2 * BATCH)
    redis.call('HDEL', key, unpack(ARGV, i, i + n - 1))
    i, done = i + n, done + n
  end
  return i
end
local function foreign(key, want)
  local t = redis.call('TYPE', key)['ok']
  return t ~= want and t ~= 'none'
end
-- The first of `types` (a set) and KEYS[first..] (hashes) holding another Redis type, or nil.
local function check_types(types, first)
  if foreign(types, 'set') then return types end
  for k = first, #KEYS do
    if foreign(KEYS[k], 'hash') then return KEYS[k] end
  end
  return nil
end
-- The fence tombstone of the session whose meta hash is `meta` ('<base>m' -> '<base>f').
local function tomb(meta) return string.sub(meta, 1, -2) .. 'f' end
-- The session's current fence: the meta hash's, or its tombstone's when it has no meta hash.
local function fence_now(meta, exists)
  if exists then return redis.call('HGET', meta, 'f') or '0' end
  return redis.call('GET', tomb(meta)) or '0'
end
-- A session just created: record its creation time; its fence now lives in the meta hash.
local function created(meta, now)
  redis.call('HSET', meta, 'c', now)
  redis.call('DEL', tomb(meta))
end
-- The checks a durable key write starts with (reads only; KEYS[3..] are its type hashes):
-- the reply that refuses it, or nil and the fence to record. The fence comes first, so a
-- stale writer is refused before it asks the client to index the session.
local function admit(meta, types, exists, may_create, token)
  local cur = fence_now(meta, exists)
  local fence = fence_of(cur, token)
  if not fence then return {1, cur} end
  if not exists and may_create ~= '1' then return {2} end
  local bad = check_types(types, 3)
  if bad then return {4, bad} end
  return nil, fence
end
"""

# KEYS: meta, types, then one hash per written type (same order as the groups in ARGV).
# ARGV: fence, now, may_create, then per type: name, n_upserts, n_deletes, id, blob, ..., id, ...
WRITE_KEYS = (
    _PRELUDE
    + """
local meta, types = KEYS[1], KEYS[2]
local exists = redis.call('EXISTS', meta) == 1
local refused, fence = admit(meta, types, exists, ARGV[3], ARGV[1])
if refused then return refused end
local i, names = 4, {}
for k = 3, #KEYS do
  names[#names + 1] = ARGV[i]
  i = i + 3 + 2 * tonumber(ARGV[i + 1]) + tonumber(ARGV[i + 2])
end
redis.call('SADD', types, unpack(names))
i = 4
for k = 3, #KEYS do
  i = apply_group(KEYS[k], i)
end
redis.call('HSET', meta, 'f', fence, 'u', ARGV[2])
if not exists then created(meta, ARGV[2]) end
return {0, exists and 0 or 1}
"""
)

# KEYS: meta. ARGV: fence, now, may_create, blob, expected_version ('' = any).
SAVE_CREDS = (
    _PRELUDE
    + """
local meta = KEYS[1]
local exists = redis.call('EXISTS', meta) == 1
local row = redis.call('HMGET', meta, 'f', 'v', 'creds')
local cur = exists and (row[1] or '0') or fence_now(meta, false)
local fence = fence_of(cur, ARGV[1])
if not fence then return {1, cur} end
if not exists and ARGV[3] ~= '1' then return {2} end
local version = tonumber(row[2] or '0')
if ARGV[5] ~= '' and tonumber(ARGV[5]) ~= version then
  -- A retry of a save that was applied but whose reply was lost: report the same success.
  if version == tonumber(ARGV[5]) + 1 and row[3] == ARGV[4] then return {0, version, 0} end
  return {3, version}
end
version = redis.call('HINCRBY', meta, 'v', 1)
redis.call('HSET', meta, 'creds', ARGV[4], 'f', fence, 'u', ARGV[2])
if not exists then created(meta, ARGV[2]) end
return {0, version, exists and 0 or 1}
"""
)

# KEYS: meta, types. ARGV: fence, now, key base ('<prefix>:{tag}:k:').
CLEAR_KEYS = (
    _PRELUDE
    + """
local meta, types = KEYS[1], KEYS[2]
local exists = redis.call('EXISTS', meta) == 1
local cur = fence_now(meta, exists)
local fence = fence_of(cur, ARGV[1])
if not fence then return {1, cur} end
if not exists then return {0, 0} end
if foreign(types, 'set') then return {4, types} end
local keys, n = {}, 0
for _, t in ipairs(redis.call('SMEMBERS', types)) do
  local key = ARGV[3] .. t
  if foreign(key, 'hash') then return {4, key} end
  n = n + redis.call('HLEN', key)
  keys[#keys + 1] = key
end
keys[#keys + 1] = types
redis.call('UNLINK', unpack(keys))
redis.call('HSET', meta, 'f', fence, 'u', ARGV[2])
return {0, n}
"""
)

# KEYS: meta, types. ARGV: fence, key base. Reply {0, 1 if anything existed}.
# The session's fence (or the higher token given) stays behind in its tombstone.
DELETE_SESSION = (
    _PRELUDE
    + """
local meta, types = KEYS[1], KEYS[2]
local cur = fence_now(meta, redis.call('EXISTS', meta) == 1)
local fence = fence_of(cur, ARGV[1])
if not fence then return {1, cur} end
if foreign(types, 'set') then return {4, types} end
local keys = {meta, types}
for _, t in ipairs(redis.call('SMEMBERS', types)) do keys[#keys + 1] = ARGV[2] .. t end
local found = redis.call('UNLINK', unpack(keys)) > 0
if tonumber(fence) > 0 then redis.call('SET', tomb(meta), fence) end
return {0, found and 1 or 0}
"""
)

# Cache: KEYS: types, then one hash per type. ARGV: ttl_ms, then groups as in WRITE_KEYS.
CACHE_PUT = (
    _PRELUDE
    + """
local types = KEYS[1]
if foreign(types, 'set') then return {4, types} end
for k = 2, #KEYS do
  if foreign(KEYS[k], 'hash') then return {4, KEYS[k]} end
end
local i, ttl = 2, ARGV[1]
for k = 2, #KEYS do
  local name, ups = ARGV[i], tonumber(ARGV[i + 1])
  i = apply_group(KEYS[k], i)
  if ups > 0 then
    redis.call('SADD', types, name)
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
end
-- The set of types lives at least as long as every hash it names, so drop() finds them all.
redis.call('PEXPIRE', types, ttl)
return {0}
"""
)

# Cache: KEYS: meta. ARGV: ttl_ms, blob, version.
CACHE_PUT_CREDS = """
redis.call('HSET', KEYS[1], 'creds', ARGV[2], 'v', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {0}
"""

# Cache: KEYS: meta, types. ARGV: key base.
CACHE_DROP = """
local keys = {KEYS[1], KEYS[2]}
if redis.call('TYPE', KEYS[2])['ok'] == 'set' then
  for _, t in ipairs(redis.call('SMEMBERS', KEYS[2])) do keys[#keys + 1] = ARGV[1] .. t end
end
redis.call('UNLINK', unpack(keys))
return {0}
"""
