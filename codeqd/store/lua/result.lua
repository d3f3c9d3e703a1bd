--@lib
-- result: the lease holder reports COMPLETED or FAILED; the task becomes terminal,
-- its result is stored and, when it has a webhook, a callback enters the outbox.
-- Inline artifacts are stored in the same step, so a refused result leaves none.
-- KEYS: 1 task, 2 result, 3 leases, 4 done, 5 counts, 6 outbox, 7 artifacts
-- ARGV: 1 field, 2 worker, 3 lease id, 4 now (0: the store's clock), 5 status, 6 result json, 7 error, 8 done channel,
--       9 tenant, then pairs of inline artifact (name, content)
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'NOT_FOUND'} end
local meta = cjson.decode(raw)
if meta.status ~= 'IN_PROGRESS' then return {'NOT_IN_PROGRESS', meta.status} end
if meta.workerId ~= ARGV[2] then return {'NOT_OWNER'} end
if ARGV[3] ~= '' and meta.leaseId ~= ARGV[3] then return {'LEASE_LOST'} end
local now = clock(ARGV[4])
if (meta.leaseUntil or 0) <= now then return {'LEASE_EXPIRED'} end
local qname = ARGV[9] .. '|' .. meta.command
local member = qname .. '|' .. meta.id
meta.status = ARGV[5]
meta.updatedAt = now
if ARGV[7] ~= '' then meta.error = ARGV[7] else meta.error = nil end
if #ARGV > 9 then
  meta.inline = {}
  for i = 10, #ARGV, 2 do
    redis.call('HSET', KEYS[7], ARGV[1] .. '|' .. ARGV[i], ARGV[i + 1])
    meta.inline[#meta.inline + 1] = ARGV[i]
  end
end
raw = cjson.encode(meta)
redis.call('HSET', KEYS[1], ARGV[1], raw)
local key = listed(KEYS[1], ARGV[1]) -- no list: the record tells the result
if key then push_events(key, {cjson.encode({'result', now, ARGV[5], ARGV[7]})}) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[6])
redis.call('ZREM', KEYS[3], member)
redis.call('HINCRBY', KEYS[5], qname .. '|inprog', -1)
redis.call('ZADD', KEYS[4], now, member)
if meta.webhook then outbox_add(KEYS[6], {int(now), member}) end
if ARGV[5] == 'COMPLETED' then rate(KEYS[1], ARGV[9], now, 'd', 1) else rate(KEYS[1], ARGV[9], now, 'f', 1) end
redis.call('PUBLISH', ARGV[8], meta.webhook and (ARGV[1] .. '|cb') or ARGV[1])
return {'OK', raw}
