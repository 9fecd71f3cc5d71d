/**
 * The store attributes every limit plugin shares (APISIX's names): `policy` and the
 * `redis_*` / `redis_cluster_*` fields, or `gateway.redis` when a plugin with
 * `policy: redis` names no `redis_host`. Checked at load; turned into a StoreSpec.
 */
import type { PluginContext } from '../../core/plugin.js';
import type { StoreSpec } from '../../store/index.js';

export interface LimitStoreConfig {
  policy: 'local' | 'redis' | 'redis-cluster';
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
}

/** Schema properties of the store attributes (merge into a plugin's schema). */
export const limitStoreProperties: Record<string, Record<string, unknown>> = {
  policy: {
    type: 'string',
    enum: ['local', 'redis', 'redis-cluster'],
    default: 'local',
    description: 'Where the counters live: this process (local), or a Redis shared by every instance.',
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
};

/** The store a limit plugin's config asks for. Throws an Error for a config that cannot work. */
export function storeSpec(c: LimitStoreConfig, ctx: PluginContext): StoreSpec {
  const stray = (names: (keyof LimitStoreConfig)[]): string[] => names.filter((n) => c[n] !== undefined);
  if (c.policy === 'local') {
    const set = stray(['redis_host', 'redis_password', 'redis_username', 'redis_cluster_nodes']);
    if (set.length > 0) throw new Error(`${set.join(', ')} ${set.length > 1 ? 'are' : 'is'} set but policy is local: set policy: redis or redis-cluster`);
    return { policy: 'local' };
  }
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
    if (!ctx.redis) throw new Error('policy redis needs redis_host, or gateway.redis.url for every plugin');
    return { policy: 'redis', url: ctx.redis.url, timeoutMs: Math.max(1, Math.round(ctx.redis.timeout * 1000)) };
  }
  if (!c.redis_cluster_nodes) throw new Error('policy redis-cluster needs redis_cluster_nodes');
  if (c.redis_host !== undefined) throw new Error('redis_host is for policy redis; a cluster is given by redis_cluster_nodes');
  const nodes = c.redis_cluster_nodes.map((n) => {
    const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(n);
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) throw new Error(`redis_cluster_nodes: "${n}" is not host:port`);
    return { host: (m[1] ?? m[2])!, port };
  });
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
