--@lib
-- replay: move dead-lettered tasks of one queue back to ready with fresh attempts.
-- KEYS: 1 task, 2 dlq(queue), 3 ready(queue), 4 seq, 5 tenant's claimable index, 6 paused
-- ARGV: 1 now, 2 tenant, 3 qname, 4 wake channel, 5 command, 6 by (token sub), 7.. ids
local now, ten = tonumber(ARGV[1]), ARGV[2]
local replayed, missing = {}, {}
local adds = {} -- score/member pairs for the ready set
for i = 7, #ARGV do
  local id = ARGV[i]
  local raw = redis.call('HGET', KEYS[1], ten .. '|' .. id)
  if redis.call('ZREM', KEYS[2], id) == 1 and raw then
    local meta = cjson.decode(raw)
    meta.status = 'PENDING'
    meta.attempts = 0
    meta.deadLettered = nil
    meta.runAt = now
    meta.updatedAt = now
    redis.call('HSET', KEYS[1], ten .. '|' .. id, cjson.encode(meta))
    event(KEYS[1], ten .. '|' .. id, {'replayed', now, ARGV[6]}, raw)
    local seq = redis.call('INCR', KEYS[4])
    adds[#adds + 1] = int((9 - (meta.priority or 0)) * 1e14 + seq)
    adds[#adds + 1] = id
    replayed[#replayed + 1] = id
  else
    missing[#missing + 1] = id
  end
end
ready_add(KEYS[5], KEYS[3], KEYS[6], ARGV[3], ARGV[5], adds)
if #replayed > 0 then redis.call('PUBLISH', ARGV[4], #replayed .. ':' .. ARGV[3]) end
return {replayed, missing}
