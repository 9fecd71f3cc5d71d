/**
 * Where limit plugins get their store. `local` stores are made per caller (one per
 * plugin instance: counters per route, as APISIX keeps them per plugin config).
 * Redis stores are shared: one client per distinct address (credentials, database
 * and timeout included), however many plugins, routes and gateways in the process
 * use it, counted by reference and closed when the last user lets go (a plugin's
 * `dispose`, run when the gateway closes).
 *
 * Clients are created lazily connected: loading or validating a config never opens
 * a connection; the first limit check does.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import cluster from 'node:cluster';
import { ClusterStore } from './cluster.js';
import { LocalStore } from './local.js';
import { RedisStore } from './redis.js';
import type { LimitStore } from './types.js';

export interface RedisAddress {
  readonly host: string;
  readonly port: number;
}

/** Where a store lives. Times in ms. */
export type StoreSpec =
  | { readonly policy: 'local' }
  | {
      readonly policy: 'redis';
      /** `redis://[user:password@]host:port[/db]` or `rediss://...`; else host/port/... */
      readonly url?: string;
      readonly host?: string;
      readonly port?: number;
      readonly username?: string;
      readonly password?: string;
      readonly database?: number;
      readonly tls?: boolean;
      readonly tlsVerify?: boolean;
      readonly timeoutMs: number;
    }
  | {
      readonly policy: 'redis-cluster';
      readonly nodes: readonly RedisAddress[];
      /** A label for logs (APISIX's redis_cluster_name). */
      readonly name?: string;
      readonly username?: string;
      readonly password?: string;
      readonly tls?: boolean;
      readonly tlsVerify?: boolean;
      readonly timeoutMs: number;
    }
  | {
      readonly policy: 'redis-sentinel';
      /** Sentinels to ask where the master is (any that answers will do; more are learnt from it). */
      readonly sentinels: readonly RedisAddress[];
      /** The master group the sentinels monitor (`sentinel monitor <name> ...`; APISIX's redis_master_name). */
      readonly masterName: string;
      /** For the master (AUTH). */
      readonly username?: string;
      readonly password?: string;
      readonly database?: number;
      /** For the sentinels, when they require AUTH themselves. */
      readonly sentinelUsername?: string;
      readonly sentinelPassword?: string;
      readonly timeoutMs: number;
    };

/** A store and the way to let go of it. `release()` is idempotent. */
export interface StoreRef {
  readonly store: LimitStore;
  release(): Promise<void>;
}

interface Shared {
  readonly store: RedisStore;
  refs: number;
}

const shared = new Map<string, Shared>();

/** Open a store for one user (a plugin instance). */
export function openStore(spec: StoreSpec): StoreRef {
  if (spec.policy === 'local') {
    // In a worker of `gateway.workers`, the primary holds the counts (cluster.ts).
    const store = cluster.isWorker ? new ClusterStore() : new LocalStore();
    return { store, release: () => store.close() };
  }
  const id = JSON.stringify(spec);
  let entry = shared.get(id);
  if (!entry) {
    entry = { store: createRedisStore(spec), refs: 0 };
    shared.set(id, entry);
  }
  entry.refs++;
  const e = entry;
  let released = false;
  return {
    store: e.store,
    release(): Promise<void> {
      if (released) return Promise.resolve();
      released = true;
      if (--e.refs > 0) return Promise.resolve();
      if (shared.get(id) === e) shared.delete(id);
      return e.store.close();
    },
  };
}

/** Redis stores open in this process (tests check that closing a gateway closes them). */
export function openRedisStores(): number {
  return shared.size;
}

const retry = (times: number): number => Math.min(times * 100, 1000);

function common(timeoutMs: number): RedisOptions {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    // Each handshake sends its command in a tick of its own: ioredis's auto-pipelining
    // then wraps every one in a Pipeline of one (measured: about 40 us more gateway CPU
    // per limit-conn handshake). Commands are still written without waiting for replies.
    enableAutoPipelining: false,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 1,
    retryStrategy: retry,
    connectionName: 'portcullis',
  };
}

