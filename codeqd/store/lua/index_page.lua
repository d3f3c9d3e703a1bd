-- index_page: a page of one queue's tasks from an index, in the index's order, read only.
-- A per-queue index (ready, dlq: members are ids) is read by rank; a shard-wide one
-- (delayed by runAt, leases by expiry: members are tenant|command|id) is walked from
-- the given rank keeping the queue's members: at most `budget` entries are looked at
-- per call, so a page of a small queue in a large shard is bounded too (it may come
-- back short, with the rank to continue from).
-- KEYS: 1 index zset
-- ARGV: 1 member prefix ('' for a per-queue index), 2 start rank, 3 limit, 4 budget
-- Returns {next rank (-1: the index is done), id, score, id, score, ...}.
local prefix, rank = ARGV[1], tonumber(ARGV[2])
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, found, scanned, n = {0}, 0, 0, #prefix
local chunk = limit
if n > 0 then chunk = math.min(budget, 512) end
while scanned < budget do
  local got = redis.call('ZRANGE', KEYS[1], rank, rank + chunk - 1, 'WITHSCORES')
  if #got == 0 then
    out[1] = -1
    return out
  end
  for j = 1, #got, 2 do
    rank = rank + 1
    scanned = scanned + 1
    if n == 0 or string.sub(got[j], 1, n) == prefix then
      out[#out + 1] = string.sub(got[j], n + 1)
      out[#out + 1] = got[j + 1]
      found = found + 1
      if found >= limit then
        out[1] = rank
        return out
      end
    end
  end
  if #got < 2 * chunk then
    out[1] = -1
    return out
  end
end
out[1] = rank
return out
