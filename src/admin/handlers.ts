/**
 * The admin endpoints. Each takes the parsed request and answers JSON, or throws
 * a GatewayError with a catalogue code (the server turns it into the error body).
 * With `gateway.workers` > 1 every call that reads or changes connections or the
 * config is relayed to all workers (cluster.ts) and the answers are combined here.
 */
import type { ConfigIssue } from '../config/index.js';
import { GatewayError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { MAX_BLOCK_SECONDS, MAX_BLOCKS, type BlockInfo } from '../server/blocks.js';
import type { Gateway } from '../server/gateway.js';
import type { RelayOp, RelayResult, WorkerAnswer } from './cluster.js';
import {
  status as buildStatus,
  type ApplyResult,
  type ConnectionInfo,
  type ConnectionList,
  type ConnectionQuery,
  type ProcessStatus,
  type Status,
} from './ops.js';
import { redactConfig } from './redact.js';
import { FILTER_KEYS, MAX_FILTER_VALUE, parseFilter, type RevokeBroadcast, type RevokeFilter } from './revoke.js';

export interface AdminRequest {
  readonly method: string;
  readonly url: URL;
  /** The body as text ('' when none). */
  readonly body: string;
  readonly contentType: string | undefined;
}

export interface AdminAnswer {
  status: number;
  /** JSON-serialisable, or a ready body with its content type. */
  json?: unknown;
  raw?: { contentType: string; body: string | Buffer };
}

/** What the endpoints act through. */
export interface AdminContext {
  readonly gw: Gateway;
  readonly log: Logger;
  readonly broadcast: RevokeBroadcast | undefined;
  /** Run an operation on this process, or on every worker when clustered. */
  run(op: RelayOp, args: unknown, timeoutMs: number): Promise<RelayResult>;
}

export type Handler = (ctx: AdminContext, req: AdminRequest) => Promise<AdminAnswer>;

/** Bodies accepted, by endpoint: a whole config may be large, the rest are small. */
export const CONFIG_BODY_LIMIT = 4 * 1024 * 1024;
export const SMALL_BODY_LIMIT = 64 * 1024;
const DEFAULT_LIST_LIMIT = 1000;
const MAX_LIST_LIMIT = 10_000;

const TIMEOUT = { read: 3000, revoke: 5000, apply: 60_000 } as const;

// ---- query parsing ----------------------------------------------------------------

function bad(message: string): GatewayError {
  return new GatewayError('ADMIN_BAD_REQUEST', { message });
}

/** The query's parameters, each at most once, none unknown, none empty. */
function params(url: URL, allowed: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of url.searchParams) {
    if (!allowed.includes(k)) throw bad(`unknown parameter "${k.slice(0, 32)}" (expected ${allowed.join(', ')})`);
    if (out.has(k)) throw bad(`parameter "${k}" given more than once`);
    if (v === '') throw bad(`parameter "${k}" is empty`);
    if (v.length > MAX_FILTER_VALUE) throw bad(`parameter "${k}" is longer than ${MAX_FILTER_VALUE} characters`);
    out.set(k, v);
  }
  return out;
}

function parseJsonBody(req: AdminRequest): unknown {
  try {
    return JSON.parse(req.body);
  } catch {
    throw bad('the body is not valid JSON');
  }
}

/**
 * Exactly one of consumer, route, id, and with consumer optionally `block` (whole
 * seconds): from the query, or from a JSON body (not both).
 */
function revokeFilter(req: AdminRequest): { filter: RevokeFilter; blockS: number | undefined } {
  const q = params(req.url, [...FILTER_KEYS, 'block']);
  const hasBody = req.body.trim() !== '';
  if (q.size > 0 && hasBody) throw bad('give the filter in the query or in the body, not both');
  const raw: unknown = hasBody ? parseJsonBody(req) : Object.fromEntries(q);
  let block: unknown;
  let rest: unknown = raw;
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw) && 'block' in raw) {
    ({ block, ...rest } = raw as Record<string, unknown>);
  }
  const filter = parseFilter(rest);
  if (!filter) throw bad('exactly one of consumer, route, id is required (a non-empty string)');
  if (block === undefined) return { filter, blockS: undefined };
  if (!('consumer' in filter)) throw bad('block applies to a consumer: give consumer=NAME with it');
  const n = typeof block === 'string' && /^\d{1,7}$/.test(block) ? Number(block) : block;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_BLOCK_SECONDS) {
    throw bad(`block is a whole number of seconds from 1 to ${MAX_BLOCK_SECONDS}`);
  }
  return { filter, blockS: n };
}

/** consumer=NAME, from the query. */
function consumerParam(req: AdminRequest): string {
  const consumer = params(req.url, ['consumer']).get('consumer');
  if (consumer === undefined) throw bad('consumer is required');
  return consumer;
}

// ---- combining workers' answers ---------------------------------------------------

function values<T>(r: RelayResult): T[] {
  const failed = r.answers.find((a) => a.error !== undefined);
  if (failed) throw new GatewayError('INTERNAL_ERROR', { detail: `worker ${failed.pid}: ${failed.error}` });
  return r.answers.map((a) => a.value as T);
}

