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
    if heap[p].score <= heap[j].score then break end
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
      if l <= #heap and heap[l].score < heap[m].score then m = l end
      if r <= #heap and heap[r].score < heap[m].score then m = r end
      if m == j then break end
      heap[m], heap[j] = heap[j], heap[m]
      j = m
    end
  end
  return top
end
-- A queue's entries are read in order from its score in the tenant's claimable index (a
-- queue out of the index has no ready entries, or is paused), a chunk at a time with
-- their records: one ZRANGEBYSCORE and one HMGET per chunk, not one of each per task.
-- Never by rank from the start: on KVRocks that walks every entry removed since the last
-- compaction, the queue's consumed head (see reindex in _lib). Popped entries are removed
-- after the loop, all in one call. A queue's first chunk is its share of the call (max
-- over the queues walked), each later one twice the last but no more than the call still
-- needs, plus one entry: the queue's next head, whose score the claimable index gets
-- after the loop without reading the queue again. What is read and not claimed stays
-- within what is claimed plus one share per queue, and a call walking a single queue of
-- PENDING tasks reads it once.
-- Per queue walked (by its KEYS index): from and skip, where its next read starts (the
-- score of the last entry read, and how many entries of that score were read: scores
-- may tie); chunk, the size of its next read; buf, its entries read, and at, the
-- position in buf of its next unpopped one; gone, the ids popped.
local queues = {}
local pops, n = 0, 0
-- Entries whose task is no longer PENDING are dropped as they surface; they count
-- against the budget so that even a queue full of them bounds the call.
local budget = 2 * max + 16
-- Queue i's next unpopped entry into the heap, reading the next chunk once this one is
-- spent (nothing when the queue, the budget or the call's need is exhausted).
local function push_head(i)
  local q = queues[i]
  if q.at > #q.buf then
    local size = math.min(q.chunk, budget - pops, max - n)
    if size < 1 then return end
    q.chunk = 2 * q.chunk
    local got = redis.call('ZRANGEBYSCORE', KEYS[i], q.from, '+inf', 'WITHSCORES', 'LIMIT',
      int(q.skip), int(size + 1))
    if #got == 0 then return end
    local buf, fields = {}, {}
    for j = 1, #got, 2 do
      local field = ten .. '|' .. got[j]
      buf[#buf + 1] = {score = tonumber(got[j + 1]), score_text = got[j + 1], queue = i,
        id = got[j], field = field}
      fields[#fields + 1] = field
    end
    local last = buf[#buf].score
    local ties = (last == tonumber(q.from)) and q.skip or 0
    for j = #buf, 1, -1 do
      if buf[j].score ~= last then break end
      ties = ties + 1
    end
    q.from, q.skip = buf[#buf].score_text, ties
    local raws = bulk('HMGET', KEYS[1], fields)
    for j = 1, #buf do buf[j].raw = raws[j] end
    q.buf, q.at = buf, 1
  end
  push(q.buf[q.at])
end

-- A queue named twice is walked once: its entries leave only after the loop.
local walked, active = {}, {}
for i = 7, #KEYS do
  if not walked[KEYS[i]] then
    walked[KEYS[i]] = true
    if redis.call('SISMEMBER', KEYS[4], ten .. '|' .. ARGV[i]) == 0 then
      local from = redis.call('ZSCORE', KEYS[6], ARGV[i])
      if from then active[#active + 1] = {i, from} end
    else
      redis.call('ZREM', KEYS[6], ARGV[i])
    end
  end
end
local share = math.ceil(max / math.max(#active, 1))
for _, a in ipairs(active) do
  queues[a[1]] = {from = a[2], skip = 0, chunk = share, buf = {}, at = 1, gone = {}}
  push_head(a[1])
end

-- Writes gathered per key and made after the loop (see bulk in _lib).
local out = {}
local metas, leases, inprog, fields = {}, {}, {}, {}
while n < max and pops < budget and #heap > 0 do
  local top = pop()
  local i, id, raw, field = top.queue, top.id, top.raw, top.field
  local cmd = ARGV[i]
  local q = queues[i]
  q.gone[#q.gone + 1] = id
  pops = pops + 1
  if raw then
    local meta = cjson.decode(raw)
    if meta.status == 'PENDING' then
      local reclaim = meta.claimedAt ~= nil -- the record tells an earlier claim
      local prior = raw
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
      -- A first claim is told by the record (see told in _lib): it starts no list. A later
      -- one finds a list (its requeue wrote one); were there none, the told claim goes first.
      local key = listed(KEYS[1], field)
      if key or reclaim then
        local text = '["claimed",' .. now_s .. ',' .. cjson.encode(worker) .. ','
          .. cjson.encode(meta.leaseId) .. ',' .. int(meta.attempts) .. ']'
        if key then push_events(key, {text}) else event_json(KEYS[1], field, text, prior) end
      end
      leases[#leases + 1] = until_s
      leases[#leases + 1] = ten .. '|' .. cmd .. '|' .. id
      inprog[cmd] = (inprog[cmd] or 0) + 1
      n = n + 1
      fields[n] = field
      out[#out + 1] = raw
      out[#out + 1] = false -- the payload, read below
    end
  end
  q.at = q.at + 1
  if n < max then push_head(i) end
end
for i, q in pairs(queues) do
  if #q.gone > 0 then bulk('ZREM', KEYS[i], q.gone) end
end
if n > 0 then
  bulk('HSET', KEYS[1], metas)
  bulk('ZADD', KEYS[3], leases)
  for cmd, k in pairs(inprog) do redis.call('HINCRBY', KEYS[5], ten .. '|' .. cmd .. '|inprog', k) end
  local payloads = bulk('HMGET', KEYS[2], fields)
  for k = 1, n do out[2 * k] = payloads[k] or '{}' end
end
-- The claimable index follows each queue taken from; its head is the entry after the
-- popped ones when that is in hand, else read again. A queue the index had but that
-- had nothing to read leaves it.
for i, q in pairs(queues) do
  if #q.gone > 0 or #q.buf == 0 then
    local head = q.buf[q.at]
    reindex(KEYS[6], KEYS[i], KEYS[4], ten .. '|' .. ARGV[i], ARGV[i], head and head.score_text)
  end
end
return out
