-- claim: lease up to N ready tasks, highest priority first, FIFO within a priority,
-- across the listed commands of one tenant; paused queues hand out nothing.
-- KEYS: 1 task, 2 payload, 3 leases, 4 paused, 5 counts, 6.. ready zset per command
-- ARGV: 1 now, 2 lease ms, 3 worker, 4 lease id base, 5 tenant, 6 max count, 7.. commands
local now, lease_ms, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[6])
local ten = ARGV[5]
local queues = {}
for i = 6, #KEYS do
  local cmd = ARGV[i + 1]
  if redis.call('SISMEMBER', KEYS[4], ten .. '|' .. cmd) == 0 then
    queues[#queues + 1] = {KEYS[i], cmd}
  end
end
local out, n = {}, 0
while n < max do
  local best, best_score
  for _, q in ipairs(queues) do
    local head = redis.call('ZRANGE', q[1], 0, 0, 'WITHSCORES')
    if head[1] and (best_score == nil or tonumber(head[2]) < best_score) then
      best, best_score = {q[1], q[2], head[1]}, tonumber(head[2])
    end
  end
  if not best then break end
  redis.call('ZREM', best[1], best[3])
  local field = ten .. '|' .. best[3]
  local raw = redis.call('HGET', KEYS[1], field)
  if raw then
    local meta = cjson.decode(raw)
    if meta.status == 'PENDING' then
      meta.status = 'IN_PROGRESS'
      meta.attempts = (meta.attempts or 0) + 1
      meta.workerId = ARGV[3]
      meta.leaseId = ARGV[4] .. '-' .. n
      meta.leaseUntil = now + lease_ms
      meta.updatedAt = now
      meta.claimedAt = now
      meta.error = nil
      raw = cjson.encode(meta)
      redis.call('HSET', KEYS[1], field, raw)
      redis.call('ZADD', KEYS[3], now + lease_ms, ten .. '|' .. best[2] .. '|' .. best[3])
      redis.call('HINCRBY', KEYS[5], ten .. '|' .. best[2] .. '|inprog', 1)
      n = n + 1
      out[#out + 1] = raw
      out[#out + 1] = redis.call('HGET', KEYS[2], field) or '{}'
    end
  end
end
return out
