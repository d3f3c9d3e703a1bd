--@lib
-- claim: lease up to N ready tasks, highest priority first, FIFO within a priority,
-- across the given queues of one tenant; paused queues hand out nothing.
-- The caller bounds the work: at most store.claim_queues queues and store.script_items
-- tasks per call, whatever the data; the queues' heads are merged through a heap, so a
-- call costs O((queues + N) log queues) store reads, not O(queues x N).
-- KEYS: 1 task, 2 payload, 3 leases, 4 paused, 5 counts, 6 tenant's claimable index,
--       7.. ready zset per command
-- ARGV: 1 now (0: the store's clock), 2 lease ms, 3 worker, 4 lease id base, 5 tenant,
--       6 max count, 7..#KEYS commands (ARGV[i] is the command of KEYS[i]),
--       then optionally one worker per task (a group commit of several workers' claims:
--       the n-th task claimed goes to the n-th of them; without them, all to ARGV[3])
local now, lease_ms, max = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[6])
local ten = ARGV[5]
local now_s, until_s = int(now), int(now + lease_ms)

local heap = {}
local function push(e)
  local j = #heap + 1
  heap[j] = e
  while j > 1 do
    local p = math.floor(j / 2)
    if heap[p][1] <= heap[j][1] then break end
    heap[p], heap[j] = heap[j], heap[p]
    j = p
  end
end
local function pop()
  local top, last = heap[1], heap[#heap]
  heap[#heap] = nil
  if #heap > 0 then
    heap[1] = last
    local j = 1
    while true do
      local l, r, m = 2 * j, 2 * j + 1, j
      if l <= #heap and heap[l][1] < heap[m][1] then m = l end
      if r <= #heap and heap[r][1] < heap[m][1] then m = r end
      if m == j then break end
      heap[m], heap[j] = heap[j], heap[m]
      j = m
    end
  end
  return top
end
-- A queue's entries are read in order by rank (popped ones are removed after the loop,
-- all in one call): off[i] is the rank of queue i's next unread entry.
local off, popped = {}, {}
local function push_head(i)
  local at = int(off[i])
  local head = redis.call('ZRANGE', KEYS[i], at, at, 'WITHSCORES')
  if head[1] then push({tonumber(head[2]), i, head[1]}) end
end

-- A queue named twice is walked once: its entries leave only after the loop.
local walked = {}
for i = 7, #KEYS do
  if not walked[KEYS[i]] then
    walked[KEYS[i]] = true
    if redis.call('SISMEMBER', KEYS[4], ten .. '|' .. ARGV[i]) == 0 then
      off[i], popped[i] = 0, {}
      push_head(i)
    else
      redis.call('ZREM', KEYS[6], ARGV[i])
    end
  end
end

-- Writes gathered per key and made after the loop (see bulk in _lib).
local out, n, pops = {}, 0, 0
local metas, leases, inprog, fields = {}, {}, {}, {}
-- Entries whose task is no longer PENDING are dropped as they surface; they count
-- against the budget so that even a queue full of them bounds the call.
local budget = 2 * max + 16
while n < max and pops < budget and #heap > 0 do
  local top = pop()
  local i, id = top[2], top[3]
  local cmd = ARGV[i]
  local gone = popped[i]
  gone[#gone + 1] = id
  off[i] = off[i] + 1
  pops = pops + 1
  local field = ten .. '|' .. id
  local raw = redis.call('HGET', KEYS[1], field)
  if raw then
    local meta = cjson.decode(raw)
    if meta.status == 'PENDING' then
      meta.status = 'IN_PROGRESS'
      meta.attempts = (meta.attempts or 0) + 1
      local worker = ARGV[#KEYS + 1 + n] or ARGV[3]
      meta.workerId = worker
      meta.leaseId = ARGV[4] .. '-' .. int(n)
      meta.leaseUntil = now + lease_ms
      meta.updatedAt = now
      meta.claimedAt = now
      meta.error = nil
      raw = cjson.encode(meta)
      metas[#metas + 1] = field
      metas[#metas + 1] = raw
      event_json(KEYS[1], field, '["claimed",' .. now_s .. ',' .. cjson.encode(worker) .. ','
        .. cjson.encode(meta.leaseId) .. ',' .. int(meta.attempts) .. ']')
      leases[#leases + 1] = until_s
      leases[#leases + 1] = ten .. '|' .. cmd .. '|' .. id
      inprog[cmd] = (inprog[cmd] or 0) + 1
      n = n + 1
      fields[n] = field
      out[#out + 1] = raw
      out[#out + 1] = false -- the payload, read below
    end
  end
  push_head(i)
end
for i, gone in pairs(popped) do
  if #gone > 0 then bulk('ZREM', KEYS[i], gone) end
end
if n > 0 then
  bulk('HSET', KEYS[1], metas)
  bulk('ZADD', KEYS[3], leases)
  for cmd, k in pairs(inprog) do redis.call('HINCRBY', KEYS[5], ten .. '|' .. cmd .. '|inprog', k) end
  local payloads = bulk('HMGET', KEYS[2], fields)
  for k = 1, n do out[2 * k] = payloads[k] or '{}' end
end
for i, gone in pairs(popped) do
  if #gone > 0 then reindex(KEYS[6], KEYS[i], KEYS[4], ten .. '|' .. ARGV[i], ARGV[i]) end
end
return out
