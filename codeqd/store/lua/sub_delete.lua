-- sub_delete: remove a worker subscription (and its throttle).
-- KEYS: 1 subscription, 2 tenant index, 3 throttle, 4 worker index
-- ARGV: 1 id, 2 subscriptions channel, 3 tenant
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[3])
if existed == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return existed
