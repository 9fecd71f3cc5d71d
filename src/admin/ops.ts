/**
 * What the admin API does on one gateway process: status, the live connections,
 * revocation, config replacement and reload. Every result is plain JSON, so the
 * same functions answer a worker's share of a relayed call (cluster.ts).
 */
import type { Config } from '../config/types.js';
import { ConfigError, loadConfigText, type ConfigIssue } from '../config/index.js';
import { ERRORS } from '../core/errors.js';
import type { LiveConnection } from '../server/exchange.js';
import type { Gateway } from '../server/gateway.js';
import type { LiveRegistry } from '../server/live.js';
import { RedisStore } from '../store/redis.js';
import { VERSION } from '../version.js';
import { redactUrl } from './redact.js';
import { stripUser, type RevokeFilter } from './revoke.js';

export interface ConnectionInfo {
  id: string;
  route: string;
  protocol: 'websocket' | 'sse';
  mode?: 'tunnel' | 'frame';
  consumer: string | null;
  client_ip: string;
  opened_at: string;
  expires_at?: string;
  bytes_in: number;
  bytes_out: number;
  messages_in: number;
  messages_out: number;
  /** The worker process holding it (gateway.workers > 1). */
  worker?: number;
}

export interface ConnectionQuery {
  route?: string;
  consumer?: string;
  id?: string;
  limit: number;
}

export interface ConnectionList {
  total: number;
  connections: ConnectionInfo[];
}

export interface StoreHealth {
  /** `redis`, `redis-cluster`, `redis-sentinel`. */
  store: string;
  /** Without credentials. */
  address: string;
  /** What uses it: `limits` (limit plugins) or `revoke` (the revoke channel). */
  use: 'limits' | 'revoke';
  up: boolean;
}

export interface ConnectionCounts {
  websocket: number;
  sse: number;
  total: number;
  pending_handshakes: number;
}

export interface ProcessStatus {
  pid: number;
  uptime_s: number;
  started_at: string;
  connections: ConnectionCounts;
  stores: StoreHealth[];
}

export interface Status extends ProcessStatus {
  version: string;
  config: { source: string; routes: number; consumers: number };
  workers: number;
  /** One entry per worker (gateway.workers > 1). */
  per_worker?: ProcessStatus[];
}

/** The outcome of a config replacement or reload, as the API answers it. */
export type ApplyResult =
  | { ok: true; report: unknown }
  | { ok: false; code: 'CONFIG_INVALID'; issues: ConfigIssue[] }
  | { ok: false; code: 'ADMIN_UNAVAILABLE' | 'INTERNAL_ERROR'; detail: string };

// ---- connections --------------------------------------------------------------

export function protocolOf(c: LiveConnection): 'websocket' | 'sse' {
  return c.exchange.ctx.websocket ? 'websocket' : 'sse';
}

function matches(c: LiveConnection, q: { route?: string | undefined; consumer?: string | undefined; id?: string | undefined }): boolean {
  const ctx = c.exchange.ctx;
  if (q.route !== undefined && ctx.routeId !== q.route) return false;
  if (q.consumer !== undefined && ctx.consumer?.username !== q.consumer) return false;
  if (q.id !== undefined && ctx.id !== q.id) return false;
  return true;
}

export function describeConnection(c: LiveConnection): ConnectionInfo {
  const x = c.exchange;
  const ctx = x.ctx;
  const st = c.stats();
  const protocol = protocolOf(c);
  return {
    id: ctx.id,
    route: ctx.routeId,
    protocol,
    ...(protocol === 'websocket' ? { mode: x.pipeline.inspectsMessages ? ('frame' as const) : ('tunnel' as const) } : {}),
    consumer: ctx.consumer?.username ?? null,
    client_ip: ctx.clientIp,
    opened_at: new Date(ctx.startedAt).toISOString(),
    ...(ctx.expiresAt !== undefined ? { expires_at: new Date(ctx.expiresAt).toISOString() } : {}),
    bytes_in: st.bytesIn,
    bytes_out: st.bytesOut,
    messages_in: st.messagesIn,
    messages_out: st.messagesOut,
  };
}

export function listConnections(gw: Gateway, q: ConnectionQuery): ConnectionList {
  const out: ConnectionInfo[] = [];
  let total = 0;
  for (const c of gw.connections) {
    if (!matches(c, q)) continue;
    total++;
    if (out.length < q.limit) out.push(describeConnection(c));
  }
  return { total, connections: out };
}

