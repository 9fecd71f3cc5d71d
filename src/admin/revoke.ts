/**
 * Revocation across instances: `DELETE /admin/connections` on one instance is
 * published on a Redis pub/sub channel, and every instance sharing that Redis
 * (`gateway.redis`) closes its own matching connections.
 *
 * Each gateway holds one subscriber connection, opened at start, that reconnects
 * by itself (ioredis re-subscribes after a reconnect; with Sentinel it asks the
 * sentinels for the master again); the publishing connection
 * is opened on the first revocation. Messages are small JSON objects:
 *
 *   {"v":1,"origin":"<instance id>","filter":{"consumer":"alice"}}
 *   {"v":1,"origin":"<instance id>","filter":{"consumer":"alice"},"block_s":600}
 *   {"v":1,"origin":"<instance id>","unblock":"alice"}
 *
 * (a revocation; a revocation that also blocks the consumer for block_s seconds;
 * the lifting of a block). With `gateway.redis.revoke_secret` every message also
 * carries `ts` (ms since the epoch) and `sig`, the HMAC-SHA256 (base64url) of the
 * message as sent without `sig`; a message that is unsigned, badly signed or more
 * than 60 s away from this instance's clock is ignored.
 *
 * A message from this instance (same origin) is ignored: the instance has closed
 * its connections already (with `gateway.workers`, every worker of the instance
 * shares the id, since the admin relay already reached them all). Anything else
 * that does not have exactly this shape is ignored and logged (once per interval).
 *
 * Redis pub/sub channels are not per database, so the database number is part of
 * the channel name: instances on different databases of one server stay apart.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import cluster from 'node:cluster';
import { Redis, type RedisOptions } from 'ioredis';
import type { GatewayRedisSettings } from '../core/plugin.js';
import type { Logger } from '../core/log.js';
import { MAX_BLOCK_SECONDS } from '../server/blocks.js';
import { redactUrl } from './redact.js';

/** Which live connections a revocation closes: exactly one criterion. */
export type RevokeFilter = { consumer: string } | { route: string } | { id: string };

export const FILTER_KEYS = ['consumer', 'route', 'id'] as const;
export const MAX_FILTER_VALUE = 256;
/** Bytes of a pub/sub message we are willing to parse. */
const MAX_MESSAGE = 2048;
const LOG_INTERVAL_MS = 10_000;

/** Set by the cluster primary before it forks, so the workers of one instance share an id. */
export const INSTANCE_ENV = 'PORTCULLIS_CLUSTER_INSTANCE';

/** This instance's id on the revoke channel: the cluster's (workers), else a new one per gateway. */
export function instanceId(): string {
  const shared = cluster.isWorker ? process.env[INSTANCE_ENV] : undefined;
  return shared !== undefined && shared !== '' ? shared : randomUUID();
}

/** The channel for `gateway.redis`: `portcullis:revoke:<db>`. */
export function channelFor(redis: GatewayRedisSettings): string {
  if (redis.url === undefined) return `portcullis:revoke:${redis.database}`;
  let db = 0;
  try {
    const path = new URL(redis.url).pathname.replace(/^\//, '');
    if (/^\d+$/.test(path)) db = Number(path);
  } catch {
    // the loader checked the URL; keep db 0
  }
  return `portcullis:revoke:${db}`;
}

/** `gateway.redis` for status and logs, without credentials. */
export function describeRedis(redis: GatewayRedisSettings): string {
  if (redis.url !== undefined) return stripUser(redactUrl(redis.url));
  const nodes = redis.sentinels.map((n) => `${n.host.includes(':') ? `[${n.host}]` : n.host}:${n.port}`).join(', ');
  return `redis-sentinel ${redis.master_name} (${nodes})/${redis.database}`;
}

/** A filter from untrusted input, or undefined when it is not exactly one non-empty string criterion. */
export function parseFilter(raw: unknown): RevokeFilter | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const keys = Object.keys(raw);
  if (keys.length !== 1) return undefined;
  const k = keys[0]!;
  const v = (raw as Record<string, unknown>)[k];
  if (!(FILTER_KEYS as readonly string[]).includes(k)) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_FILTER_VALUE) return undefined;
  return { [k]: v } as RevokeFilter;
}

type Wire = { v: 1; origin: string; filter: RevokeFilter; block_s?: number } | { v: 1; origin: string; unblock: string };

/** Where a block is kept until it ends: `portcullis:block:<consumer>` in the database of gateway.redis. */
const BLOCK_PREFIX = 'portcullis:block:';

/** A block's value in Redis: its end, signed with the consumer's name when there is a secret. */
export function encodeBlock(consumer: string, until: number, secret: string | undefined): string {
  return JSON.stringify(secret === undefined ? { until } : { until, sig: hmac(`${consumer}\n${until}`, secret) });
}

