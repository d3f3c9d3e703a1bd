-- _lib: helpers shared by the scripts that start with the line '--@lib' (the loader
-- prepends this file to them; Lua scripts cannot import one another).

-- The store's clock in ms, unless the caller passed one (tests drive a virtual clock).
-- Leases are set and checked against this one clock, whatever the daemons' clocks say.
local function clock(arg)
  local given = tonumber(arg)
  if given and given > 0 then return given end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A whole number as text, for a command's argument or JSON. Redis 7.0 turns a Lua number
-- given to redis.call into text with '%.17g', and cjson and '..' use '%.14g': libc's
-- floating-point printf, ~0.5 us a number (0.24 us through '%d', the integer path). The
-- batch scripts paid it several times per task (scores, ranks, event times): ~3 us of a
-- claim's ~35 us per task. Scores, ranks, times and counts are whole, well inside 2^53.
local function int(n)
  return string.format('%d', n)
end

-- The tenant's index of claimable queues on this shard (zset command -> the score of the
-- queue's head) is kept in step with a queue's ready set by every script that changes
-- it: a queue is in the index while it has ready tasks and is not paused, with its
-- head's score or, after entries were removed without a reindex, a lower one (never a
-- higher one). Claims walk the index instead of every queue the tenant ever used, and
-- read a queue from its indexed score on.
-- A queue's head is never read by rank from the start while the index has the queue:
-- KVRocks keeps a sorted set in RocksDB, and a read from the start walks every entry
-- removed since the last compaction (a busy queue's consumed head: 40 ms a read after
-- 350,000 tasks). So: a caller that has the new head's score in hand passes it
-- (head_score; ready_add below, for entries added); otherwise the head is read from the
-- indexed score on. Only a queue out of the index (a resumed one, a keyspace indexed at
-- start-up) is read from the start.
local function reindex(idx, ready, paused, qname, cmd, head_score)
  if head_score == nil then
    local cur = redis.call('ZSCORE', idx, cmd)
    if cur then
      head_score = redis.call('ZRANGEBYSCORE', ready, cur, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2]
    else
      head_score = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')[2]
    end
  end
  if head_score and redis.call('SISMEMBER', paused, qname) == 0 then
    redis.call('ZADD', idx, head_score, cmd)
  else
    redis.call('ZREM', idx, cmd)
  end
end

-- Each task keeps a list of its last EVENTS_MAX events (key <tag>:ev:<ten>:<id>, beside
-- the task hash <tag>:task and so in its slot), appended by the script that makes the
-- transition, in the same atomic step. An event is a short JSON array, kind and time
-- first (codeqd/domain/events.py reads them). The key is built here from the task hash's
-- name because a claim learns its tasks' ids only as it reads them.
-- The list holds only what the task record cannot tell. The record tells 'created', its
-- claim while it is the first (claimedAt, workerId, leaseId, attempts 1) and its worker's
-- result (updatedAt, status, error). So the common life, created, claimed once and
-- finished by its worker, costs no list at all (Store.task_events reads those events from
-- the record): a claim or a result appends to the list only when there is one
-- (listed). Any other event, when the list does not exist yet, first writes what
-- the record told before the step (told, from the record as it was: prior), since the
-- step may overwrite it (a second claim, a heartbeat's updatedAt, a callback's).
local EVENTS_MAX = 50
local function events_key(task_key, field)
  local bar = string.find(field, '|', 1, true)
  return string.sub(task_key, 1, -5) .. 'ev:' .. string.sub(field, 1, bar - 1) .. ':'
    .. string.sub(field, bar + 1)
end

