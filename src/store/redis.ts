/**
 * The `redis`, `redis-cluster` and `redis-sentinel` stores: limit state in Redis,
 * shared by every gateway instance that points at it, each primitive one Lua
 * script (scripts.ts). The three differ only in the ioredis client they are given
 * (registry.ts); a Sentinel-managed Redis is a plain client that asks the
 * sentinels where the master is, and asks again after a failover.
 *
 * Connection slots are leases: a member of a per-key sorted set scored by its
 * expiry. This instance refreshes the leases it holds every ttl/3 (one script call
 * per key), so when an instance dies its slots expire within `ttl` and the next
 * acquire removes them (APISIX #12823). A release that fails (Redis down) is kept
 * and retried on every refresh tick and when Redis is back, so the keys return to
 * their baseline once Redis is reachable; an acquire whose answer was lost is
 * treated the same way (its member id is removed later, whether or not Redis added it).
 *
 * Outages: the client has no offline queue, a command timeout and bounded retries,
 * so no call ever waits behind a dead connection. While the connection is not
 * ready, or for a second after a command timed out, calls fail at once with
 * StoreUnavailableError. Reconnection goes on in the background (every second at
 * most) and limits resume by themselves. The outage is logged once per 10 s, not
 * per call, and its end once.
 *
 * Every failure is also published on `portcullis:store:error` (channels.storeError:
 * store, address without credentials, kind), one event per failed call, refused call
 * or connection error, for metrics to count; nothing is built when nobody listens.
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { channels, type StoreErrorEvent } from '../core/events.js';
import { SCRIPTS } from './scripts.js';
import {
  StoreUnavailableError,
  type BucketResult,
  type Lease,
  type LimitStore,
  type SlotResult,
  type StoreLogger,
  type TokenResult,
  type WindowResult,
} from './types.js';

/** The scripts as ioredis commands (defineCommand adds them at run time). */
interface ScriptCommands {
  pcSlotAcquire(key: string, limit: number, ttlMs: number, member: string): Promise<[number, number]>;
  pcSlotRefresh(key: string, ttlMs: number, ...members: string[]): Promise<number>;
  pcSlotCount(key: string): Promise<number>;
  pcLeaky(key: string, rate: number, burst: number): Promise<[number, string]>;
  pcFixed(key: string, limit: number, windowMs: number, cost: number): Promise<[number, number, number]>;
  pcSliding(key: string, limit: number, windowMs: number, cost: number): Promise<[number, string, number]>;
  pcTokens(key: string, rate: number, capacity: number, min: number, want: number): Promise<[number, string, number]>;
}

export type RedisClient = Redis | Cluster;
type Client = RedisClient & ScriptCommands;

/** How often an outage is logged while it lasts. */
export const OUTAGE_LOG_INTERVAL_MS = 10_000;
/** How often releases that could not be sent are retried. */
const ORPHAN_RETRY_MS = 500;
/** Members per refresh or removal call. */
const BATCH = 500;

export type RedisPolicy = 'redis' | 'redis-cluster' | 'redis-sentinel';

/**
 * What a store-error event says went wrong: `connection` (the client lost or could
 * not make its connection, or no sentinel answered), `timeout` (a command got no
 * answer in time), `command` (Redis answered with an error: a script error,
 * READONLY, ...), `unavailable` (a call refused at once, without being sent, while
 * Redis is down or just timed out).
 */
export type StoreErrorKind = 'connection' | 'timeout' | 'command' | 'unavailable';

export interface RedisStoreOptions {
  policy: RedisPolicy;
  /** The address for logs, without credentials. */
  label: string;
  /**
   * The address in store-error events, without credentials: `host:port`, a cluster's
   * first node, a Sentinel master group's name (default: the label).
   */
  address?: string;
  /** Prefix of every key (default `portcullis:`). */
  prefix?: string;
  /** How long calls fail at once after a command timed out, ms (default 1000). */
  cooldownMs?: number;
  /** How long the first calls wait for the first connection, ms (default 1000). */
  connectWaitMs?: number;
}

interface Held {
  readonly ttl: number;
  readonly ids: Set<string>;
}

