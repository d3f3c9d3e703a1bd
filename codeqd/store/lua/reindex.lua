--@lib
-- reindex: rebuild the claimable-index entries of some queues of one shard (a keyspace
-- written before the index existed is indexed once, in bounded batches, at start-up).
-- KEYS: 1 paused, then per queue its tenant's claimable index and its ready zset
-- ARGV: per queue its qname and command (ARGV[2j - 1], ARGV[2j] for KEYS[2j], KEYS[2j + 1])
for j = 1, #ARGV / 2 do
  reindex(KEYS[2 * j], KEYS[2 * j + 1], KEYS[1], ARGV[2 * j - 1], ARGV[2 * j])
end
return #ARGV / 2
