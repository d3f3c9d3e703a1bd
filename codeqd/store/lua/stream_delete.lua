-- stream_delete: a worker stream closed; forget it (see stream_put.lua).
-- KEYS: 1 the stream's record, 2 the tenant's index of streams
-- ARGV: 1 stream id
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
