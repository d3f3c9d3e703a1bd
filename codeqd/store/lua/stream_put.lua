-- stream_put: register or refresh one open worker stream, for the dashboard's
-- workers page. Advisory only (no task state): the record expires by itself if the
-- daemon that holds the stream dies, and the index forgets what has expired.
-- KEYS: 1 the stream's record, 2 the tenant's index of streams
-- ARGV: 1 stream id, 2 record JSON, 3 now (ms), 4 ttl (ms)
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
return 1
