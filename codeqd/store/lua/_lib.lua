-- _lib: helpers shared by the scripts that start with the line '--@lib' (the loader
-- prepends this file to them; Lua scripts cannot import one another).

-- The store's clock in ms, unless the caller passed one (tests drive a virtual clock).
-- Leases are set and checked against this one clock, whatever the daemons' clocks say.
local function clock(arg)
  local given = tonumber(arg)
  if given and given > 0 then return given end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The tenant's index of claimable queues on this shard (zset command -> the score of the
-- queue's head) is kept in step with a queue's ready set by every script that changes
-- it: a queue is in the index while it has ready tasks and is not paused. Claims walk
-- the index instead of every queue the tenant ever used.
local function reindex(idx, ready, paused, qname, cmd)
  local head = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
  if head[1] and redis.call('SISMEMBER', paused, qname) == 0 then
    redis.call('ZADD', idx, head[2], cmd)
  else
    redis.call('ZREM', idx, cmd)
  end
end
