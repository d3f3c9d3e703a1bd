--@lib
-- outbox_settle: record the outcome of one callback attempt, if it is still the latest
-- attempt (a sender whose lease expired and whose entry was claimed again is ignored).
-- delivered/failed remove the entry; retry makes it due again at a later time. The task's
-- webhookStatus, webhookAttempts and webhookError follow.
-- KEYS: 1 outbox, 2 outbox attempts, 3 task
-- ARGV: 1 member, 2 attempt, 3 outcome (delivered|retry|failed), 4 retry at ms, 5 error,
--       6 field, 7 now, 8 HTTP status of the attempt (0: no response)
local member = ARGV[1]
if tonumber(redis.call('HGET', KEYS[2], member) or '0') ~= tonumber(ARGV[2]) then
  return 'STALE'
end
local outcome = ARGV[3]
local status
if outcome == 'retry' then
  outbox_add(KEYS[1], {int(tonumber(ARGV[4])), member})
  status = 'RETRYING'
else
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
  status = (outcome == 'delivered') and 'DELIVERED' or 'FAILED'
end
local raw = redis.call('HGET', KEYS[3], ARGV[6])
if raw then
  local meta = cjson.decode(raw)
  meta.webhookStatus = status
  meta.webhookAttempts = tonumber(ARGV[2])
  meta.webhookUpdatedAt = tonumber(ARGV[7])
  if ARGV[5] ~= '' then meta.webhookError = ARGV[5] else meta.webhookError = nil end
  redis.call('HSET', KEYS[3], ARGV[6], cjson.encode(meta))
  event(KEYS[3], ARGV[6], {'callback', tonumber(ARGV[7]), tonumber(ARGV[2]), tonumber(ARGV[8]) or 0,
                           status, ARGV[5]}, raw)
end
return 'OK'