export class RedisStore implements LimitStore {
  readonly policy: RedisPolicy;
  readonly label: string;
  readonly #address: string;
  readonly #client: Client;
  readonly #prefix: string;
  readonly #cooldownMs: number;
  readonly #connectWaitMs: number;
  /** Unique per store instance: lease ids are `<instance>:<seq>`. */
  readonly #instance = randomBytes(6).toString('hex');
  #seq = 0;
  /** Leases held by this instance, by full key. */
  readonly #held = new Map<string, Held>();
  /** One refresh timer per distinct ttl. */
  readonly #timers = new Map<number, NodeJS.Timeout>();
  readonly #refreshing = new Set<number>();
  /** Lease ids to remove (failed releases, acquires with a lost answer), by full key. */
  readonly #orphans = new Map<string, Set<string>>();
  #connecting: Promise<void> | undefined;
  #firstAttemptDone = false;
  #coolUntil = 0;
  #closed = false;
  #log: StoreLogger | undefined;
  // outage bookkeeping
  #down = false;
  #downSince = 0;
  #lastReport = 0;
  #suppressed = 0;
  #reported = false;

  constructor(client: RedisClient, opts: RedisStoreOptions) {
    this.policy = opts.policy;
    this.label = opts.label;
    this.#address = opts.address ?? opts.label;
    this.#prefix = opts.prefix ?? 'portcullis:';
    this.#cooldownMs = opts.cooldownMs ?? 1000;
    this.#connectWaitMs = opts.connectWaitMs ?? 1000;
    for (const [name, def] of Object.entries(SCRIPTS)) client.defineCommand(name, def);
    this.#client = client as Client;
    client.on('error', (err: Error) => {
      this.#publish('connection');
      this.#outage(err);
    });
    client.on('ready', () => this.#ready());
  }

  /** Where outages are reported (the latest logger given: a plugin passes ctx.log on each call). */
  useLogger(log: StoreLogger): void {
    this.#log = log;
  }

  /** True from a failed call until the next one that succeeds (not before the first call). */
  get down(): boolean {
    return this.#down;
  }

  /** True while Redis is believed reachable. */
  get available(): boolean {
    return this.#client.status === 'ready' && !this.#down;
  }

  /** The full Redis key of a caller's key (tests inspect Redis with it). */
  redisKey(key: string): string {
    return this.#prefix + key;
  }

  acquireSlot(key: string, limit: number, ttlMs: number): Promise<SlotResult> {
    const full = this.#prefix + key;
    const id = `${this.#instance}:${(++this.#seq).toString(36)}`;
    const ttl = Math.max(1, Math.round(ttlMs));
    return this.#call(
      () => this.#client.pcSlotAcquire(full, limit, ttl, id),
      // The script may have run: remove the id once Redis answers again.
      () => this.#orphan(full, [id]),
    ).then(([ok, count]) => {
      if (ok !== 1) return { ok: false, count, lease: undefined };
      this.#hold(full, ttl, id);
      return { ok: true, count, lease: { key, id } };
    });
  }

