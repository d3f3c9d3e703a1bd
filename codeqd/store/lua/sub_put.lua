-- sub_put: create a worker subscription, or renew one (heartbeat), with its TTL.
-- KEYS: 1 subscription, 2 tenant index
-- ARGV: 1 id, 2 subscription JSON ('' = renew the stored one), 3 now, 4 ttl ms (0 = as
--       stored), 5 subscriptions channel, 6 tenant
local now = tonumber(ARGV[3])
local doc
if ARGV[2] ~= '' then
  doc = cjson.decode(ARGV[2])
else
  local raw = redis.call('GET', KEYS[1])
  if not raw then return {'NOT_FOUND'} end
  doc = cjson.decode(raw)
end
local ttl = tonumber(ARGV[4])
if ttl <= 0 then ttl = tonumber(doc.ttlMs) end
doc.ttlMs = ttl
doc.expiresAt = now + ttl
local raw = cjson.encode(doc)
redis.call('SET', KEYS[1], raw, 'PX', ttl)
redis.call('ZADD', KEYS[2], doc.expiresAt, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- The index lives as long as its longest-lived subscription.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], math.floor(tonumber(last[2])))
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {'OK', raw}
