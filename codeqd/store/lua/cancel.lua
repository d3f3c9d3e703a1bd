--@lib
-- cancel: a producer or admin stops a task that is not yet terminal.
-- KEYS: 1 task, 2 leases, 3 delayed, 4 counts, 5 ready(queue), 6 done, 7 outbox,
--       8 tenant's claimable index, 9 paused
-- ARGV: 1 field, 2 member, 3 qname, 4 now, 5 id, 6 done channel, 7 by (token sub)
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'NOT_FOUND'} end
local meta = cjson.decode(raw)
if meta.status ~= 'PENDING' and meta.status ~= 'IN_PROGRESS' then
  return {'TERMINAL', meta.status}
end
if meta.status == 'IN_PROGRESS' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HINCRBY', KEYS[4], ARGV[3] .. '|inprog', -1)
elseif redis.call('ZREM', KEYS[5], ARGV[5]) == 1 then
  reindex(KEYS[8], KEYS[5], KEYS[9], ARGV[3], meta.command)
else
  if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 then
    redis.call('HINCRBY', KEYS[4], ARGV[3] .. '|delayed', -1)
  end
end
local now, prior = tonumber(ARGV[4]), raw
meta.status = 'CANCELLED'
meta.updatedAt = now
raw = cjson.encode(meta)
redis.call('HSET', KEYS[1], ARGV[1], raw)
event(KEYS[1], ARGV[1], {'cancelled', now, ARGV[7] or ''}, prior)
redis.call('ZADD', KEYS[6], now, ARGV[2])
if meta.webhook then outbox_add(KEYS[7], {int(now), ARGV[2]}) end
redis.call('PUBLISH', ARGV[6], meta.webhook and (ARGV[1] .. '|cb') or ARGV[1])
return {'OK', raw}
