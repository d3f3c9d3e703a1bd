-- rate_limit: take one token from a bucket (refilled continuously), or say when one will be there.
-- KEYS: 1 bucket (hash: tokens, ts)
-- ARGV: 1 now ms, 2 rate (tokens per second), 3 burst (bucket size)
-- Returns {allowed 0|1, retry after ms, tokens left (string)}.
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
-- A caller whose clock is behind the last one must not refill (or drain) the bucket.
local elapsed = math.max(0, now - ts)
tokens = math.min(burst, tokens + elapsed * rate / 1000)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
-- The key lives as long as it takes to refill completely; then it is the default state.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, retry_ms, tostring(tokens)}
