-- promote: move due delayed tasks to their ready queues (a bounded batch of one shard).
-- KEYS: 1 task, 2 delayed, 3 counts, 4 seq, 5.. ready zset per member
-- ARGV: 1 now, 2 wake channel, 3.. members (tenant|command|id), same order as KEYS[5..]
local now = tonumber(ARGV[1])
local moved, woken = 0, {}
for i = 3, #ARGV do
  local member = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[2], member)
  if score and tonumber(score) <= now then
    redis.call('ZREM', KEYS[2], member)
    local ten, cmd, id = string.match(member, '^([^|]*)|([^|]*)|(.*)$')
    local qname = ten .. '|' .. cmd
    redis.call('HINCRBY', KEYS[3], qname .. '|delayed', -1)
    local raw = redis.call('HGET', KEYS[1], ten .. '|' .. id)
    if raw then
      local meta = cjson.decode(raw)
      if meta.status == 'PENDING' then
        local seq = redis.call('INCR', KEYS[4])
        redis.call('ZADD', KEYS[i + 2], (9 - (meta.priority or 0)) * 1e14 + seq, id)
        woken[qname] = (woken[qname] or 0) + 1
        moved = moved + 1
      end
    end
  end
end
for qname, n in pairs(woken) do redis.call('PUBLISH', ARGV[2], n .. ':' .. qname) end
return moved