-- The events a record tells (see above), as JSON texts, oldest first.
local function told(meta)
  local out = {}
  if meta.claimedAt then
    out[#out + 1] = '["claimed",' .. int(meta.claimedAt) .. ','
      .. cjson.encode(meta.workerId or '') .. ',' .. cjson.encode(meta.leaseId or '') .. ','
      .. int(meta.attempts or 1) .. ']'
  end
  if meta.status == 'COMPLETED' or (meta.status == 'FAILED' and not meta.deadLettered) then
    out[#out + 1] = '["result",' .. int(meta.updatedAt or 0) .. ','
      .. cjson.encode(meta.status) .. ',' .. cjson.encode(meta.error or '') .. ']'
  end
  return out
end

local function push_events(key, texts)
  if redis.call('RPUSH', key, unpack(texts)) > EVENTS_MAX then
    redis.call('LTRIM', key, -EVENTS_MAX, -1)
  end
end

-- An event given as its JSON text (the batch scripts build theirs, with int above); prior
-- is the task record as it was before this step: its JSON, or the caller's decoded table
-- when the step has not changed it (decoded here only if there is no list).
local function event_json(task_key, field, text, prior)
  local key = events_key(task_key, field)
  local texts = {text}
  if redis.call('EXISTS', key) == 0 then
    texts = told(type(prior) == 'table' and prior or cjson.decode(prior))
    texts[#texts + 1] = text
  end
  push_events(key, texts)
end

-- The task's list (its key) if it has one, else nil. A claim's or a result's event goes
-- to an existing list only: after that step the record tells it, and all before it when
-- there is no list. Callers build the event's text only for a list.
local function listed(task_key, field)
  local key = events_key(task_key, field)
  if redis.call('EXISTS', key) == 1 then return key end
  return nil
end

local function event(task_key, field, ev, prior)
  event_json(task_key, field, cjson.encode(ev), prior)
end

-- Consecutive heartbeats are one event, updated in place: first, last time and count.
local function heartbeat_event(task_key, field, now, prior)
  local key = events_key(task_key, field)
  local last = redis.call('LINDEX', key, -1)
  if last and string.sub(last, 1, 13) == '["heartbeat",' then
    local ev = cjson.decode(last)
    redis.call('LSET', key, -1, cjson.encode({'heartbeat', ev[2], now, ev[4] + 1}))
  else
    event(task_key, field, {'heartbeat', now, now, 1}, prior)
  end
end

-- The dashboard's rates: per tenant, shard and minute, a small hash (key
-- <tag>:rate:<ten>:<minute>, minute = ms // 60000) of how many tasks were created (c),
-- completed (d), failed by a result (f) and dead-lettered (x), counted by the script that
-- makes the transition, in the same step, by the script's clock. The key expires
-- RATE_TTL seconds after its first count in the minute (set when a field is created), so a
-- tenant costs at most ~120 small hashes per shard. Like events_key, the name is built from
-- the task hash's (same tag, same slot): some scripts learn the tenant only as they go.
local RATE_TTL = 7200
local function rate_key(task_key, ten, now)
  return string.sub(task_key, 1, -5) .. 'rate:' .. ten .. ':'
    .. int(math.floor(now / 60000))
end

local function rate(task_key, ten, now, f, n)
  if n <= 0 then return end
  local key = rate_key(task_key, ten, now)
  if redis.call('HINCRBY', key, f, n) == n then redis.call('EXPIRE', key, RATE_TTL) end
end

-- One variadic command for many items ('HSET', 'ZADD', 'SADD', 'ZREM', 'HMGET'...):
-- redis.call(cmd, key, args...) in calls of at most BULK_ARGS arguments (Lua's unpack
-- is bounded by its C stack; BULK_ARGS is even, so field/value and score/member pairs
-- never split). Batch scripts gather their writes per key and make them here: a
-- script's call costs more than the work of one item in it, and on KVRocks each call
-- is one more write to the transaction's batch. Returns the replies' concatenation
-- (what HMGET answers: one entry per argument, in order).
local BULK_ARGS = 1000
local function bulk(cmd, key, args)
  local out = {}
  for i = 1, #args, BULK_ARGS do
    local reply = redis.call(cmd, key, unpack(args, i, math.min(i + BULK_ARGS - 1, #args)))
    if type(reply) == 'table' then
      for j = 1, #reply do out[#out + 1] = reply[j] end
    end
  end
  return out
end

-- The outbox's low-water mark (key <outbox>:low, a string, beside the outbox and so in
-- its slot): no entry of the outbox has a lower score. outbox_claim reads due entries
-- and the next head from it on, not from -inf: on KVRocks a read from the start walks
-- every entry removed or re-scored since the last compaction (each callback claimed
-- leaves one, each delivered another), and the walk grew to ~10 ms a read within 20,000
-- callbacks, under the global script lock. So every script that adds an entry lowers the
-- mark first when the entry's score is below it; outbox_claim raises it to the head it
-- finds. No mark (an outbox written before it) reads from -inf.
-- The lowest score of score/member pairs (nil for none).
local function lowest_score(args)
  local lowest
  for j = 1, #args, 2 do
    local score = tonumber(args[j])
    if not lowest or score < lowest then lowest = score end
  end
  return lowest
end

local function outbox_add(outbox, args)
  local lowest = lowest_score(args)
  if not lowest then return end
  local key = outbox .. ':low'
  local low = redis.call('GET', key)
  if low and lowest < tonumber(low) then redis.call('SET', key, int(lowest)) end
  bulk('ZADD', outbox, args)
end

-- Ready entries (score/member pairs, whole scores) added to one queue, and the tenant's
-- claimable index brought along without reading the queue (see reindex): the head is the
-- lower of the lowest added and the indexed score; a queue out of the index and not
-- paused had no ready entries, so its head is the lowest added.
local function ready_add(idx, ready, paused, qname, cmd, args)
  local lowest = lowest_score(args)
  if not lowest then return end
  bulk('ZADD', ready, args)
  local cur = redis.call('ZSCORE', idx, cmd)
  if cur and tonumber(cur) < lowest then lowest = tonumber(cur) end
  reindex(idx, ready, paused, qname, cmd, int(lowest))
end
