--@lib
-- create_batch: store many new tasks of one tenant on one shard, each as create.lua would
-- (idempotency per item, ready or delayed), with one wake-up per queue for the whole batch.
-- KEYS: 1 task, 2 payload, 3 seq, 4 delayed, 5 counts, 6 queues, 7 tenant cmds,
--       8 tenant's claimable index, 9 paused,
--       10.. ready zsets and idempotency keys, referenced by index from the items
-- ARGV: 1 now, 2 wake channel, 3 tenant, then 9 per item:
--       id, meta, payload, runAt, priority, idem ttl ms (0: none), command,
--       ready key index, idem key index (0: none)
-- Returns one entry per item: {1} created, or {0, meta, payload} of the task the
-- idempotency key already names.
local now, ten = tonumber(ARGV[1]), ARGV[3]
local out, woken, readies, created = {}, {}, {}, 0
for i = 4, #ARGV, 9 do
  local id, cmd = ARGV[i], ARGV[i + 6]
  local field = ten .. '|' .. id
  local idem_ttl, idem_key = tonumber(ARGV[i + 5]), KEYS[tonumber(ARGV[i + 8])]
  local existing = nil
  if idem_ttl > 0 then
    local first = redis.call('GET', idem_key)
    if first then
      local f = ten .. '|' .. first
      local meta = redis.call('HGET', KEYS[1], f)
      if meta then existing = {0, meta, redis.call('HGET', KEYS[2], f) or '{}'} end
    end
    if not existing then redis.call('SET', idem_key, id, 'PX', idem_ttl) end
  end
  if existing then
    out[#out + 1] = existing
  else
    local qname = ten .. '|' .. cmd
    redis.call('HSET', KEYS[1], field, ARGV[i + 1])
    redis.call('HSET', KEYS[2], field, ARGV[i + 2])
    redis.call('SADD', KEYS[6], qname)
    redis.call('SADD', KEYS[7], cmd)
    local run_at = tonumber(ARGV[i + 3])
    if run_at > now then
      redis.call('ZADD', KEYS[4], run_at, qname .. '|' .. id)
      redis.call('HINCRBY', KEYS[5], qname .. '|delayed', 1)
    else
      local seq = redis.call('INCR', KEYS[3])
      local ready = KEYS[tonumber(ARGV[i + 7])]
      redis.call('ZADD', ready, (9 - tonumber(ARGV[i + 4])) * 1e14 + seq, id)
      woken[qname] = (woken[qname] or 0) + 1
      readies[qname] = {ready, cmd}
    end
    created = created + 1
    out[#out + 1] = {1}
  end
end
rate(KEYS[1], ten, now, 'c', created)
for qname, q in pairs(readies) do reindex(KEYS[8], q[1], KEYS[9], qname, q[2]) end
for qname, n in pairs(woken) do redis.call('PUBLISH', ARGV[2], n .. ':' .. qname) end
return out
