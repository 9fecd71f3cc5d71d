/**
 * The store attributes every limit plugin shares (APISIX's names): `policy` and the
 * `redis_*` / `redis_cluster_*` / `redis_sentinels` fields, or `gateway.redis` when a
 * plugin with `policy: redis` names no `redis_host` (or `policy: redis-sentinel` no
 * `redis_sentinels`). Checked at load; turned into a StoreSpec.
 *
 * `policy: redis-sentinel` takes APISIX limit-count's attributes (3.18+):
 * `redis_sentinels` (APISIX's `{host, port}` objects, or "host:port" strings as in
 * `redis_cluster_nodes`), `redis_master_name`, `sentinel_username`,
 * `sentinel_password`, with `redis_username` / `redis_password` / `redis_database`
 * for the master and `redis_timeout` for both.
 */
import type { PluginContext } from '../../core/plugin.js';
import type { RedisAddress, StoreSpec } from '../../store/index.js';

/** A sentinel or cluster node as written: "host:port" ("[v6]:port"), or APISIX's `{ host, port }`. */
export type AddressAttr = string | { host: string; port: number };

export interface LimitStoreConfig {
  policy: 'local' | 'redis' | 'redis-cluster' | 'redis-sentinel';
  allow_degradation: boolean;
  redis_host?: string;
  redis_port: number;
  redis_username?: string;
  redis_password?: string;
  redis_database: number;
  /** Milliseconds, as in APISIX. */
  redis_timeout: number;
  redis_ssl: boolean;
  redis_ssl_verify: boolean;
  redis_cluster_nodes?: string[];
  redis_cluster_name?: string;
  redis_cluster_ssl: boolean;
  redis_cluster_ssl_verify: boolean;
  redis_sentinels?: AddressAttr[];
  redis_master_name?: string;
  sentinel_username?: string;
  sentinel_password?: string;
}

/** Schema properties of the store attributes (merge into a plugin's schema). */
export const limitStoreProperties: Record<string, Record<string, unknown>> = {
  policy: {
    type: 'string',
    enum: ['local', 'redis', 'redis-cluster', 'redis-sentinel'],
    default: 'local',
    description: 'Where the counters live: this process (local), or a Redis shared by every instance (one server, a cluster, or the master Redis Sentinel names).',
  },
  allow_degradation: {
    type: 'boolean',
    default: false,
    description: 'When Redis is unreachable: false refuses with 503, true lets requests through under a local cap.',
  },
  redis_host: { type: 'string', minLength: 1, description: 'Redis address (policy redis); without it, gateway.redis is used.' },
  redis_port: { type: 'integer', minimum: 1, maximum: 65535, default: 6379, description: 'Redis port.' },
  redis_username: { type: 'string', minLength: 1, description: 'Redis ACL user name.' },
  redis_password: { type: 'string', minLength: 1, description: 'Redis password.' },
  redis_database: { type: 'integer', minimum: 0, default: 0, description: 'Redis database number (policy redis).' },
  redis_timeout: {
    type: 'integer',
    minimum: 1,
    default: 1000,
    description: 'Connect and command timeout in milliseconds; a slower Redis counts as unavailable.',
  },
  redis_ssl: { type: 'boolean', default: false, description: 'TLS to Redis.' },
  redis_ssl_verify: { type: 'boolean', default: true, description: 'Verify the Redis certificate.' },
  redis_cluster_nodes: {
    type: 'array',
    minItems: 1,
    items: { type: 'string', minLength: 3, description: '"host:port" ("[v6]:port").' },
    description: 'Seed nodes of the Redis Cluster (policy redis-cluster).',
  },
  redis_cluster_name: { type: 'string', minLength: 1, description: 'Name of the cluster, for logs.' },
  redis_cluster_ssl: { type: 'boolean', default: false, description: 'TLS to the cluster nodes.' },
  redis_cluster_ssl_verify: { type: 'boolean', default: true, description: 'Verify the cluster nodes\' certificates.' },
  redis_sentinels: {
    type: 'array',
    minItems: 1,
    items: {
      type: ['string', 'object'],
      minLength: 3,
      properties: {
        host: { type: 'string', minLength: 1 },
        port: { type: 'integer', minimum: 1, maximum: 65535 },
      },
      required: ['host', 'port'],
      additionalProperties: false,
      description: '"host:port" ("[v6]:port"), or { host, port } as in APISIX.',
    },
    description: 'Sentinels to ask where the master is (policy redis-sentinel); without it, gateway.redis is used.',
  },
  redis_master_name: { type: 'string', minLength: 1, description: 'The master group the sentinels monitor (policy redis-sentinel).' },
  sentinel_username: { type: 'string', minLength: 1, description: 'ACL user name for the sentinels, when they require AUTH.' },
  sentinel_password: { type: 'string', minLength: 1, description: 'Password for the sentinels, when they require AUTH.' },
};

