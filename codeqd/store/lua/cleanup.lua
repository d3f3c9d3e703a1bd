-- cleanup: delete terminal tasks (and their payloads and results) finished before a time.
-- KEYS: 1 task, 2 payload, 3 result, 4 done
-- ARGV: 1 before ms, 2.. members (tenant|command|id)
-- Returns the members deleted (the caller removes their artifact files).
local deleted = {}
for i = 2, #ARGV do
  local member = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[4], member)
  if score and tonumber(score) < tonumber(ARGV[1]) then
    local ten, _, id = string.match(member, '^([^|]*)|([^|]*)|(.*)$')
    local field = ten .. '|' .. id
    redis.call('HDEL', KEYS[1], field)
    redis.call('HDEL', KEYS[2], field)
    redis.call('HDEL', KEYS[3], field)
    redis.call('ZREM', KEYS[4], member)
    deleted[#deleted + 1] = member
  end
end
return deleted
