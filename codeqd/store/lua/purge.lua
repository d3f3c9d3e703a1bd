--@lib
-- purge: delete dead-lettered tasks of one queue for good (task, payload, result).
-- KEYS: 1 task, 2 payload, 3 result, 4 dlq(queue)
-- ARGV: 1 tenant, 2.. ids
local ten = ARGV[1]
local purged, missing = {}, {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[4], id) == 1 then
    local field = ten .. '|' .. id
    redis.call('HDEL', KEYS[1], field)
    redis.call('HDEL', KEYS[2], field)
    redis.call('HDEL', KEYS[3], field)
    redis.call('DEL', events_key(KEYS[1], field))
    purged[#purged + 1] = id
  else
    missing[#missing + 1] = id
  end
end
return {purged, missing}
