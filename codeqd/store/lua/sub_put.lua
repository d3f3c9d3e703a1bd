-- sub_put: create a worker subscription, or renew one (heartbeat), with its TTL. A new
-- subscription is refused while its worker (the token's sub) or its tenant already has
-- as many live ones as allowed: counting and adding are one step, so concurrent
-- creates cannot overshoot.
-- KEYS: 1 subscription, 2 tenant index, 3 worker index (the worker's live ids)
-- ARGV: 1 id, 2 subscription JSON ('' = renew the stored one), 3 now, 4 ttl ms (0 = as
--       stored), 5 subscriptions channel, 6 tenant, 7 most per worker, 8 most per tenant
-- Returns {'OK', json}, {'NOT_FOUND'}, or {'LIMIT', 'worker'|'tenant', ms until the
-- earliest of those live subscriptions expires}.
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local doc
if ARGV[2] ~= '' then
  doc = cjson.decode(ARGV[2])
  if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    local function full(key, most, scope)
      if redis.call('ZCARD', key) < tonumber(most) then return nil end
      local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      return {'LIMIT', scope, math.max(0, math.floor(tonumber(first[2]) - now))}
    end
    local refused = full(KEYS[3], ARGV[7], 'worker') or full(KEYS[2], ARGV[8], 'tenant')
    if refused then return refused end
  end
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
-- Each index lives as long as its longest-lived subscription.
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], doc.expiresAt, ARGV[1])
  local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[i], math.floor(tonumber(last[2])))
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {'OK', raw}
