-- stats: depth of one queue in one round trip (read only).
-- KEYS: 1 ready, 2 dlq, 3 counts, 4 paused
-- ARGV: 1 qname
local c = redis.call('HMGET', KEYS[3], ARGV[1] .. '|delayed', ARGV[1] .. '|inprog')
return {redis.call('ZCARD', KEYS[1]), tonumber(c[1] or 0), tonumber(c[2] or 0),
        redis.call('ZCARD', KEYS[2]), redis.call('SISMEMBER', KEYS[4], ARGV[1])}
