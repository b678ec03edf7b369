-- Shared Lua functions of the scripts (Redis scripts cannot import): prepended to
-- every script built on them (see _scripts.py). ``fence_of`` returns the fence to record or nil
-- when ``token`` is stale.
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
