/**
 * Shared limit state: the one interface every limit plugin talks to, whatever
 * holds the state (`local`: this process; `redis`, `redis-cluster`,
 * `redis-sentinel`: a Redis shared by every gateway instance). Both
 * implementations pass the same test suite (test/store.test.js).
 *
 * Every operation is atomic for its key: on Redis it is one Lua script. The
 * local store answers synchronously (a plain value); the Redis store answers
 * with a promise, which rejects with `StoreUnavailableError` when Redis cannot
 * be reached in time: callers choose what to do then (`allow_degradation`).
 *
 * Primitives and their plugins:
 *   acquireSlot / releaseSlot   limit-conn: a connection holds a slot (a lease) for its life
 *   leakyBucket                 limit-req: APISIX's leaky bucket (resty.limit.req)
 *   fixedWindow / slidingWindow limit-count
 *   takeTokens                  limit-messages: a token bucket that grants in batches
 *
 * Keys are the caller's (a plugin namespaces them, e.g. `conn:route:chat:1.2.3.4`);
 * a store may prefix them (Redis: `portcullis:`).
 */

export type MaybePromise<T> = T | Promise<T>;

export type StorePolicy = 'local' | 'redis' | 'redis-cluster' | 'redis-sentinel';

/** A held connection slot. Give it back with releaseSlot(), as often as you like: only the first counts. */
export interface Lease {
  readonly key: string;
  /** Unique among every lease of every instance (Redis: the sorted-set member). */
  readonly id: string;
}

export interface SlotResult {
  /** True when a slot was taken. */
  readonly ok: boolean;
  /**
   * Slots held for the key: with this one when ok (so `count` is this slot's
   * position, 1-based, which limit-conn turns into a delay), without when refused.
   */
  readonly count: number;
  /** The slot, when ok. */
  readonly lease: Lease | undefined;
}

export interface BucketResult {
  /** False when the request would overflow the bucket (it is then not counted). */
  readonly ok: boolean;
  /** How long to delay this request so the bucket drains at `rate` (0 for the first), ms. */
  readonly delayMs: number;
  /** Requests in the bucket beyond the drained rate, this one included (fractional). */
  readonly excess: number;
}

export interface WindowResult {
  /** False when `cost` more would pass `limit` (it is then not counted). */
  readonly ok: boolean;
  /** Requests still allowed in the window after this one (0 when refused, never negative). */
  readonly remaining: number;
  /** Until the current window ends, ms (`X-RateLimit-Reset`, `Retry-After`). */
  readonly resetMs: number;
}

export interface TokenResult {
  /** Tokens taken: between `min` and `want`, or 0 when fewer than `min` were there. */
  readonly granted: number;
  /** Tokens left in the bucket (fractional). */
  readonly tokens: number;
  /** When nothing was granted: until `min` tokens will be there, ms; else 0. */
  readonly waitMs: number;
}

export interface LimitStore {
  readonly policy: StorePolicy;

  /**
   * Take one of `limit` slots of `key`. On Redis a slot is a lease that expires
   * `ttlMs` after its last refresh; this instance refreshes the leases it holds
   * (every ttl/3), so only the slots of an instance that died expire.
   */
  acquireSlot(key: string, limit: number, ttlMs: number): MaybePromise<SlotResult>;
  /**
   * Give a slot back. Idempotent; never throws or rejects: on Redis a release
   * that fails is retried until it succeeds (and the lease expires by itself meanwhile).
   */
  releaseSlot(lease: Lease): MaybePromise<void>;
  /** Slots held for `key` now (expired leases not counted). */
  countSlots(key: string): MaybePromise<number>;

  /**
   * APISIX's leaky bucket (limit-req): requests drain at `rate` per second; up to
   * `burst` requests beyond the rate are admitted with a delay, more are refused.
   */
  leakyBucket(key: string, rate: number, burst: number): MaybePromise<BucketResult>;
  /** A fixed window of `windowMs` starting at the key's first request: at most `limit` in it. */
  fixedWindow(key: string, limit: number, windowMs: number, cost?: number): MaybePromise<WindowResult>;
  /**
   * A sliding window, estimated from two aligned fixed windows (the previous
   * window's count weighted by how much of it still overlaps): at most `limit`.
   */
  slidingWindow(key: string, limit: number, windowMs: number, cost?: number): MaybePromise<WindowResult>;
  /**
   * A token bucket of `capacity` tokens refilled at `rate` per second. Takes up
   * to `want` tokens when at least `min` are there (min = want: all or nothing;
   * min = 1: a batch to spend locally), else none.
   */
  takeTokens(key: string, rate: number, capacity: number, min: number, want: number): MaybePromise<TokenResult>;

  /** Stop timers and close connections. Further calls fail (Redis) or still work (local). */
  close(): Promise<void>;
}

/** Redis could not be reached in time (or refused the command): the caller degrades or refuses. */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** The logger a store reports outages to (pino-compatible; a plugin's ctx.log). */
export interface StoreLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}
