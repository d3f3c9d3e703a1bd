--@lib
-- claim: lease up to N ready tasks, highest priority first, FIFO within a priority,
-- across the given queues of one tenant; paused queues hand out nothing.
-- The caller bounds the work: at most store.claim_queues queues and store.script_items
-- tasks per call, whatever the data; the queues' heads are merged through a heap, so a
-- call reads O(queues + N) entries (in chunks, below) and does O((queues + N) log queues)
-- work, not O(queues x N).
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
-- A queue's entries are read in order by rank, a chunk at a time with their records (one
-- ZRANGE and one HMGET per chunk, not one of each per task: on KVRocks each ZRANGE walks
-- the queue's consumed head, the entries removed since its last compaction), and popped
-- ones are removed after the loop, all in one call. A queue's first chunk is its share of
-- the call (max over the queues walked), each later one twice the last but no more than
-- the call still needs, plus one entry: the queue's next head, which the claimable index
-- gets after the loop without reading the queue again. What is read and not claimed
-- stays within what is claimed plus one share per queue, and a call walking a single
-- queue of PENDING tasks reads it once. off[i] is the rank of queue i's next unread
-- entry, buf[i] its chunk, at[i] the position in it of the queue's next unpopped entry.
local off, popped, buf, at, chunk = {}, {}, {}, {}, {}
local pops, n = 0, 0
-- Entries whose task is no longer PENDING are dropped as they surface; they count
-- against the budget so that even a queue full of them bounds the call.
local budget = 2 * max + 16
-- Queue i's next unpopped entry into the heap, reading the next chunk once this one is
-- spent (nothing when the queue, the budget or the call's need is exhausted).
local function push_head(i)
  local b = buf[i]
  if at[i] > #b then
    local size = math.min(chunk[i], budget - pops, max - n)
    if size < 1 then return end
    chunk[i] = 2 * chunk[i]
    local got = redis.call('ZRANGE', KEYS[i], int(off[i]), int(off[i] + size), 'WITHSCORES')
    if #got == 0 then return end
    off[i] = off[i] + #got / 2
    b = {}
    local fields = {}
    for j = 1, #got, 2 do
      local field = ten .. '|' .. got[j]
      b[#b + 1] = {tonumber(got[j + 1]), i, got[j], false, field, got[j + 1]}
      fields[#fields + 1] = field
    end
    local raws = bulk('HMGET', KEYS[1], fields)
    for j = 1, #b do b[j][4] = raws[j] end
    buf[i], at[i] = b, 1
  end
  push(b[at[i]])
end

-- A queue named twice is walked once: its entries leave only after the loop.
local walked, active = {}, {}
for i = 7, #KEYS do
  if not walked[KEYS[i]] then
    walked[KEYS[i]] = true
    if redis.call('SISMEMBER', KEYS[4], ten .. '|' .. ARGV[i]) == 0 then
      active[#active + 1] = i
    else
      redis.call('ZREM', KEYS[6], ARGV[i])
    end
  end
end
local share = math.ceil(max / math.max(#active, 1))
for _, i in ipairs(active) do
  off[i], popped[i], buf[i], at[i], chunk[i] = 0, {}, {}, 1, share
  push_head(i)
end

-- Writes gathered per key and made after the loop (see bulk in _lib).
local out = {}
local metas, leases, inprog, fields = {}, {}, {}, {}
while n < max and pops < budget and #heap > 0 do
  local top = pop()
  local i, id, raw, field = top[2], top[3], top[4], top[5]
  local cmd = ARGV[i]
  local gone = popped[i]
  gone[#gone + 1] = id
  pops = pops + 1
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
  at[i] = at[i] + 1
  if n < max then push_head(i) end
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
-- The claimable index follows each queue taken from: its head is the entry after the
-- popped ones when it is in hand (the queue is not paused: checked above, in this same
-- step), else read again.
for i, gone in pairs(popped) do
  if #gone > 0 then
    local head = buf[i][at[i]]
    if head then
      redis.call('ZADD', KEYS[6], head[6], ARGV[i])
    else
      reindex(KEYS[6], KEYS[i], KEYS[4], ten .. '|' .. ARGV[i], ARGV[i])
    end
  end
end
return out
