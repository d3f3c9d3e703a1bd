-- rate_limit: take `cost` tokens from a bucket (refilled continuously), or say when they will be there.
-- KEYS: 1 bucket (hash: tokens, ts)
-- ARGV: 1 now ms, 2 rate (tokens per second), 3 burst (bucket size), 4 cost (default 1)
-- Returns {allowed 0|1, retry after ms, tokens left (string)}.
-- A cost above burst could never be met by a full bucket; it is let through once the
-- bucket holds `burst` tokens and the whole cost is taken (the bucket goes into debt),
-- so the long-run rate stays `rate` items per second and a large batch waits, but is
-- never refused for ever.
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4]) or 1
local need = math.min(cost, burst)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
-- A caller whose clock is behind the last one must not refill (or drain) the bucket.
local elapsed = math.max(0, now - ts)
tokens = math.min(burst, tokens + elapsed * rate / 1000)
local allowed = 0
local retry_ms = 0
if tokens >= need then
  tokens = tokens - cost
  allowed = 1
else
  retry_ms = math.ceil((need - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
-- The key lives as long as it takes to refill completely; then it is the default state.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {allowed, retry_ms, tostring(tokens)}
