/**
 * forward-auth (APISIX priority 2002, access phase): an external service decides.
 * The gateway asks it with the request's X-Forwarded-* headers and the configured
 * client headers; a 2xx admits (its `upstream_headers` are copied onto the upstream
 * request), anything else is returned to the client with its status, body and
 * `client_headers`. An unreachable or slow service gives `status_on_error`, or lets
 * the request through with `allow_degradation`.
 *
 * Beyond APISIX: decisions may be cached (`cache.ttl`, `cache.deny_ttl`).
 * For a WebSocket the decision is made once, at the handshake.
 */
import { definePlugin, type AccessResult, type Rejection, type RequestContext } from '../../core/plugin.js';
import { HOP_BY_HOP } from '../../transport/http/headers.js';
import { DecisionCache, cacheKey } from './cache.js';
import { agentFor, ask, type Outcome, type Target } from './client.js';
import { schema, type ForwardAuthConfig } from './schema.js';

/** Headers the gateway itself sends to the service, in cache-key order. */
const FORWARDED = ['x-forwarded-proto', 'x-forwarded-method', 'x-forwarded-host', 'x-forwarded-uri', 'x-forwarded-for'] as const;

/** Names the gateway sets or that frame the message: never taken from the client or the service. */
const RESERVED = new Set<string>([...HOP_BY_HOP, 'host', 'content-length', 'x-request-id', ...FORWARDED]);

interface State {
  readonly target: Target;
  /** Client headers to send (lower case). */
  readonly requestHeaders: readonly string[];
  readonly upstreamHeaders: readonly string[];
  readonly clientHeaders: readonly string[];
  readonly allowDegradation: boolean;
  readonly statusOnError: number;
  readonly cache: DecisionCache | undefined;
  /** Sent headers whose values make the cache key (after the method, always first). */
  readonly keyHeaders: readonly string[];
}

export default definePlugin<ForwardAuthConfig, State>({
  name: 'forward-auth',
  version: '1.0.0',
  priority: 2002,
  schema,

  init(config) {
    let url: URL;
    try {
      url = new URL(config.uri);
    } catch {
      throw new Error('uri is not a valid URL');
    }
    const isHttps = url.protocol === 'https:';
    const requestHeaders = names(config.request_headers, 'request_headers', true);
    const upstreamHeaders = names(config.upstream_headers, 'upstream_headers', false);
    const clientHeaders = names(config.client_headers, 'client_headers', false);
    const sent = [...FORWARDED, ...requestHeaders];
    let keyHeaders: string[] = sent;
    if (config.cache?.key_headers) {
      keyHeaders = [];
      for (const raw of config.cache.key_headers) {
        const name = raw.toLowerCase();
        if (!sent.includes(name)) {
          throw new Error(`cache.key_headers: "${raw}" is not sent to the service (use one of ${sent.join(', ')})`);
        }
        if (!keyHeaders.includes(name)) keyHeaders.push(name);
      }
    }
    const c = config.cache;
    const cache = c && (c.ttl > 0 || c.deny_ttl > 0) ? new DecisionCache(c.ttl, c.deny_ttl, c.max_entries) : undefined;
    return {
      target: {
        url,
        https: isHttps,
        method: config.request_method,
        agent: agentFor({
          https: isHttps,
          keepalive: config.keepalive,
          keepalive_timeout: config.keepalive_timeout,
          keepalive_pool: config.keepalive_pool,
          ssl_verify: config.ssl_verify,
        }),
        timeout: config.timeout,
        origin: url.origin,
      },
      requestHeaders,
      upstreamHeaders,
      clientHeaders,
      allowDegradation: config.allow_degradation,
      statusOnError: config.status_on_error,
      cache,
      keyHeaders,
    };
  },

  access(ctx, st) {
    const headers = authHeaders(ctx, st);
    const cache = st.cache;
    if (cache === undefined) return ask(st.target, withRequestId(headers, ctx)).then((o) => decide(ctx, st, o, false));
    const key = keyOf(ctx, st, headers);
    const hit = cache.get(key, Date.now());
    if (hit) return decide(ctx, st, hit, true);
    const question = cache.pending(key) ?? cache.track(key, ask(st.target, withRequestId(headers, ctx)));
    return question.then((o) => decide(ctx, st, o, false));
  },
});

