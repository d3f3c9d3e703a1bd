--@lib
-- heartbeat: extend the lease of an in-progress task held by the caller.
-- KEYS: 1 task, 2 leases
-- ARGV: 1 field, 2 worker, 3 lease id ('' = not sent), 4 now (0: the store's clock),
--       5 extend ms, 6 tenant
-- A lease past its leaseUntil is refused even before the reaper has retried the task.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'NOT_FOUND'} end
local meta = cjson.decode(raw)
if meta.status ~= 'IN_PROGRESS' then return {'NOT_IN_PROGRESS', meta.status} end
if meta.workerId ~= ARGV[2] then return {'NOT_OWNER'} end
if ARGV[3] ~= '' and meta.leaseId ~= ARGV[3] then return {'LEASE_LOST'} end
local now = clock(ARGV[4])
if (meta.leaseUntil or 0) <= now then return {'LEASE_EXPIRED'} end
local member = ARGV[6] .. '|' .. meta.command .. '|' .. meta.id
meta.leaseUntil = now + tonumber(ARGV[5])
meta.updatedAt = now
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(meta))
heartbeat_event(KEYS[1], ARGV[1], now, raw)
redis.call('ZADD', KEYS[2], meta.leaseUntil, member)
return {'OK', tostring(meta.leaseUntil)}