/** Close this process's connections matching `filter`: WebSocket 1008 `revoked`, SSE stream ended. */
export function revokeLocal(live: LiveRegistry, filter: RevokeFilter): number {
  return live.closeWhere((c) => matches(c, filter), ERRORS.REVOKED.close, 'revoked', 'REVOKED');
}

// ---- status -------------------------------------------------------------------

const startedAt = new WeakMap<Gateway, number>();

/** Remember when a gateway started (uptime). */
export function markStarted(gw: Gateway): void {
  if (!startedAt.has(gw)) startedAt.set(gw, Date.now());
}

/** The Redis stores the running config's plugins use (each limit plugin's state names its store). */
export function limitStores(config: Config): RedisStore[] {
  const seen = new Set<RedisStore>();
  const all = [
    ...config.routes.flatMap((r) => r.instances),
    ...config.global_rules.flatMap((g) => g.instances),
    ...config.consumers.flatMap((u) => u.instances),
    ...config.consumer_groups.flatMap((g) => g.instances),
  ];
  for (const inst of all) {
    const st = inst.state;
    if (typeof st !== 'object' || st === null) continue;
    for (const v of Object.values(st as Record<string, unknown>)) if (v instanceof RedisStore) seen.add(v);
  }
  return [...seen];
}

export function connectionCounts(gw: Gateway): ConnectionCounts {
  let websocket = 0;
  let sse = 0;
  for (const c of gw.connections) {
    if (c.exchange.ctx.websocket) websocket++;
    else sse++;
  }
  return { websocket, sse, total: websocket + sse, pending_handshakes: gw.pendingHandshakes() };
}

export function processStatus(gw: Gateway, revokeChannel?: { address: string; subscribed: boolean }): ProcessStatus {
  const t0 = startedAt.get(gw) ?? Date.now();
  const stores: StoreHealth[] = limitStores(gw.config).map((s) => ({
    store: String(s.policy),
    address: stripUser(redactUrl(s.label)),
    use: 'limits' as const,
    up: s.available,
  }));
  if (revokeChannel) stores.push({ store: 'redis', address: revokeChannel.address, use: 'revoke', up: revokeChannel.subscribed });
  return {
    pid: process.pid,
    uptime_s: Math.round((Date.now() - t0) / 1000),
    started_at: new Date(t0).toISOString(),
    connections: connectionCounts(gw),
    stores,
  };
}

export function status(gw: Gateway, proc: ProcessStatus): Status {
  const c = gw.config;
  return {
    version: VERSION,
    ...proc,
    config: { source: c.source, routes: c.routes.length, consumers: c.consumers.length },
    workers: 1,
  };
}

// ---- config -------------------------------------------------------------------

/**
 * Validate `text` exactly like the file (the same loader and the gateway's plugin
 * registry, against the running config so unchanged plugin instances keep their
 * state, relative paths against the running config file's directory) and apply it
 * with `gw.reload`. Issues name `PUT /admin/config` as their file: their lines are the body's.
 */
export async function applyConfigText(gw: Gateway, text: string): Promise<ApplyResult> {
  const source = gw.config.source;
  let next: Config;
  try {
    next = await loadConfigText(text, source, { registry: gw.registry, previous: gw.config });
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, code: 'CONFIG_INVALID', issues: err.issues.map((i) => ({ ...i, file: 'PUT /admin/config' })) };
    return { ok: false, code: 'INTERNAL_ERROR', detail: err instanceof Error ? err.message : String(err) };
  }
  return settle(() => gw.reload(next));
}

/** Re-read the config file (as SIGHUP does). */
export function reloadFile(gw: Gateway): Promise<ApplyResult> {
  return settle(() => gw.reloadFile());
}

/**
 * A reload's outcome. Besides an invalid config, a reload fails only for a passing
 * reason (the gateway is shutting down; a reload from another source, SIGHUP or the
 * file watcher, swapped the config while this one was being loaded): 503, retry.
 */
async function settle(run: () => Promise<unknown>): Promise<ApplyResult> {
  try {
    return { ok: true, report: await run() };
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, code: 'CONFIG_INVALID', issues: err.issues };
    return { ok: false, code: 'ADMIN_UNAVAILABLE', detail: err instanceof Error ? err.message : String(err) };
  }
}