/** The end of a block read from Redis, or undefined when the value is not one (or not signed with `secret`). */
export function decodeBlock(consumer: string, value: string | null, secret: string | undefined): number | undefined {
  if (value === null || value.length > 512) return undefined;
  let o: unknown;
  try {
    o = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  const { until, sig } = o as { until?: unknown; sig?: unknown };
  if (typeof until !== 'number' || !Number.isFinite(until)) return undefined;
  if (secret !== undefined) {
    if (typeof sig !== 'string') return undefined;
    const want = Buffer.from(hmac(`${consumer}\n${until}`, secret));
    const got = Buffer.from(sig);
    if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined;
  }
  return until;
}

/** How far a signed message's `ts` may be from this instance's clock (delivery and clock skew). */
const MAX_AGE_MS = 60_000;

function hmac(body: string, secret: string): string {
  return createHmac('sha256', secret).update(body).digest('base64url');
}

/** `msg` as sent: signed (ts, sig) when there is a secret. */
export function encodeMessage(msg: Wire, secret: string | undefined, now = Date.now()): string {
  if (secret === undefined) return JSON.stringify(msg);
  const body = { ...msg, ts: now };
  return JSON.stringify({ ...body, sig: hmac(JSON.stringify(body), secret) });
}

/** Why a parsed message fails the signature check, or undefined when it passes. */
function signatureProblem(o: Record<string, unknown>, secret: string, now: number): string | undefined {
  const sig = o.sig;
  if (typeof sig !== 'string') return 'not signed';
  if (typeof o.ts !== 'number' || !Number.isFinite(o.ts)) return 'no timestamp';
  if (Math.abs(now - o.ts) > MAX_AGE_MS) return 'too old (or from a clock more than 60 s off)';
  const { sig: _sig, ...rest } = o;
  const want = Buffer.from(hmac(JSON.stringify(rest), secret));
  const got = Buffer.from(sig);
  if (got.length !== want.length || !timingSafeEqual(got, want)) return 'bad signature';
  return undefined;
}

/** A received message, or why it was refused. With `secret`, only a message it signed recently. */
export function parseMessage(buf: string, secret?: string, now = Date.now()): Wire | string {
  if (buf.length > MAX_MESSAGE) return 'too long';
  let m: unknown;
  try {
    m = JSON.parse(buf);
  } catch {
    return 'not JSON';
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'not an object';
  const o = m as Record<string, unknown>;
  if (o.v !== 1) return 'unknown version';
  if (typeof o.origin !== 'string' || o.origin.length === 0 || o.origin.length > 128) return 'bad origin';
  if (secret !== undefined) {
    const problem = signatureProblem(o, secret, now);
    if (problem) return `signature: ${problem}`;
  }
  if (o.unblock !== undefined) {
    if (typeof o.unblock !== 'string' || o.unblock.length === 0 || o.unblock.length > MAX_FILTER_VALUE) return 'bad unblock';
    if (o.filter !== undefined || o.block_s !== undefined) return 'unblock with a filter';
    return { v: 1, origin: o.origin, unblock: o.unblock };
  }
  const filter = parseFilter(o.filter);
  if (!filter) return 'bad filter';
  if (o.block_s === undefined) return { v: 1, origin: o.origin, filter };
  if (!('consumer' in filter)) return 'block without a consumer';
  if (typeof o.block_s !== 'number' || !Number.isInteger(o.block_s) || o.block_s < 1 || o.block_s > MAX_BLOCK_SECONDS) return 'bad block_s';
  return { v: 1, origin: o.origin, filter, block_s: o.block_s };
}

export interface RevokeBroadcastOptions {
  redis: GatewayRedisSettings;
  log: Logger;
  /** Close this instance's matching connections (and block the consumer for `blockS` seconds); returns how many. */
  onRevoke(filter: RevokeFilter, blockS: number | undefined): number;
  /** Lift a consumer's block in this instance. */
  onUnblock(consumer: string): void;
  /** A block in force found in Redis (at start, and after a reconnect); false when the list is full. */
  onBlock(consumer: string, until: number): boolean;
}

export class RevokeBroadcast {
  readonly origin = instanceId();
  readonly channel: string;
  /** The Redis address without credentials (status, logs). */
  readonly address: string;
  readonly #redis: GatewayRedisSettings;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #onRevoke: (f: RevokeFilter, blockS: number | undefined) => number;
  readonly #onUnblock: (consumer: string) => void;
  readonly #onBlock: (consumer: string, until: number) => boolean;
  readonly #sub: Redis;
  #pub: Redis | undefined;
  #subscribed = false;
  #closed = false;
  #loadRetry: NodeJS.Timeout | undefined;
  #lastErrorLog = 0;
  #lastBadLog = 0;

  constructor(opts: RevokeBroadcastOptions) {
    this.#redis = opts.redis;
    this.#timeoutMs = Math.max(100, Math.round(opts.redis.timeout * 1000));
    this.#log = opts.log;
    this.#onRevoke = opts.onRevoke;
    this.#onUnblock = opts.onUnblock;
    this.#onBlock = opts.onBlock;
    this.channel = channelFor(opts.redis);
    this.address = describeRedis(opts.redis);
    // The subscriber waits for Redis as long as it takes: its one command (SUBSCRIBE)
    // is queued until connected, and re-sent after every reconnect.
    this.#sub = this.#client({
      lazyConnect: true,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResubscribe: true,
      connectionName: 'portcullis-revoke-sub',
    });
    this.#sub.on('error', (err: Error) => this.#connectionError(err));
    this.#sub.on('ready', () => {
      if (!this.#subscribed) return;
      this.#log.info({ channel: this.channel, redis: this.address }, 'revoke channel: subscribed again');
      // Blocks set while this instance was away from Redis are in Redis.
      this.#loadBlocks();
    });
    this.#sub.on('message', (channel: string, message: string) => this.#onMessage(channel, message));
  }

  /** Connect and subscribe in the background; never rejects, never blocks the start. */
  start(): void {
    this.#sub.subscribe(this.channel).then(
      () => {
        this.#subscribed = true;
        this.#log.info({ channel: this.channel, redis: this.address }, 'revoke channel: subscribed');
        this.#loadBlocks();
      },
      (err: unknown) => {
        if (!this.#closed) this.#connectionError(err as Error);
      },
    );
    this.#sub.connect().catch(() => undefined);
  }

  /** True while the subscriber is connected and subscribed. */
  get subscribed(): boolean {
    return this.#subscribed && this.#sub.status === 'ready';
  }

  /**
   * Tell the other instances. Resolves true when Redis took the message, false
   * when it could not be sent (logged); never rejects.
   */
  async publish(filter: RevokeFilter, blockS?: number): Promise<boolean> {
    return this.#send(blockS === undefined ? { v: 1, origin: this.origin, filter } : { v: 1, origin: this.origin, filter, block_s: blockS });
  }

  /** Tell the other instances to lift a consumer's block; as publish(). */
  async publishUnblock(consumer: string): Promise<boolean> {
    return this.#send({ v: 1, origin: this.origin, unblock: consumer });
  }

  async #send(msg: Wire): Promise<boolean> {
    if (this.#closed) return false;
    const text = encodeMessage(msg, this.#redis.revoke_secret);
    try {
      const pub = await this.#publisher();
      // A block is also kept in Redis until it ends, for instances that start later.
      const tx = pub.multi();
      if ('unblock' in msg) {
        tx.del(BLOCK_PREFIX + msg.unblock);
      } else if (msg.block_s !== undefined && 'consumer' in msg.filter) {
        const until = Date.now() + msg.block_s * 1000;
        tx.set(BLOCK_PREFIX + msg.filter.consumer, encodeBlock(msg.filter.consumer, until, this.#redis.revoke_secret), 'PX', msg.block_s * 1000);
      }
      tx.publish(this.channel, text);
      const results = await tx.exec();
      const failed = results?.find(([e]) => e !== null);
      if (!results || failed) throw failed?.[0] ?? new Error('transaction discarded');
      return true;
    } catch (err) {
      this.#log.warn({ channel: this.channel, redis: this.address, err: safeMessage(err) }, 'revoke channel: could not publish; other instances were not told');
      return false;
    }
  }

  async #publisher(): Promise<Redis> {
    this.#pub ??= this.#newPublisher();
    if (this.#pub.status === 'wait') await this.#pub.connect();
    return this.#pub;
  }

  /**
   * Apply the blocks kept in Redis. The publisher may not be connected yet (the
   * subscriber's reconnect can come first), so a failed read is tried again, 1 s,
   * 2 s, ... at most 5 s later, until it lands or the channel closes.
   */
  #loadBlocks(attempt = 0): void {
    clearTimeout(this.#loadRetry);
    this.#loadRetry = undefined;
    void this.#readBlocks(attempt).then((ok) => {
      if (ok || this.#closed) return;
      this.#loadRetry = setTimeout(() => this.#loadBlocks(attempt + 1), Math.min(1000 * (attempt + 1), 5000));
      this.#loadRetry.unref();
    });
  }

  /** One read of portcullis:block:* (SCAN, MGET); true when it completed. Never rejects. */
  async #readBlocks(attempt: number): Promise<boolean> {
    if (this.#closed) return true;
    let loaded = 0;
    let ignored = 0;
    try {
      const pub = await this.#publisher();
      let cursor = '0';
      do {
        const [next, keys] = await pub.scan(cursor, 'MATCH', `${BLOCK_PREFIX}*`, 'COUNT', 500);
        cursor = next;
        if (keys.length === 0) continue;
        const values = await pub.mget(...keys);
        const now = Date.now();
        keys.forEach((key, i) => {
          const consumer = key.slice(BLOCK_PREFIX.length);
          const until = decodeBlock(consumer, values[i] ?? null, this.#redis.revoke_secret);
          if (until === undefined) ignored++;
          else if (until > now && this.#onBlock(consumer, until)) loaded++;
        });
      } while (cursor !== '0' && !this.#closed);
    } catch (err) {
      if (!this.#closed && attempt % 12 === 0) {
        this.#log.warn({ redis: this.address, err: safeMessage(err), attempt: attempt + 1 }, 'revoke channel: could not read the blocks kept in Redis; trying again');
      }
      return false;
    }
    if (loaded > 0 || ignored > 0) this.#log.info({ loaded, ...(ignored > 0 ? { ignored } : {}) }, 'revoke channel: blocks in force read from Redis');
    return true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#loadRetry);
    const quit = async (c: Redis | undefined): Promise<void> => {
      if (!c) return;
      if (c.status === 'ready') {
        await Promise.race([c.quit().catch(() => undefined), new Promise((r) => setTimeout(r, this.#timeoutMs).unref())]);
      }
      c.disconnect();
    };
    await Promise.all([quit(this.#sub), quit(this.#pub)]);
  }

  /** A client for `gateway.redis` (a URL, or a master found through Sentinel) with `extra` options. */
  #client(extra: RedisOptions): Redis {
    const r = this.#redis;
    const common: RedisOptions = {
      connectTimeout: this.#timeoutMs,
      retryStrategy: (times: number) => Math.min(times * 200, 2000),
      ...extra,
    };
    if (r.url !== undefined) return new Redis(r.url, { ...common, ...(r.url.startsWith('rediss:') ? { tls: {} } : {}) });
    return new Redis({
      ...common,
      sentinels: r.sentinels.map((n) => ({ host: n.host, port: n.port })),
      name: r.master_name,
      db: r.database,
      sentinelRetryStrategy: (times: number) => Math.min(times * 200, 2000),
      ...(r.username !== undefined ? { username: r.username } : {}),
      ...(r.password !== undefined ? { password: r.password } : {}),
      ...(r.sentinel_username !== undefined ? { sentinelUsername: r.sentinel_username } : {}),
      ...(r.sentinel_password !== undefined ? { sentinelPassword: r.sentinel_password } : {}),
    });
  }

  #newPublisher(): Redis {
    const pub = this.#client({
      lazyConnect: true,
      enableOfflineQueue: false,
      commandTimeout: this.#timeoutMs,
      maxRetriesPerRequest: 1,
      connectionName: 'portcullis-revoke-pub',
    });
    pub.on('error', (err: Error) => this.#connectionError(err));
    return pub;
  }

  #onMessage(channel: string, message: string): void {
    if (channel !== this.channel || this.#closed) return;
    const m = parseMessage(message, this.#redis.revoke_secret);
    if (typeof m === 'string') {
      const now = Date.now();
      if (now - this.#lastBadLog >= LOG_INTERVAL_MS) {
        this.#lastBadLog = now;
        const what = m.startsWith('signature: ') ? 'a message not signed with revoke_secret' : 'a malformed message';
        this.#log.warn({ channel: this.channel, why: m }, `revoke channel: ignored ${what}`);
      }
      return;
    }
    if (m.origin === this.origin) return;
    if ('unblock' in m) {
      this.#onUnblock(m.unblock);
      this.#log.info({ consumer: m.unblock, from: 'redis' }, 'consumer block lifted by another instance');
      return;
    }
    let closed = 0;
    try {
      closed = this.#onRevoke(m.filter, m.block_s);
    } catch (err) {
      this.#log.error({ err: safeMessage(err) }, 'revoke channel: closing connections failed');
      return;
    }
    this.#log.info({ filter: m.filter, closed, ...(m.block_s ? { block_s: m.block_s } : {}), from: 'redis' }, 'connections revoked by another instance');
  }

  #connectionError(err: Error): void {
    if (this.#closed) return;
    const now = Date.now();
    if (now - this.#lastErrorLog < LOG_INTERVAL_MS) return;
    this.#lastErrorLog = now;
    this.#log.warn({ channel: this.channel, redis: this.address, err: safeMessage(err) }, 'revoke channel: Redis unreachable; retrying');
  }
}

/** An error message without a URL's credentials in it. */
function safeMessage(err: unknown): string {
  return redactUrl(err instanceof Error ? err.message : String(err)).slice(0, 200);
}

/** `redis://user:[redacted]@host:6379/0` -> `redis://host:6379/0`. */
export function stripUser(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1');
}
