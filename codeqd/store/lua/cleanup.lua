--@lib
-- cleanup: delete terminal tasks (and their payloads, results and inline artifacts)
-- finished before a time.
-- KEYS: 1 task, 2 payload, 3 result, 4 done, 5 artifacts
-- ARGV: 1 before ms, 2.. members (tenant|command|id)
local deleted = 0
for i = 2, #ARGV do
  local member = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[4], member)
  if score and tonumber(score) < tonumber(ARGV[1]) then
    local ten, _, id = string.match(member, '^([^|]*)|([^|]*)|(.*)$')
    local field = ten .. '|' .. id
    local raw = redis.call('HGET', KEYS[1], field)
    if raw then
      local meta = cjson.decode(raw)
      for _, name in ipairs(meta.inline or {}) do
        redis.call('HDEL', KEYS[5], field .. '|' .. name)
      end
    end
    redis.call('HDEL', KEYS[1], field)
    redis.call('HDEL', KEYS[2], field)
    redis.call('HDEL', KEYS[3], field)
    redis.call('DEL', events_key(KEYS[1], field))
    redis.call('ZREM', KEYS[4], member)
    deleted = deleted + 1
  end
end
return deleted
