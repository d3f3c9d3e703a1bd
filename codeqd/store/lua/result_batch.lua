--@lib
-- result_batch: many results of one worker on one shard, each as result.lua would, with one
-- done wake-up (one "tenant|id" line per task that became terminal, "tenant|id|cb" when
-- it queued a result callback) for the whole batch.
-- KEYS: 1 task, 2 result, 3 leases, 4 done, 5 counts, 6 outbox, 7 artifacts
-- ARGV: 1 now (0: the store's clock), 2 done channel, 3 tenant, 4 worker, then per item: id, lease id ('' = not
--       sent), status, result json, error ('' = none), n, and n inline artifact
--       (name, content) pairs
-- Returns one entry per item: {'OK', meta} or the refusal result.lua would give.
local now, ten, worker = clock(ARGV[1]), ARGV[3], ARGV[4]
local out, done, completed, failed = {}, {}, 0, 0
local i = 5
while i <= #ARGV do
  local id, lease = ARGV[i], ARGV[i + 1]
  local inline = tonumber(ARGV[i + 5])
  local field = ten .. '|' .. id
  local raw = redis.call('HGET', KEYS[1], field)
  if not raw then
    out[#out + 1] = {'NOT_FOUND'}
  else
    local meta = cjson.decode(raw)
    if meta.status ~= 'IN_PROGRESS' then
      out[#out + 1] = {'NOT_IN_PROGRESS', meta.status}
    elseif meta.workerId ~= worker then
      out[#out + 1] = {'NOT_OWNER'}
    elseif lease ~= '' and meta.leaseId ~= lease then
      out[#out + 1] = {'LEASE_LOST'}
    elseif (meta.leaseUntil or 0) <= now then
      out[#out + 1] = {'LEASE_EXPIRED'}
    else
      local qname = ten .. '|' .. meta.command
      local member = qname .. '|' .. id
      meta.status = ARGV[i + 2]
      meta.updatedAt = now
      if ARGV[i + 4] ~= '' then meta.error = ARGV[i + 4] else meta.error = nil end
      if inline > 0 then
        meta.inline = {}
        for j = i + 6, i + 5 + 2 * inline, 2 do
          redis.call('HSET', KEYS[7], field .. '|' .. ARGV[j], ARGV[j + 1])
          meta.inline[#meta.inline + 1] = ARGV[j]
        end
      end
      raw = cjson.encode(meta)
      redis.call('HSET', KEYS[1], field, raw)
      event(KEYS[1], field, {'result', now, ARGV[i + 2], ARGV[i + 4]})
      redis.call('HSET', KEYS[2], field, ARGV[i + 3])
      redis.call('ZREM', KEYS[3], member)
      redis.call('HINCRBY', KEYS[5], qname .. '|inprog', -1)
      redis.call('ZADD', KEYS[4], now, member)
      if meta.webhook then redis.call('ZADD', KEYS[6], now, member) end
      if ARGV[i + 2] == 'COMPLETED' then completed = completed + 1 else failed = failed + 1 end
      done[#done + 1] = meta.webhook and (field .. '|cb') or field
      out[#out + 1] = {'OK', raw}
    end
  end
  i = i + 6 + 2 * inline
end
rate(KEYS[1], ten, now, 'd', completed)
rate(KEYS[1], ten, now, 'f', failed)
if #done > 0 then redis.call('PUBLISH', ARGV[2], table.concat(done, '\n')) end
return out
