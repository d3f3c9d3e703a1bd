--@lib
-- retry: nack, abandon, release or lease expiry. Requeues (now or after a delay) or, when a
-- nack/expiry finds attempts >= maxAttempts, dead-letters the task (FAILED, MAX_ATTEMPTS).
-- 'release' hands back a task whose claim never reached its worker (the claim's attempt
-- is given back, the task goes back to the head of its priority).
-- KEYS: 1 task, 2 leases, 3 delayed, 4 counts, 5 ready(queue), 6 dlq(queue), 7 seq, 8 outbox,
--       9 tenant's claimable index, 10 paused
-- ARGV: 1 field, 2 member, 3 qname, 4 now (0: the store's clock), 5 mode
--       (nack|abandon|release|expire), 6 worker, 7 lease id ('' = not sent), 8 delay ms,
--       9 reason, 10 wake channel, 11 done channel, 12 id
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'NOT_FOUND'} end
local meta = cjson.decode(raw)
local mode, now = ARGV[5], clock(ARGV[4])
if meta.status ~= 'IN_PROGRESS' then return {'NOT_IN_PROGRESS', meta.status} end
if mode == 'expire' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if (not score) or tonumber(score) > now or meta.leaseId ~= ARGV[7] then
    return {'NOT_EXPIRED'}
  end
else
  if meta.workerId ~= ARGV[6] then return {'NOT_OWNER'} end
  if ARGV[7] ~= '' and meta.leaseId ~= ARGV[7] then return {'LEASE_LOST'} end
  if mode ~= 'release' and (meta.leaseUntil or 0) <= now then return {'LEASE_EXPIRED'} end
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[4], ARGV[3] .. '|inprog', -1)
local kinds = {nack = 'nacked', abandon = 'abandoned', release = 'released', expire = 'expired'}
-- The event: kind, time, the worker that held the lease, its lease, the reason, then the
-- delay before the task is claimable again (ms; -1: dead-lettered).
local function retry_event(delay_ms)
  event(KEYS[1], ARGV[1], {kinds[mode], now, meta.workerId or '', meta.leaseId or '', ARGV[9],
                           delay_ms}, raw)
end
meta.updatedAt = now
if ARGV[9] ~= '' then meta.error = ARGV[9] end
if mode == 'release' then meta.attempts = math.max(0, (meta.attempts or 1) - 1) end
if mode ~= 'abandon' and mode ~= 'release' and (meta.attempts or 0) >= (meta.maxAttempts or 1) then
  meta.status = 'FAILED'
  meta.error = 'MAX_ATTEMPTS'
  meta.deadLettered = true
  retry_event(-1)
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(meta))
  redis.call('ZADD', KEYS[6], now, ARGV[12])
  if meta.webhook then outbox_add(KEYS[8], {int(now), ARGV[2]}) end
  rate(KEYS[1], string.match(ARGV[3], '^[^|]*'), now, 'x', 1)
  redis.call('PUBLISH', ARGV[11], meta.webhook and (ARGV[1] .. '|cb') or ARGV[1])
  return {'DEAD'}
end
meta.status = 'PENDING'
local delay = tonumber(ARGV[8])
retry_event(delay)
if delay > 0 then
  meta.runAt = now + delay
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(meta))
  redis.call('ZADD', KEYS[3], now + delay, ARGV[2])
  redis.call('HINCRBY', KEYS[4], ARGV[3] .. '|delayed', 1)
else
  meta.runAt = now
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(meta))
  -- A released task goes back to the head of its priority (seq 0), where it was.
  local seq = 0
  if mode ~= 'release' then seq = redis.call('INCR', KEYS[7]) end
  local score = (9 - (meta.priority or 0)) * 1e14 + seq
  ready_add(KEYS[9], KEYS[5], KEYS[10], ARGV[3], meta.command, {int(score), ARGV[12]})
  redis.call('PUBLISH', ARGV[10], '1:' .. ARGV[3])
end
return {'REQUEUED', tostring(delay)}