  releaseSlot(lease: Lease): Promise<void> {
    const full = this.#prefix + lease.key;
    const held = this.#held.get(full);
    if (!held || !held.ids.delete(lease.id)) return Promise.resolve();
    if (held.ids.size === 0) {
      this.#held.delete(full);
      this.#stopTimerIfUnused(held.ttl);
    }
    if (!this.#usable()) {
      this.#orphan(full, [lease.id]);
      return Promise.resolve();
    }
    return this.#client.zrem(full, lease.id).then(
      () => this.#up(),
      (err: unknown) => {
        this.#failed(err);
        this.#orphan(full, [lease.id]);
      },
    );
  }

  countSlots(key: string): Promise<number> {
    return this.#call(() => this.#client.pcSlotCount(this.#prefix + key));
  }

  leakyBucket(key: string, rate: number, burst: number): Promise<BucketResult> {
    return this.#call(() => this.#client.pcLeaky(this.#prefix + key, rate, burst)).then(([ok, e]) => {
      const excess = Number(e);
      return ok === 1 ? { ok: true, delayMs: (excess / rate) * 1000, excess } : { ok: false, delayMs: 0, excess };
    });
  }

  fixedWindow(key: string, limit: number, windowMs: number, cost = 1): Promise<WindowResult> {
    return this.#call(() => this.#client.pcFixed(this.#prefix + key, limit, Math.round(windowMs), cost)).then(([ok, count, ttl]) => ({
      ok: ok === 1,
      remaining: Math.max(0, limit - count - (ok === 1 ? cost : 0)),
      resetMs: ttl,
    }));
  }

  slidingWindow(key: string, limit: number, windowMs: number, cost = 1): Promise<WindowResult> {
    return this.#call(() => this.#client.pcSliding(this.#prefix + key, limit, Math.round(windowMs), cost)).then(([ok, est, reset]) => ({
      ok: ok === 1,
      remaining: Math.max(0, Math.floor(limit - Number(est) - (ok === 1 ? cost : 0))),
      resetMs: reset,
    }));
  }

  takeTokens(key: string, rate: number, capacity: number, min: number, want: number): Promise<TokenResult> {
    return this.#call(() => this.#client.pcTokens(this.#prefix + key, rate, capacity, min, want)).then(([granted, tokens, waitMs]) => ({
      granted,
      tokens: Number(tokens),
      waitMs,
    }));
  }

  /** Stop refreshing, send what is pending, then quit (bounded; cut after 1 s). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers.values()) clearInterval(t);
    this.#timers.clear();
    const c = this.#client;
    if (c.status === 'ready') {
      await this.#flushOrphans().catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        c.quit().catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, 1000);
        }),
      ]);
      clearTimeout(timer);
    }
    c.disconnect();
  }

  // ---- calls ------------------------------------------------------------------

  #usable(): boolean {
    return !this.#closed && this.#client.status === 'ready' && Date.now() >= this.#coolUntil;
  }

  /**
   * Run one command. Fails at once while Redis is not ready; on the very first call
   * waits for the first connection attempt (at most the connect timeout).
   */
  #call<T>(run: () => Promise<T>, onUncertain?: () => void): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError(`${this.label}: store closed`));
    const status = this.#client.status;
    if (!this.#firstAttemptDone && status !== 'ready') {
      return this.#connect().then(() => this.#call(run, onUncertain));
    }
    if (!this.#usable()) {
      const err = new StoreUnavailableError(`${this.label}: redis ${status === 'ready' ? 'timed out recently' : status}`);
      this.#publish('unavailable');
      this.#outage(err);
      return Promise.reject(err);
    }
    return run().then(
      (v) => {
        this.#up();
        return v;
      },
      (err: unknown) => {
        onUncertain?.();
        throw this.#failed(err);
      },
    );
  }

  /**
   * The first connection attempt, made on the first call (loading a config never
   * connects); calls made meanwhile wait for it, at most the connect timeout.
   * Afterwards calls never wait: they fail at once until the client is ready.
   */
  #connect(): Promise<void> {
    if (this.#connecting) return this.#connecting;
    let timer: NodeJS.Timeout | undefined;
    const attempt = this.#client.status === 'wait' ? this.#client.connect() : Promise.resolve();
    // A client that neither connects nor fails (a cluster whose ready check keeps failing) is not waited for.
    const bounded = Promise.race([
      attempt,
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new StoreUnavailableError(`${this.label}: not ready after ${this.#connectWaitMs} ms`)), this.#connectWaitMs);
      }),
    ]).finally(() => clearTimeout(timer));
    attempt.catch(() => undefined);
    this.#connecting = bounded.then(
      () => {
        this.#firstAttemptDone = true;
      },
      (err: unknown) => {
        this.#firstAttemptDone = true;
        this.#outage(err);
      },
    );
    return this.#connecting;
  }

  #failed(err: unknown): StoreUnavailableError {
    const msg = err instanceof Error ? err.message : String(err);
    const timedOut = /timed out/i.test(msg);
    if (timedOut) this.#coolUntil = Date.now() + this.#cooldownMs;
    // ioredis names an error Redis answered with (a script error, READONLY, NOSCRIPT) ReplyError.
    this.#publish(timedOut ? 'timeout' : err instanceof Error && err.name === 'ReplyError' ? 'command' : 'connection');
    const e = err instanceof StoreUnavailableError ? err : new StoreUnavailableError(`${this.label}: ${msg}`, { cause: err });
    this.#outage(e);
    return e;
  }

  // ---- outage reporting ---------------------------------------------------------

  /** One store-error event (metrics count them); free when nobody subscribed. */
  #publish(kind: StoreErrorKind): void {
    if (this.#closed || !channels.storeError.hasSubscribers) return;
    const ev: StoreErrorEvent = { store: this.policy, address: this.#address, kind };
    channels.storeError.publish(ev);
  }

  #outage(err: unknown): void {
    if (this.#closed) return;
    const now = Date.now();
    if (!this.#down) {
      this.#down = true;
      this.#downSince = now;
    }
    if (now - this.#lastReport < OUTAGE_LOG_INTERVAL_MS) {
      this.#suppressed++;
      return;
    }
    this.#lastReport = now;
    const log = this.#log;
    if (!log) return;
    this.#reported = true;
    log.warn(
      {
        store: this.label,
        err: err instanceof Error ? err.message : String(err),
        down_ms: now - this.#downSince,
        failures_since_last_report: this.#suppressed,
      },
      'limit store unavailable (Redis): limits answer per allow_degradation until it is back',
    );
    this.#suppressed = 0;
  }

  /** A command succeeded: Redis is back (ends a cooldown too). */
  #up(): void {
    this.#coolUntil = 0;
    if (!this.#down) return;
    this.#down = false;
    if (this.#reported) {
      this.#log?.info({ store: this.label, down_ms: Date.now() - this.#downSince }, 'limit store available again (Redis)');
    }
    this.#reported = false;
    this.#suppressed = 0;
    this.#lastReport = 0;
  }

  #ready(): void {
    this.#coolUntil = 0;
    this.#up();
    // Leases may have expired during a long outage: refresh all now; send what was pending.
    for (const ttl of this.#timers.keys()) void this.#refresh(ttl);
    void this.#flushOrphans().catch(() => undefined);
  }

  // ---- leases ---------------------------------------------------------------------

  #hold(full: string, ttl: number, id: string): void {
    if (this.#closed) return; // answered after close: the lease expires by itself
    let held = this.#held.get(full);
    if (!held) {
      held = { ttl, ids: new Set() };
      this.#held.set(full, held);
    }
    held.ids.add(id);
    if (!this.#timers.has(held.ttl)) {
      const t = setInterval(() => void this.#refresh(held.ttl), Math.max(50, Math.floor(held.ttl / 3)));
      t.unref();
      this.#timers.set(held.ttl, t);
    }
  }

  #stopTimerIfUnused(ttl: number): void {
    for (const h of this.#held.values()) if (h.ttl === ttl) return;
    const t = this.#timers.get(ttl);
    if (t) clearInterval(t);
    this.#timers.delete(ttl);
  }

  async #refresh(ttl: number): Promise<void> {
    if (this.#refreshing.has(ttl)) return;
    this.#refreshing.add(ttl);
    try {
      if (this.#orphans.size > 0) await this.#flushOrphans();
      if (!this.#usable()) return;
      const calls: Promise<unknown>[] = [];
      for (const [full, held] of this.#held) {
        if (held.ttl !== ttl || held.ids.size === 0) continue;
        const ids = [...held.ids];
        for (let i = 0; i < ids.length; i += BATCH) calls.push(this.#client.pcSlotRefresh(full, ttl, ...ids.slice(i, i + BATCH)));
      }
      await Promise.all(calls);
      this.#up();
    } catch (err) {
      this.#failed(err);
    } finally {
      this.#refreshing.delete(ttl);
    }
  }

  #orphan(full: string, ids: string[]): void {
    let set = this.#orphans.get(full);
    if (!set) {
      set = new Set();
      this.#orphans.set(full, set);
    }
    for (const id of ids) set.add(id);
    if (!this.#closed) this.#retryOrphansLater();
  }

  #orphanTimer: NodeJS.Timeout | undefined;

  #retryOrphansLater(): void {
    if (this.#orphanTimer) return;
    this.#orphanTimer = setTimeout(() => {
      this.#orphanTimer = undefined;
      if (this.#closed || this.#orphans.size === 0) return;
      this.#flushOrphans().then(
        () => {
          if (this.#orphans.size > 0) this.#retryOrphansLater();
        },
        () => this.#retryOrphansLater(),
      );
    }, ORPHAN_RETRY_MS);
    this.#orphanTimer.unref();
  }

  async #flushOrphans(): Promise<void> {
    if (this.#orphans.size === 0 || this.#client.status !== 'ready') return;
    const calls: Promise<unknown>[] = [];
    for (const [full, set] of this.#orphans) {
      const ids = [...set];
      for (let i = 0; i < ids.length; i += BATCH) {
        const chunk = ids.slice(i, i + BATCH);
        calls.push(
          this.#client.zrem(full, ...chunk).then(() => {
            this.#up();
            for (const id of chunk) set.delete(id);
            if (set.size === 0 && this.#orphans.get(full) === set) this.#orphans.delete(full);
          }),
        );
      }
    }
    await Promise.all(calls);
  }
}
