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
-- Writes gathered per key and made after the loop (see bulk in _lib).
local metas, payloads, queues, cmds, seen = {}, {}, {}, {}, {}
local delayed, delayed_n, ready = {}, {}, {}
-- Tasks this batch created with an idempotency key: a later item with the same key
-- finds them here (their records are written after the loop).
local fresh = {}
for i = 4, #ARGV, 9 do
  local id, cmd = ARGV[i], ARGV[i + 6]
  local field = ten .. '|' .. id
  local idem_ttl, idem_key = tonumber(ARGV[i + 5]), KEYS[tonumber(ARGV[i + 8])]
  local existing = nil
  if idem_ttl > 0 then
    local first = redis.call('GET', idem_key)
    if first then
      local f = ten .. '|' .. first
      existing = fresh[f]
      if not existing then
        local meta = redis.call('HGET', KEYS[1], f)
        if meta then existing = {0, meta, redis.call('HGET', KEYS[2], f) or '{}'} end
      end
    end
    if not existing then
      redis.call('SET', idem_key, id, 'PX', idem_ttl)
      fresh[field] = {0, ARGV[i + 1], ARGV[i + 2]}
    end
  end
  if existing then
    out[#out + 1] = existing
  else
    local qname = ten .. '|' .. cmd
    metas[#metas + 1] = field
    metas[#metas + 1] = ARGV[i + 1]
    payloads[#payloads + 1] = field
    payloads[#payloads + 1] = ARGV[i + 2]
    if not seen[qname] then
      seen[qname] = true
      queues[#queues + 1] = qname
      cmds[#cmds + 1] = cmd
    end
    local run_at = tonumber(ARGV[i + 3])
    if run_at > now then
      delayed[#delayed + 1] = int(run_at)
      delayed[#delayed + 1] = qname .. '|' .. id
      delayed_n[qname] = (delayed_n[qname] or 0) + 1
    else
      ready[#ready + 1] = {qname, (9 - tonumber(ARGV[i + 4])) * 1e14, id}
      woken[qname] = (woken[qname] or 0) + 1
      if not readies[qname] then
        readies[qname] = {key = KEYS[tonumber(ARGV[i + 7])], cmd = cmd, adds = {}}
      end
    end
    created = created + 1
    out[#out + 1] = {1}
  end
end
if created > 0 then
  bulk('HSET', KEYS[1], metas)
  bulk('HSET', KEYS[2], payloads)
  bulk('SADD', KEYS[6], queues)
  bulk('SADD', KEYS[7], cmds)
end
if #delayed > 0 then
  bulk('ZADD', KEYS[4], delayed)
  for qname, n in pairs(delayed_n) do redis.call('HINCRBY', KEYS[5], qname .. '|delayed', n) end
end
if #ready > 0 then
  -- FIFO within a priority: the items take consecutive sequence numbers, in order.
  local seq = redis.call('INCRBY', KEYS[3], #ready) - #ready
  for k, r in ipairs(ready) do
    local adds = readies[r[1]].adds
    adds[#adds + 1] = int(r[2] + seq + k)
    adds[#adds + 1] = r[3]
  end
end
rate(KEYS[1], ten, now, 'c', created)
for qname, q in pairs(readies) do ready_add(KEYS[8], q.key, KEYS[9], qname, q.cmd, q.adds) end
for qname, n in pairs(woken) do redis.call('PUBLISH', ARGV[2], n .. ':' .. qname) end
return out
