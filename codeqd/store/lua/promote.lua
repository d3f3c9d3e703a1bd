--@lib
-- promote: move due delayed tasks to their ready queues (a bounded batch of one shard).
-- KEYS: 1 task, 2 delayed, 3 counts, 4 seq, 5 paused, then per member its ready zset and
--       its tenant's claimable index (KEYS[4 + 2j], KEYS[5 + 2j] for the j-th member)
-- ARGV: 1 now, 2 wake channel, 3.. members (tenant|command|id)
-- Returns the number moved, then per queue woken its qname and count.
local now = tonumber(ARGV[1])
local moved, woken, readies = 0, {}, {}
for i = 3, #ARGV do
  local member = ARGV[i]
  local j = i - 2
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
        event(KEYS[1], ten .. '|' .. id, {'promoted', now}, meta)
        woken[qname] = (woken[qname] or 0) + 1
        local q = readies[qname]
        if not q then
          q = {ready = KEYS[4 + 2 * j], idx = KEYS[5 + 2 * j], cmd = cmd, adds = {}}
          readies[qname] = q
        end
        q.adds[#q.adds + 1] = int((9 - (meta.priority or 0)) * 1e14 + seq)
        q.adds[#q.adds + 1] = id
        moved = moved + 1
      end
    end
  end
end
for qname, q in pairs(readies) do ready_add(q.idx, q.ready, KEYS[5], qname, q.cmd, q.adds) end
local out = {moved}
for qname, n in pairs(woken) do
  redis.call('PUBLISH', ARGV[2], n .. ':' .. qname)
  out[#out + 1] = qname
  out[#out + 1] = n
end
return out
