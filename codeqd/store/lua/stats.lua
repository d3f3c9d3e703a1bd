-- stats: depths of some queues of one shard in one round trip (read only).
-- KEYS: 1 counts, 2 paused, then per queue its ready and dlq zsets
-- ARGV: per queue its qname
-- Returns 5 integers per queue: ready, delayed, in progress, dlq, paused (0|1).
local out = {}
for j = 1, #ARGV do
  local q = ARGV[j]
  local c = redis.call('HMGET', KEYS[1], q .. '|delayed', q .. '|inprog')
  out[#out + 1] = redis.call('ZCARD', KEYS[2 * j + 1])
  out[#out + 1] = tonumber(c[1] or 0)
  out[#out + 1] = tonumber(c[2] or 0)
  out[#out + 1] = redis.call('ZCARD', KEYS[2 * j + 2])
  out[#out + 1] = redis.call('SISMEMBER', KEYS[2], q)
end
return out
