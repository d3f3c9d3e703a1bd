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
local now_s = int(now)
local out, done, completed, failed = {}, {}, 0, 0
-- Every record read in one call first; writes gathered per key and made after the loop
-- (see bulk in _lib). A task reported twice in the batch sees its first report here.
local fields, i = {}, 5
while i <= #ARGV do
  fields[#fields + 1] = ten .. '|' .. ARGV[i]
  i = i + 6 + 2 * tonumber(ARGV[i + 5])
end
local stored, current = bulk('HMGET', KEYS[1], fields), {}
local metas, results, leases, ended, outbox, inprog = {}, {}, {}, {}, {}, {}
local n = 0
i = 5
while i <= #ARGV do
  n = n + 1
  local id, lease = ARGV[i], ARGV[i + 1]
  local inline = tonumber(ARGV[i + 5])
  local field = fields[n]
  local raw = current[field] or stored[n]
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
      current[field] = raw
      metas[#metas + 1] = field
      metas[#metas + 1] = raw
      local key = listed(KEYS[1], field) -- no list: the record tells the result
      if key then
        push_events(key, {'["result",' .. now_s .. ',' .. cjson.encode(ARGV[i + 2]) .. ','
          .. cjson.encode(ARGV[i + 4]) .. ']'})
      end
      results[#results + 1] = field
      results[#results + 1] = ARGV[i + 3]
      leases[#leases + 1] = member
      inprog[qname] = (inprog[qname] or 0) + 1
      ended[#ended + 1] = now_s
      ended[#ended + 1] = member
      if meta.webhook then
        outbox[#outbox + 1] = now_s
        outbox[#outbox + 1] = member
      end
      if ARGV[i + 2] == 'COMPLETED' then completed = completed + 1 else failed = failed + 1 end
      done[#done + 1] = meta.webhook and (field .. '|cb') or field
      out[#out + 1] = {'OK', raw}
    end
  end
  i = i + 6 + 2 * inline
end
if #done > 0 then
  bulk('HSET', KEYS[1], metas)
  bulk('HSET', KEYS[2], results)
  bulk('ZREM', KEYS[3], leases)
  for qname, k in pairs(inprog) do redis.call('HINCRBY', KEYS[5], qname .. '|inprog', -k) end
  bulk('ZADD', KEYS[4], ended)
  outbox_add(KEYS[6], outbox)
end
rate(KEYS[1], ten, now, 'd', completed)
rate(KEYS[1], ten, now, 'f', failed)
if #done > 0 then redis.call('PUBLISH', ARGV[2], table.concat(done, '\n')) end
return out
