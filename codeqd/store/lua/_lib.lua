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
-- first (codeqd/domain/events.py reads them). The list starts with a task's first
-- claim (or cancel): 'created' is in the task record, so a pending task costs no list.
-- The key is built here from the task hash's name because a claim learns its tasks'
-- ids only as it reads them.
local EVENTS_MAX = 50
local function events_key(task_key, field)
  local bar = string.find(field, '|', 1, true)
  return string.sub(task_key, 1, -5) .. 'ev:' .. string.sub(field, 1, bar - 1) .. ':'
    .. string.sub(field, bar + 1)
end

-- An event given as its JSON text: the batch scripts build theirs, with int (above).
local function event_json(task_key, field, text)
  local key = events_key(task_key, field)
  if redis.call('RPUSH', key, text) > EVENTS_MAX then
    redis.call('LTRIM', key, -EVENTS_MAX, -1)
  end
end

local function event(task_key, field, ev)
  event_json(task_key, field, cjson.encode(ev))
end

-- Consecutive heartbeats are one event, updated in place: first, last time and count.
local function heartbeat_event(task_key, field, now)
  local key = events_key(task_key, field)
  local last = redis.call('LINDEX', key, -1)
  if last and string.sub(last, 1, 13) == '["heartbeat",' then
    local ev = cjson.decode(last)
    redis.call('LSET', key, -1, cjson.encode({'heartbeat', ev[2], now, ev[4] + 1}))
  else
    event(task_key, field, {'heartbeat', now, now, 1})
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