/** The store a limit plugin's config asks for. Throws an Error for a config that cannot work. */
export function storeSpec(c: LimitStoreConfig, ctx: PluginContext): StoreSpec {
  const stray = (names: (keyof LimitStoreConfig)[]): string[] => names.filter((n) => c[n] !== undefined);
  const sentinelAttrs: (keyof LimitStoreConfig)[] = ['redis_sentinels', 'redis_master_name', 'sentinel_username', 'sentinel_password'];
  if (c.policy === 'local') {
    const set = stray(['redis_host', 'redis_password', 'redis_username', 'redis_cluster_nodes', ...sentinelAttrs]);
    if (set.length > 0) {
      throw new Error(`${set.join(', ')} ${set.length > 1 ? 'are' : 'is'} set but policy is local: set policy: redis, redis-cluster or redis-sentinel`);
    }
    return { policy: 'local' };
  }
  if (c.policy === 'redis-sentinel') return sentinelSpec(c, ctx, stray);
  const misplaced = stray(sentinelAttrs);
  if (misplaced.length > 0) throw new Error(`${misplaced.join(', ')} ${misplaced.length > 1 ? 'are' : 'is'} for policy redis-sentinel`);
  if (c.policy === 'redis') {
    if (c.redis_cluster_nodes !== undefined) throw new Error('redis_cluster_nodes is for policy redis-cluster');
    if (c.redis_host !== undefined) {
      return {
        policy: 'redis',
        host: c.redis_host,
        port: c.redis_port,
        database: c.redis_database,
        timeoutMs: c.redis_timeout,
        tls: c.redis_ssl,
        tlsVerify: c.redis_ssl_verify,
        ...(c.redis_username !== undefined ? { username: c.redis_username } : {}),
        ...(c.redis_password !== undefined ? { password: c.redis_password } : {}),
      };
    }
    const set = stray(['redis_password', 'redis_username']);
    if (set.length > 0) throw new Error(`${set.join(', ')} without redis_host: set redis_host too, or put the credentials in gateway.redis.url`);
    if (!ctx.redis) throw new Error('policy redis needs redis_host, or gateway.redis.url (or gateway.redis.sentinels) for every plugin');
    // gateway.redis may name a Sentinel-managed Redis: a plugin asking for "a Redis" takes it as it is.
    return gatewaySpec(ctx.redis);
  }
  if (!c.redis_cluster_nodes) throw new Error('policy redis-cluster needs redis_cluster_nodes');
  if (c.redis_host !== undefined) throw new Error('redis_host is for policy redis; a cluster is given by redis_cluster_nodes');
  const nodes = c.redis_cluster_nodes.map((n) => parseAddress('redis_cluster_nodes', n));
  return {
    policy: 'redis-cluster',
    nodes,
    timeoutMs: c.redis_timeout,
    tls: c.redis_cluster_ssl,
    tlsVerify: c.redis_cluster_ssl_verify,
    ...(c.redis_cluster_name !== undefined ? { name: c.redis_cluster_name } : {}),
    ...(c.redis_username !== undefined ? { username: c.redis_username } : {}),
    ...(c.redis_password !== undefined ? { password: c.redis_password } : {}),
  };
}

type Stray = (names: (keyof LimitStoreConfig)[]) => string[];

/** policy redis-sentinel: the plugin's own sentinels, or gateway.redis when it names none. */
function sentinelSpec(c: LimitStoreConfig, ctx: PluginContext, stray: Stray): StoreSpec {
  const other = stray(['redis_host', 'redis_cluster_nodes']);
  if (other.length > 0) {
    throw new Error(`${other.join(', ')} ${other.length > 1 ? 'are' : 'is'} not for policy redis-sentinel: the master is found through redis_sentinels and redis_master_name`);
  }
  if (c.redis_ssl) throw new Error('redis_ssl is not supported with policy redis-sentinel');
  if (c.redis_sentinels === undefined) {
    const set = stray(['redis_master_name', 'redis_password', 'redis_username', 'sentinel_password', 'sentinel_username']);
    if (set.length > 0) throw new Error(`${set.join(', ')} without redis_sentinels: set redis_sentinels too, or put them all in gateway.redis`);
    if (!ctx.redis || ctx.redis.sentinels === undefined) {
      throw new Error('policy redis-sentinel needs redis_sentinels and redis_master_name, or gateway.redis with sentinels and master_name');
    }
    return gatewaySpec(ctx.redis);
  }
  if (c.redis_master_name === undefined) throw new Error('policy redis-sentinel needs redis_master_name (the master group the sentinels monitor)');
  return {
    policy: 'redis-sentinel',
    sentinels: c.redis_sentinels.map((a) => parseAddress('redis_sentinels', a)),
    masterName: c.redis_master_name,
    database: c.redis_database,
    timeoutMs: c.redis_timeout,
    ...(c.redis_username !== undefined ? { username: c.redis_username } : {}),
    ...(c.redis_password !== undefined ? { password: c.redis_password } : {}),
    ...(c.sentinel_username !== undefined ? { sentinelUsername: c.sentinel_username } : {}),
    ...(c.sentinel_password !== undefined ? { sentinelPassword: c.sentinel_password } : {}),
  };
}

/** `gateway.redis` (a URL, or sentinels and a master name) as a StoreSpec; its timeout is in seconds. */
function gatewaySpec(r: NonNullable<PluginContext['redis']>): StoreSpec {
  const timeoutMs = Math.max(1, Math.round(r.timeout * 1000));
  if (r.sentinels === undefined) return { policy: 'redis', url: r.url, timeoutMs };
  return {
    policy: 'redis-sentinel',
    sentinels: r.sentinels,
    masterName: r.master_name,
    database: r.database,
    timeoutMs,
    ...(r.username !== undefined ? { username: r.username } : {}),
    ...(r.password !== undefined ? { password: r.password } : {}),
    ...(r.sentinel_username !== undefined ? { sentinelUsername: r.sentinel_username } : {}),
    ...(r.sentinel_password !== undefined ? { sentinelPassword: r.sentinel_password } : {}),
  };
}

/** "host:port" ("[v6]:port") or `{ host, port }`; throws naming the attribute. */
function parseAddress(attr: string, a: AddressAttr): RedisAddress {
  if (typeof a !== 'string') return { host: a.host, port: a.port };
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(a);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) throw new Error(`${attr}: "${a}" is not host:port`);
  return { host: (m[1] ?? m[2])!, port };
}
