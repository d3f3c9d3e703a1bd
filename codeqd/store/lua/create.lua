--@lib
-- create: store a new task and make it ready (or delayed); honours an idempotency key.
-- KEYS: 1 task, 2 payload, 3 seq, 4 ready(queue), 5 delayed, 6 counts, 7 queues, 8 tenant cmds,
--       9 idem, 10 tenant's claimable index, 11 paused
-- ARGV: 1 field, 2 meta, 3 payload, 4 now, 5 runAt, 6 priority, 7 idem ttl ms (0: none),
--       8 member, 9 qname, 10 command, 11 wake channel, 12 id
local field = ARGV[1]
if tonumber(ARGV[7]) > 0 then
  local existing = redis.call('GET', KEYS[9])
  if existing then
    local ten = string.match(field, '^[^|]*')
    local f = ten .. '|' .. existing
    local meta = redis.call('HGET', KEYS[1], f)
    if meta then
      return {0, meta, redis.call('HGET', KEYS[2], f)}
    end
  end
  redis.call('SET', KEYS[9], ARGV[12], 'PX', ARGV[7])
end
redis.call('HSET', KEYS[1], field, ARGV[2])
redis.call('HSET', KEYS[2], field, ARGV[3])
redis.call('SADD', KEYS[7], ARGV[9])
redis.call('SADD', KEYS[8], ARGV[10])
local now, run_at = tonumber(ARGV[4]), tonumber(ARGV[5])
if run_at > now then
  redis.call('ZADD', KEYS[5], run_at, ARGV[8])
  redis.call('HINCRBY', KEYS[6], ARGV[9] .. '|delayed', 1)
else
  local seq = redis.call('INCR', KEYS[3])
  local score = int((9 - tonumber(ARGV[6])) * 1e14 + seq)
  ready_add(KEYS[10], KEYS[4], KEYS[11], ARGV[9], ARGV[10], {score, ARGV[12]})
  redis.call('PUBLISH', ARGV[11], '1:' .. ARGV[9])
end
rate(KEYS[1], string.match(field, '^[^|]*'), now, 'c', 1)
return {1}
