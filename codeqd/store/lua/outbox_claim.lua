--@lib
-- outbox_claim: lease up to N due result callbacks of one shard for sending. Each claimed
-- entry gets its lease deadline as its score (a crash mid-send makes it due again) and a
-- new attempt number, the fencing token its sender must present to settle it.
-- KEYS: 1 outbox, 2 outbox attempts, 3 task, 4 result
-- ARGV: 1 now, 2 lease ms, 3 max count, 4 '1': read from -inf (a sweep), not from the mark
local now, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
-- Read from the low-water mark on (outbox_add in _lib), not from -inf; a sweep reads from
-- -inf and sets the mark to the head it finds, whatever the mark was.
local low_key = KEYS[1] .. ':low'
local low = (ARGV[4] ~= '1' and redis.call('GET', low_key)) or '-inf'
local due = redis.call('ZRANGEBYSCORE', KEYS[1], low, now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, member in ipairs(due) do
  local ten, _, id = string.match(member, '^([^|]*)|([^|]*)|(.*)$')
  local field = ten .. '|' .. id
  local raw = redis.call('HGET', KEYS[3], field)
  local meta = raw and cjson.decode(raw)
  if (not meta) or (meta.status ~= 'COMPLETED' and meta.status ~= 'FAILED'
                    and meta.status ~= 'CANCELLED') or not meta.webhook then
    -- The task was removed, or replayed (its next terminal step queues a new callback).
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[2], member)
  else
    local attempt = redis.call('HINCRBY', KEYS[2], member, 1)
    redis.call('ZADD', KEYS[1], now + lease_ms, member)
    out[#out + 1] = {member, attempt, raw, redis.call('HGET', KEYS[4], field) or ''}
  end
end
-- Claimed entries now carry their lease deadline, later than any due entry: the head is
-- the first entry from the mark on, and the mark rises to it (an empty outbox keeps its
-- mark: an entry added later lowers it if it must).
local head = redis.call('ZRANGEBYSCORE', KEYS[1], low, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if head[2] and head[2] ~= low then redis.call('SET', low_key, head[2]) end
return {out, head[2] or ''}
