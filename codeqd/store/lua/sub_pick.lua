-- sub_pick: choose who is notified that a queue has work, atomically across codeqd
-- processes. A queue notifies at most once per de-duplication window (every process
-- sees the same wake-up); each unit of the plan picks at most one subscription whose
-- minInterval is not running, and starts that subscription's minInterval.
-- Units: a fanout subscription alone; a group (round-robin: scanning starts at the
-- group's counter, which advances once per event); a hash group (scanning in the
-- caller's rendezvous order).
-- KEYS: 1 event de-duplication key, 2.. throttle and round-robin keys (plan indexes)
-- ARGV: 1 window ms (0 = no de-duplication), 2 plan JSON:
--       [{"rr": key index or 0, "subs": [[id, throttle key index, min interval ms], ...]}]
local window = tonumber(ARGV[1])
if window > 0 and not redis.call('SET', KEYS[1], '1', 'NX', 'PX', window) then
  return {}
end
local chosen = {}
for _, unit in ipairs(cjson.decode(ARGV[2])) do
  local subs, n, start = unit.subs, #unit.subs, 0
  if unit.rr > 0 then
    start = (redis.call('INCR', KEYS[unit.rr]) - 1) % n
    redis.call('PEXPIRE', KEYS[unit.rr], 86400000)
  end
  for i = 0, n - 1 do
    local sub = subs[((start + i) % n) + 1]
    local key, min_ms = KEYS[sub[2]], tonumber(sub[3])
    if min_ms <= 0 then
      chosen[#chosen + 1] = sub[1]
      break
    elseif redis.call('SET', key, '1', 'NX', 'PX', min_ms) then
      chosen[#chosen + 1] = sub[1]
      break
    end
  end
end
return chosen
