--@lib
-- rates: a tenant's per-minute transition counts on this shard (read only), for the
-- dashboard: the ARGV[3] minutes up to and including the current one, oldest first.
-- KEYS: 1 task (its name gives the shard's tag; the rate keys are built from it, as the
--       scripts that count build them: rate_key in _lib)
-- ARGV: 1 tenant, 2 now (0: the store's clock), 3 minutes (1..120)
-- Returns the current minute (ms // 60000), then created, completed, failed and
-- dead-lettered per minute, oldest first.
local now, minutes = clock(ARGV[2]), tonumber(ARGV[3])
local last = math.floor(now / 60000)
local out = {last}
for m = last - minutes + 1, last do
  local c = redis.call('HMGET', rate_key(KEYS[1], ARGV[1], m * 60000), 'c', 'd', 'f', 'x')
  for j = 1, 4 do out[#out + 1] = tonumber(c[j] or 0) end
end
return out