function createRedisStore(spec: Exclude<StoreSpec, { policy: 'local' }>): RedisStore {
  const tls = (on: boolean | undefined, verify: boolean | undefined): RedisOptions => (on ? { tls: { rejectUnauthorized: verify !== false } } : {});
  if (spec.policy === 'redis-sentinel') return createSentinelStore(spec);
  if (spec.policy === 'redis') {
    let client: Redis;
    let label: string;
    let address: string;
    if (spec.url !== undefined) {
      client = new Redis(spec.url, { ...common(spec.timeoutMs), ...(spec.url.startsWith('rediss:') ? tls(true, spec.tlsVerify) : {}) });
      label = redactUrl(spec.url);
      address = urlAddress(spec.url);
    } else {
      const opts: RedisOptions = {
        ...common(spec.timeoutMs),
        host: spec.host ?? '127.0.0.1',
        port: spec.port ?? 6379,
        db: spec.database ?? 0,
        ...(spec.username !== undefined ? { username: spec.username } : {}),
        ...(spec.password !== undefined ? { password: spec.password } : {}),
        ...tls(spec.tls, spec.tlsVerify),
      };
      client = new Redis(opts);
      address = hostPort(opts.host!, opts.port!);
      label = `${spec.tls ? 'rediss' : 'redis'}://${address}/${opts.db}`;
    }
    return new RedisStore(client, { policy: 'redis', label, address, connectWaitMs: spec.timeoutMs });
  }
  const { lazyConnect, enableOfflineQueue, enableAutoPipelining, retryStrategy, ...node } = common(spec.timeoutMs);
  void retryStrategy;
  const opts: ClusterOptions = {
    lazyConnect,
    enableOfflineQueue,
    enableAutoPipelining,
    clusterRetryStrategy: retry,
    slotsRefreshTimeout: spec.timeoutMs,
    redisOptions: {
      ...node,
      ...(spec.username !== undefined ? { username: spec.username } : {}),
      ...(spec.password !== undefined ? { password: spec.password } : {}),
      ...tls(spec.tls, spec.tlsVerify),
    },
  };
  const client = new Cluster(
    spec.nodes.map((n) => ({ host: n.host, port: n.port })),
    opts,
  );
  const label = `redis-cluster${spec.name ? ` ${spec.name}` : ''} (${spec.nodes.map((n) => hostPort(n.host, n.port)).join(', ')})`;
  const first = spec.nodes[0];
  const address = first ? hostPort(first.host, first.port) : label;
  return new RedisStore(client, { policy: 'redis-cluster', label, address, connectWaitMs: spec.timeoutMs });
}

/**
 * A Redis whose master the sentinels name: the same client options as the plain
 * store (no offline queue, command and connect timeouts, lazy, the same retry
 * strategy), so an outage behaves the same. The client asks the sentinels for the
 * master on every (re)connection, checks the role it finds, subscribes to
 * `+switch-master` to move as soon as a failover ends, and reconnects when a write
 * meets a demoted master (READONLY).
 */
function createSentinelStore(spec: Extract<StoreSpec, { policy: 'redis-sentinel' }>): RedisStore {
  const opts: RedisOptions = {
    ...common(spec.timeoutMs),
    sentinels: spec.sentinels.map((a) => ({ host: a.host, port: a.port })),
    name: spec.masterName,
    role: 'master',
    db: spec.database ?? 0,
    ...(spec.username !== undefined ? { username: spec.username } : {}),
    ...(spec.password !== undefined ? { password: spec.password } : {}),
    ...(spec.sentinelUsername !== undefined ? { sentinelUsername: spec.sentinelUsername } : {}),
    ...(spec.sentinelPassword !== undefined ? { sentinelPassword: spec.sentinelPassword } : {}),
    sentinelCommandTimeout: spec.timeoutMs,
    sentinelRetryStrategy: retry,
    // Subscribed to +switch-master on the sentinels: reconnect to the new master at once.
    failoverDetector: true,
    // A write that reaches a master turned replica: reconnect (and ask the sentinels again), do not resend.
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 1 : false),
  };
  const label = `redis-sentinel ${spec.masterName} (${spec.sentinels.map((a) => hostPort(a.host, a.port)).join(', ')})/${opts.db}`;
  return new RedisStore(new Redis(opts), { policy: 'redis-sentinel', label, address: spec.masterName, connectWaitMs: spec.timeoutMs });
}

/** `host:port` of a redis:// URL, for store-error events (never its credentials). */
function urlAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '6379'}`;
  } catch {
    return 'redis (unparsable url)';
  }
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis (unparsable url)';
  }
}
