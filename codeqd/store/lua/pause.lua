--@lib
-- pause: pause or resume one queue on one shard; a paused queue leaves the tenant's
-- claimable index (claims never see it), a resumed one is put back by its head.
-- KEYS: 1 paused, 2 tenant cmds, 3 tenant's claimable index, 4 ready(queue)
-- ARGV: 1 qname, 2 command, 3 '1' pause | '0' resume
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
else
  redis.call('SREM', KEYS[1], ARGV[1])
end
reindex(KEYS[3], KEYS[4], KEYS[1], ARGV[1], ARGV[2])
return 1