function missing(r: RelayResult): Record<string, number> {
  return r.missing > 0 ? { workers_missing: r.missing } : {};
}

// ---- endpoints --------------------------------------------------------------------

export const getStatus: Handler = async (ctx, req) => {
  params(req.url, []);
  const r = await ctx.run('status', null, TIMEOUT.read);
  const all = values<ProcessStatus>(r).sort((a, b) => a.pid - b.pid);
  const mine = all.find((s) => s.pid === process.pid) ?? all[0];
  if (!mine) throw new GatewayError('ADMIN_UNAVAILABLE', { detail: 'no worker answered' });
  const s: Status = buildStatus(ctx.gw, mine);
  if (all.length > 1 || r.missing > 0) {
    const sum = { websocket: 0, sse: 0, total: 0, pending_handshakes: 0 };
    for (const w of all) {
      sum.websocket += w.connections.websocket;
      sum.sse += w.connections.sse;
      sum.total += w.connections.total;
      sum.pending_handshakes += w.connections.pending_handshakes;
    }
    s.connections = sum;
    s.workers = all.length;
    s.per_worker = all;
  }
  return { status: 200, json: { ...s, ...missing(r) } };
};

export const getConnections: Handler = async (ctx, req) => {
  const q = params(req.url, ['route', 'consumer', 'id', 'limit']);
  let limit = DEFAULT_LIST_LIMIT;
  const l = q.get('limit');
  if (l !== undefined) {
    if (!/^\d{1,6}$/.test(l) || Number(l) < 1 || Number(l) > MAX_LIST_LIMIT) throw bad(`limit must be an integer between 1 and ${MAX_LIST_LIMIT}`);
    limit = Number(l);
  }
  const query: ConnectionQuery = {
    limit,
    ...(q.has('route') ? { route: q.get('route')! } : {}),
    ...(q.has('consumer') ? { consumer: q.get('consumer')! } : {}),
    ...(q.has('id') ? { id: q.get('id')! } : {}),
  };
  const r = await ctx.run('connections', query, TIMEOUT.read);
  const lists = values<ConnectionList>(r);
  let total = 0;
  let connections: ConnectionInfo[] = [];
  for (const list of lists) {
    total += list.total;
    connections = connections.concat(list.connections);
  }
  connections.sort((a, b) => (a.opened_at < b.opened_at ? -1 : a.opened_at > b.opened_at ? 1 : 0));
  const shown = connections.slice(0, limit);
  return { status: 200, json: { total, truncated: total > shown.length, connections: shown, ...missing(r) } };
};

export const deleteConnections: Handler = async (ctx, req) => {
  const { filter, blockS } = revokeFilter(req);
  const r = await ctx.run('revoke', { filter, ...(blockS !== undefined ? { block_s: blockS } : {}) }, TIMEOUT.revoke);
  const answers = values<{ closed: number; blocked?: boolean }>(r);
  const closed = answers.reduce((n, v) => n + v.closed, 0);
  if (blockS !== undefined && answers.some((a) => a.blocked === false)) {
    // The connections are closed; the block could not be recorded everywhere.
    throw new GatewayError('ADMIN_BAD_REQUEST', { message: `${closed} connections closed, but the block list is full (${MAX_BLOCKS} consumers)` });
  }
  const out: Record<string, unknown> = { closed };
  if (blockS !== undefined) out.blocked_until = new Date(Date.now() + blockS * 1000).toISOString();
  if (ctx.broadcast) out.broadcast = await ctx.broadcast.publish(filter, blockS);
  Object.assign(out, missing(r));
  ctx.log.info({ admin: 'revoke', filter, ...(blockS !== undefined ? { block_s: blockS } : {}), ...out }, 'admin: connections revoked');
  return { status: 200, json: out };
};

export const getBlocks: Handler = async (ctx, req) => {
  params(req.url, []);
  const r = await ctx.run('blocks', null, TIMEOUT.read);
  // Every worker holds the same blocks; merged by consumer (the latest end) in case one missed a call.
  const merged = new Map<string, BlockInfo>();
  for (const v of values<{ blocks: BlockInfo[] }>(r)) {
    for (const b of v.blocks) {
      const prev = merged.get(b.consumer);
      if (!prev || b.until > prev.until) merged.set(b.consumer, b);
    }
  }
  const blocks = [...merged.values()].sort((a, b) => (a.consumer < b.consumer ? -1 : a.consumer > b.consumer ? 1 : 0));
  return { status: 200, json: { blocks, ...missing(r) } };
};

export const deleteBlocks: Handler = async (ctx, req) => {
  const consumer = consumerParam(req);
  const r = await ctx.run('unblock', { consumer }, TIMEOUT.revoke);
  const out: Record<string, unknown> = { lifted: values<{ lifted: boolean }>(r).some((v) => v.lifted) };
  if (ctx.broadcast) out.broadcast = await ctx.broadcast.publishUnblock(consumer);
  Object.assign(out, missing(r));
  ctx.log.info({ admin: 'unblock', consumer, ...out }, 'admin: consumer block lifted');
  return { status: 200, json: out };
};

