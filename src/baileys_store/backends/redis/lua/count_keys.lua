-- KEYS: the session's set of key types. ARGV: key base ('<prefix>:{tag}:k:').
-- Reply: flat {type, count, type, count, ...}.
local out = {}
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = t
  out[#out + 1] = redis.call('HLEN', ARGV[1] .. t)
end
return out
