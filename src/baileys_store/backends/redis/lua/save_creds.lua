-- KEYS: meta. ARGV: fence, now, may_create, blob, expected_version ('' = any).
-- Reply {0, version, 1 created / 0}, {1, fence}, {2} (index first), {3, version}.
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