export const getConfig: Handler = async (ctx, req) => {
  params(req.url, []);
  return { status: 200, json: redactConfig(ctx.gw.config) };
};

export const putConfig: Handler = async (ctx, req) => {
  params(req.url, []);
  if (req.body.trim() === '') throw bad('the body must be a whole config (YAML or JSON)');
  const r = await ctx.run('config', { text: req.body }, TIMEOUT.apply);
  return applied(ctx, r, 'config replaced through the admin API');
};

export const postReload: Handler = async (ctx, req) => {
  params(req.url, []);
  const r = await ctx.run('reload', null, TIMEOUT.apply);
  return applied(ctx, r, 'config reloaded from the file through the admin API');
};

export const getMetrics: Handler = async (ctx, req) => {
  params(req.url, []);
  const m = ctx.gw.metrics;
  if (!m) throw new GatewayError('ADMIN_NOT_FOUND', { message: 'Metrics are disabled', detail: 'metrics.enabled is false' });
  return { status: 200, raw: await m.render() };
};

/** One answer for a config change, from every worker's outcome. */
function applied(ctx: AdminContext, r: RelayResult, what: string): AdminAnswer {
  const results: ApplyResult[] = r.answers.map((a: WorkerAnswer) =>
    a.error !== undefined ? { ok: false, code: 'INTERNAL_ERROR', detail: a.error } : (a.value as ApplyResult),
  );
  const reports: unknown[] = [];
  let invalid: ConfigIssue[] | undefined;
  let failure: { code: 'ADMIN_UNAVAILABLE' | 'INTERNAL_ERROR'; detail: string } | undefined;
  for (const res of results) {
    if (res.ok) reports.push(res.report);
    else if (res.code === 'CONFIG_INVALID') invalid ??= res.issues;
    else if (!failure || res.code === 'INTERNAL_ERROR') failure = { code: res.code, detail: res.detail };
  }
  if (invalid) {
    // Every worker validates the same text: if one refused it, none applied it.
    ctx.log.warn({ admin: 'config', problems: invalid.length }, 'admin: config refused');
    const e = new GatewayError('CONFIG_INVALID');
    return { status: 400, json: { error: { code: e.code, message: e.message, issues: invalid } } };
  }
  if (failure) throw new GatewayError(failure.code, { detail: failure.detail });
  if (reports.length === 0) throw new GatewayError('ADMIN_UNAVAILABLE', { detail: 'no worker answered' });
  const report = reports.length === 1 ? reports[0] : mergeReports(reports);
  ctx.log.info({ admin: 'config', workers: reports.length, ...missing(r) }, `admin: ${what}`);
  const json = typeof report === 'object' && report !== null ? { ...report, ...missing(r) } : { report, ...missing(r) };
  return { status: 200, json };
}

/** The workers' reports of one change: the same diff, with the closed connections added up. */
function mergeReports(reports: unknown[]): unknown {
  const first = reports[0];
  if (typeof first !== 'object' || first === null) return first;
  const out = { ...(first as Record<string, unknown>) };
  const closed = out.closed;
  if (typeof closed === 'object' && closed !== null) {
    const sum: Record<string, unknown> = { ...(closed as Record<string, unknown>) };
    for (const rep of reports.slice(1)) {
      const c = (rep as { closed?: Record<string, unknown> } | null)?.closed;
      if (!c) continue;
      for (const [k, v] of Object.entries(c)) if (typeof v === 'number' && typeof sum[k] === 'number') sum[k] = (sum[k] as number) + v;
    }
    out.closed = sum;
  }
  out.workers = reports.length;
  return out;
}

/** Path -> method -> handler, and the body bound of each. */
type Methods = Readonly<Partial<Record<string, { handler: Handler; bodyLimit: number }>>>;

export const ROUTES: ReadonlyMap<string, Methods> = new Map<string, Methods>([
  ['/admin/status', { GET: { handler: getStatus, bodyLimit: SMALL_BODY_LIMIT } }],
  [
    '/admin/connections',
    {
      GET: { handler: getConnections, bodyLimit: SMALL_BODY_LIMIT },
      DELETE: { handler: deleteConnections, bodyLimit: SMALL_BODY_LIMIT },
    },
  ],
  [
    '/admin/config',
    {
      GET: { handler: getConfig, bodyLimit: SMALL_BODY_LIMIT },
      PUT: { handler: putConfig, bodyLimit: CONFIG_BODY_LIMIT },
    },
  ],
  [
    '/admin/blocks',
    {
      GET: { handler: getBlocks, bodyLimit: SMALL_BODY_LIMIT },
      DELETE: { handler: deleteBlocks, bodyLimit: SMALL_BODY_LIMIT },
    },
  ],
  ['/admin/reload', { POST: { handler: postReload, bodyLimit: SMALL_BODY_LIMIT } }],
  ['/metrics', { GET: { handler: getMetrics, bodyLimit: SMALL_BODY_LIMIT } }],
]);
