/**
 * The `local` store: limit state in this process's memory, answered synchronously
 * (no promise, no allocation beyond the entry). The same arithmetic as the Redis
 * scripts (scripts.ts), so both pass one test suite.
 *
 * Slots are a set of lease ids per key, removed when empty, so memory follows the
 * connections actually held. Buckets and windows carry an expiry (the moment they
 * would be back to their initial state) and are swept every 10 s while any exist.
 * Local leases do not expire: their owner is this process, and it releases them.
 */
import type { BucketResult, Lease, LimitStore, SlotResult, TokenResult, WindowResult } from './types.js';

const SWEEP_MS = 10_000;

interface Entry {
  /** Expiry, ms since the epoch. */
  exp: number;
  a: number;
  b: number;
  c: number;
}

export class LocalStore implements LimitStore {
  readonly policy = 'local' as const;
  readonly #slots = new Map<string, Set<string>>();
  readonly #entries = new Map<string, Entry>();
  #seq = 0;
  #sweeper: NodeJS.Timeout | undefined;
  /** Clock, for tests. */
  readonly #now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
  }

  acquireSlot(key: string, limit: number, _ttlMs: number): SlotResult {
    let held = this.#slots.get(key);
    const n = held ? held.size : 0;
    if (n >= limit) return { ok: false, count: n, lease: undefined };
    if (!held) {
      held = new Set();
      this.#slots.set(key, held);
    }
    const id = String(++this.#seq);
    held.add(id);
    return { ok: true, count: n + 1, lease: { key, id } };
  }

  releaseSlot(lease: Lease): void {
    const held = this.#slots.get(lease.key);
    if (!held || !held.delete(lease.id)) return;
    if (held.size === 0) this.#slots.delete(lease.key);
  }

  countSlots(key: string): number {
    return this.#slots.get(key)?.size ?? 0;
  }

  /** Slot keys held now (tests, admin). */
  slotKeys(): string[] {
    return [...this.#slots.keys()];
  }

  leakyBucket(key: string, rate: number, burst: number): BucketResult {
    const now = this.#now();
    const e = this.#live(key, now);
    // a = excess (requests), b = time of the last admitted request
    let excess = 0;
    if (e) {
      excess = Math.max(e.a - (rate * Math.abs(now - e.b)) / 1000 + 1, 0);
      if (excess > burst) return { ok: false, delayMs: 0, excess };
    }
    this.#set(key, now + Math.ceil(((excess + 1) / rate) * 1000), excess, now, 0);
    return { ok: true, delayMs: (excess / rate) * 1000, excess };
  }

  fixedWindow(key: string, limit: number, windowMs: number, cost = 1): WindowResult {
    const now = this.#now();
    const e = this.#live(key, now);
    // a = count; exp = end of the window
    const count = e ? e.a : 0;
    const resetMs = e ? e.exp - now : windowMs;
    if (count + cost > limit) return { ok: false, remaining: Math.max(0, limit - count), resetMs };
    if (e) e.a = count + cost;
    else this.#set(key, now + windowMs, cost, 0, 0);
    return { ok: true, remaining: Math.max(0, limit - count - cost), resetMs };
  }

  slidingWindow(key: string, limit: number, windowMs: number, cost = 1): WindowResult {
    const now = this.#now();
    const start = now - (now % windowMs);
    const e = this.#live(key, now);
    // a = start of the current window, b = its count, c = the previous window's count
    let cur = 0;
    let prev = 0;
    if (e) {
      if (e.a === start) {
        cur = e.b;
        prev = e.c;
      } else if (e.a === start - windowMs) {
        prev = e.b;
      }
    }
    const elapsed = now - start;
    const estimate = (prev * (windowMs - elapsed)) / windowMs + cur;
    const resetMs = windowMs - elapsed;
    if (estimate + cost > limit) return { ok: false, remaining: Math.max(0, Math.floor(limit - estimate)), resetMs };
    this.#set(key, start + 2 * windowMs, start, cur + cost, prev);
    return { ok: true, remaining: Math.max(0, Math.floor(limit - estimate - cost)), resetMs };
  }

  takeTokens(key: string, rate: number, capacity: number, min: number, want: number): TokenResult {
    const now = this.#now();
    const e = this.#live(key, now);
    // a = tokens, b = time they were counted
    let tokens = e ? Math.min(capacity, e.a + (Math.max(0, now - e.b) * rate) / 1000) : capacity;
    let granted = 0;
    if (tokens >= min) granted = Math.min(want, Math.floor(tokens));
    tokens -= granted;
    const waitMs = granted === 0 ? Math.ceil(((min - tokens) / rate) * 1000) : 0;
    this.#set(key, now + Math.ceil(((capacity - tokens) / rate) * 1000) + 1, tokens, now, 0);
    return { granted, tokens, waitMs };
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  #live(key: string, now: number): Entry | undefined {
    const e = this.#entries.get(key);
    if (e && e.exp <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return e;
  }

  #set(key: string, exp: number, a: number, b: number, c: number): void {
    const e = this.#entries.get(key);
    if (e) {
      e.exp = exp;
      e.a = a;
      e.b = b;
      e.c = c;
      return;
    }
    this.#entries.set(key, { exp, a, b, c });
    if (!this.#sweeper) {
      this.#sweeper = setInterval(() => this.#sweep(), SWEEP_MS);
      this.#sweeper.unref();
    }
  }

  #sweep(): void {
    const now = this.#now();
    for (const [k, e] of this.#entries) if (e.exp <= now) this.#entries.delete(k);
    if (this.#entries.size === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }
}
