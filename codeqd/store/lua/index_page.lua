-- index_page: a page of one queue's tasks from an index, in the index's order, read only.
-- A per-queue index (ready, dlq: members are ids) is read by rank; a shard-wide one
-- (delayed by runAt, leases by expiry: members are tenant|command|id) is walked from
-- the given rank keeping the queue's members: at most `budget` entries are looked at
-- per call, so a page of a small queue in a large shard is bounded too (it may come
-- back short, with the rank to continue from).
-- A ready set is read from its queue's score in the tenant's claimable index on, not
-- from the start: nothing live is below that score, so ranks count the same, and on
-- KVRocks a read from the start walks every entry removed since the last compaction (a
-- drained backlog's: tens of ms a page, under the script lock). A queue out of the index
-- (paused, or empty) is read from the start.
-- KEYS: 1 index zset, 2 (a ready set's) the tenant's claimable index
-- ARGV: 1 member prefix ('' for a per-queue index), 2 start rank, 3 limit, 4 budget,
--       5 (with KEYS[2]) the queue's command
-- Returns {next rank (-1: the index is done), id, score, id, score, ...}.
local prefix, rank = ARGV[1], tonumber(ARGV[2])
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local from = (KEYS[2] and redis.call('ZSCORE', KEYS[2], ARGV[5])) or '-inf'
local out, found, scanned, n = {0}, 0, 0, #prefix
local chunk = limit
if n > 0 then chunk = math.min(budget, 512) end
while scanned < budget do
  local got = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'WITHSCORES', 'LIMIT', rank, chunk)
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