/** Lower-cased, de-duplicated header names; names the gateway owns are refused at load. */
function names(list: readonly string[], attr: string, fromClient: boolean): string[] {
  const out: string[] = [];
  for (const raw of list) {
    const name = raw.toLowerCase();
    if (RESERVED.has(name)) {
      const why = fromClient && name.startsWith('x-forwarded-') ? 'the gateway sets it' : 'the gateway owns it';
      throw new Error(`${attr}: "${raw}" cannot be listed (${why})`);
    }
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

/** What the service is sent, without X-Request-Id (it is not part of the cache key). */
function authHeaders(ctx: RequestContext, st: State): Record<string, string> {
  const h: Record<string, string> = {
    'x-forwarded-proto': ctx.scheme,
    'x-forwarded-method': ctx.method,
    'x-forwarded-host': ctx.host,
    'x-forwarded-uri': forwardedUri(ctx),
    'x-forwarded-for': ctx.clientIp,
  };
  for (const name of st.requestHeaders) {
    const v = ctx.headers[name];
    if (v !== undefined) h[name] = Array.isArray(v) ? v.join(', ') : v;
  }
  return h;
}

function withRequestId(h: Record<string, string>, ctx: RequestContext): Record<string, string> {
  h['x-request-id'] = ctx.id;
  return h;
}

/**
 * The path and query the upstream will be sent: the normalised path, and the query
 * without parameters an auth plugin hid (`hide_credentials`).
 */
function forwardedUri(ctx: RequestContext): string {
  if (ctx.query === '') return ctx.path;
  if (ctx.stripQuery.size === 0) return `${ctx.path}?${ctx.query}`;
  const params = new URLSearchParams(ctx.query);
  for (const name of ctx.stripQuery) params.delete(name);
  const q = params.toString();
  return q === '' ? ctx.path : `${ctx.path}?${q}`;
}

function keyOf(ctx: RequestContext, st: State, h: Record<string, string>): string {
  const values: (string | undefined)[] = [ctx.method];
  for (const name of st.keyHeaders) values.push(h[name]);
  return cacheKey(values);
}

function decide(ctx: RequestContext, st: State, o: Outcome, cached: boolean): AccessResult {
  switch (o.kind) {
    case 'allow':
      for (const name of st.upstreamHeaders) {
        const v = o.headers[name];
        // Absent from the answer: the client's own copy is removed, so it cannot pose as the service.
        ctx.upstreamHeaders[name] = v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
      }
      return undefined;
    case 'deny':
      return denial(st, o, cached);
    case 'failure':
      if (st.allowDegradation) {
        for (const name of st.upstreamHeaders) ctx.upstreamHeaders[name] = null;
        return undefined;
      }
      return { reject: 'AUTH_UNAVAILABLE', status: st.statusOnError, detail: `forward-auth: ${o.reason}` };
  }
}

function denial(st: State, o: Extract<Outcome, { kind: 'deny' }>, cached: boolean): Rejection {
  const headers: Record<string, string> = {};
  for (const name of st.clientHeaders) {
    const v = o.headers[name];
    if (v === undefined) continue;
    // Several Set-Cookie lines cannot be joined into one; the first is kept.
    headers[name] = Array.isArray(v) ? (name === 'set-cookie' ? v[0]! : v.join(', ')) : v;
  }
  let detail = `forward-auth: the authorization service answered ${o.status}`;
  if (o.note) detail += ` (${o.note})`;
  if (cached) detail += ' (cached)';
  const r: Rejection = { reject: 'FORWARD_AUTH_DENIED', status: o.status, detail };
  if (o.body !== undefined) {
    r.body = o.body;
    const type = o.headers['content-type'];
    if (type !== undefined) headers['content-type'] = type;
  }
  r.headers = headers;
  return r;
}
