/**
 * The Lua scripts of the Redis store, one per primitive, each atomic for its one
 * key (so they run unchanged on Redis Cluster). Registered with ioredis's
 * `defineCommand`, so they run by SHA (EVALSHA, loaded once per connection).
 *
 * Time is Redis's own clock (`TIME`), never an instance's: several gateways with
 * skewed clocks still agree. Fractional results are returned as strings, because
 * Redis truncates Lua numbers to integers in replies. The arithmetic mirrors
 * local.ts exactly; test/store.test.js runs one suite over both.
 */

/** Common prologue: effects replication (needed before Redis 5 for TIME in a writing script), helpers. */
const PROLOGUE = `
if redis.replicate_commands then redis.replicate_commands() end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function extend(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
`;

export interface ScriptDef {
  readonly numberOfKeys: number;
  readonly lua: string;
}

export const SCRIPTS = {
  /**
   * KEYS[1]: sorted set of leases scored by expiry. ARGV: limit, ttl_ms, member.
   * Drops expired leases, then adds the member if fewer than limit remain.
   * Returns {1, count with it} or {0, count}.
   */
  pcSlotAcquire: {
    numberOfKeys: 1,
    lua: `${PROLOGUE}
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
extend(KEYS[1], ttl)
return {1, n + 1}
`,
  },
  /**
   * KEYS[1]: sorted set of leases. ARGV: ttl_ms, member... Drops expired leases
   * (other instances' that died), then pushes each member's expiry to now + ttl
   * (adding it back if it had expired: its connection is still open). Returns how
   * many members were refreshed.
   */
  pcSlotRefresh: {
    numberOfKeys: 1,
    lua: `${PROLOGUE}
local ttl = tonumber(ARGV[1])
local now = now_ms()
local exp = now + ttl
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local args = {}
for i = 2, #ARGV do
  args[#args + 1] = exp
  args[#args + 1] = ARGV[i]
end
if #args > 0 then redis.call('ZADD', KEYS[1], unpack(args)) end
extend(KEYS[1], ttl)
return #ARGV - 1
`,
  },
  /** KEYS[1]: sorted set of leases. Returns the leases not yet expired. */
  pcSlotCount: {
    numberOfKeys: 1,
    lua: `${PROLOGUE}
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms(), '+inf')
`,
  },
  /**
   * KEYS[1]: hash {excess, last}. ARGV: rate (per s), burst. resty.limit.req's
   * leaky bucket. Returns {1|0, excess as a string}.
   */
  pcLeaky: {
    numberOfKeys: 1,
    lua: `${PROLOGUE}
local now = now_ms()
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local rec = redis.call('HMGET', KEYS[1], 'excess', 'last')
local excess = 0
if rec[1] then
  excess = math.max(tonumber(rec[1]) - rate * math.abs(now - tonumber(rec[2])) / 1000 + 1, 0)
  if excess > burst then return {0, tostring(excess)} end
end
redis.call('HSET', KEYS[1], 'excess', tostring(excess), 'last', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((excess + 1) / rate * 1000))
return {1, tostring(excess)}
`,
  },
  /**
   * KEYS[1]: counter. ARGV: limit, window_ms, cost. A window opens at the key's
   * first request. Returns {1|0, count before this request, ms until the window ends}.
   */
  pcFixed: {
    numberOfKeys: 1,
    lua: `${PROLOGUE}
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
local count = 0
local fresh = ttl <= 0
if fresh then
  ttl = window
else
  count = tonumber(redis.call('GET', KEYS[1]) or '0')
end
if count + cost > limit then return {0, count, ttl} end
if fresh then
  redis.call('SET', KEYS[1], cost, 'PX', window)
else
  redis.call('INCRBY', KEYS[1], cost)
end
return {1, count, ttl}
`,
  },
  /**
   * KEYS[1]: hash {start, cur, prev}. ARGV: limit, window_ms, cost. Windows are
   * aligned to multiples of window_ms; the estimate weights the previous window by
   * its overlap. Returns {1|0, estimate before this request as a string, ms until
   * the current window ends}.
   */
  pcSliding: {
    numberOfKeys: 1,
    lua: `${PROLOGUE}
local now = now_ms()
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local start = now - (now % window)
local rec = redis.call('HMGET', KEYS[1], 'start', 'cur', 'prev')
local cur, prev = 0, 0
local s = tonumber(rec[1])
if s == start then
  cur = tonumber(rec[2])
  prev = tonumber(rec[3])
elseif s == start - window then
  prev = tonumber(rec[2])
end
local elapsed = now - start
local estimate = prev * (window - elapsed) / window + cur
if estimate + cost > limit then return {0, tostring(estimate), window - elapsed} end
redis.call('HSET', KEYS[1], 'start', tostring(start), 'cur', tostring(cur + cost), 'prev', tostring(prev))
redis.call('PEXPIREAT', KEYS[1], start + 2 * window)
return {1, tostring(estimate), window - elapsed}
`,
  },
  /**
   * KEYS[1]: hash {tokens, ts}. ARGV: rate (per s), capacity, min, want. A token
   * bucket, full at first. Returns {granted, tokens left as a string, wait ms}.
   */
  pcTokens: {
    numberOfKeys: 1,
    lua: `${PROLOGUE}
local now = now_ms()
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local min = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local rec = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = cap
if rec[1] then
  tokens = math.min(cap, tonumber(rec[1]) + math.max(0, now - tonumber(rec[2])) * rate / 1000)
end
local granted = 0
if tokens >= min then granted = math.min(want, math.floor(tokens)) end
tokens = tokens - granted
local wait = 0
if granted == 0 then wait = math.ceil((min - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate * 1000) + 1)
return {granted, tostring(tokens), wait}
`,
  },
} as const satisfies Record<string, ScriptDef>;

export type ScriptName = keyof typeof SCRIPTS;
