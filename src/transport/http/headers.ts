/**
 * Header hygiene between client, gateway and upstream.
 *
 * Hop-by-hop headers (RFC 9110 7.6.1) never cross the gateway: the fixed list below plus
 * every header the message's own `Connection` value names. `host` and `content-length`
 * are never removed because `Connection` names them: the gateway relies on both.
 *
 * Forwarding headers from a peer that is not a trusted proxy are the client's own
 * claims, so `Forwarded`, `X-Forwarded-*` and `X-Real-IP` are dropped and replaced with
 * the gateway's. From a trusted proxy, X-Forwarded-Proto/-Host/-Port (and any other
 * X-Forwarded-*) are kept as sent, since they describe the original request the proxy
 * received; X-Forwarded-For and X-Real-IP are always rewritten from the resolved chain.
 */
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Always hop-by-hop. `proxy-authorization` is included as RFC 2616 13.5.1 lists it: the
 * client's credentials for the gateway must not reach the upstream.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

/** Never removed because a Connection header names them. */
const NOT_NAMEABLE: ReadonlySet<string> = new Set(['host', 'content-length']);

export interface UpstreamHeaderOptions {
  /** The socket's peer address (normalised, as from ClientIpResolver). */
  peer: string;
  /** Believed forwarding chain from ClientIpResolver.resolve(); its first entry is the client. */
  forwardedFor: readonly string[];
  /** Scheme the client used to reach the gateway. */
  proto: 'http' | 'https';
  /** The client's Host header, as received. */
  host: string | undefined;
  /** Port of the gateway listener the client connected to. */
  port: number;
  peerTrusted: boolean;
  /** Per-route changes, applied last: a string sets/replaces, null deletes. Names are case-insensitive. */
  set?: Record<string, string | null>;
}

/**
 * True when the raw header list carries more than one Host line. Node merges duplicate
 * headers into `req.headers`, so only `rawHeaders` shows the duplicate.
 */
export function hasDuplicateHost(rawHeaders: string[]): boolean {
  let seen = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')) {
      if (seen) return true;
      seen = true;
    }
  }
  return false;
}

/**
 * Extra header names (lower case) that a Connection value declares hop-by-hop, beyond the
 * fixed list; undefined when there are none, which is the usual case (`Upgrade`,
 * `keep-alive`, `close`).
 */
function connectionNamed(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    switch (value) {
      case 'Upgrade':
      case 'upgrade':
      case 'keep-alive':
      case 'Keep-Alive':
      case 'close':
      case 'Close':
        return undefined;
    }
  }
  const s = typeof value === 'string' ? value : value.join(',');
  let named: string[] | undefined;
  let start = 0;
  while (start <= s.length) {
    let end = s.indexOf(',', start);
    if (end === -1) end = s.length;
    const token = s.slice(start, end).trim().toLowerCase();
    start = end + 1;
    if (token.length === 0 || token === 'close' || HOP_BY_HOP.has(token) || NOT_NAMEABLE.has(token)) continue;
    (named ??= []).push(token);
  }
  return named;
}

/** Forwarded, X-Forwarded-* or X-Real-IP (names are lower case, as Node gives them). */
function isForwardingHeader(name: string): boolean {
  const c = name.charCodeAt(0);
  if (c === 0x78 /* x */) return name.startsWith('x-forwarded-') || name === 'x-real-ip';
  return c === 0x66 /* f */ && name === 'forwarded';
}

/** A node for a Forwarded `for=` value: IPv6 is bracketed and quoted (RFC 7239 6). */
function forwardedNode(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/**
 * The headers to send upstream. Copies the client's headers except hop-by-hop ones and,
 * from an untrusted peer, the forwarding ones; then sets:
 * - `x-forwarded-for`: `[...forwardedFor, peer]`;
 * - `x-real-ip`: the resolved client address (the first believed entry, else the peer).
 *   This is the address the gateway itself used for its decisions (rate limits, IP
 *   restriction), so the upstream sees the same answer;
 * - `x-forwarded-proto`, `x-forwarded-host` (the client's Host), `x-forwarded-port`:
 *   ours, unless a trusted proxy already sent them;
 * - `forwarded`: only when a trusted proxy sent one, with our hop (`for=<peer>`) appended;
 *   the gateway does not start a Forwarded header itself.
 * `host` is copied as received; choosing the upstream Host (pass_host) is the caller's.
 * Connection and Upgrade are not added; the WebSocket code adds its own.
 */
export function buildUpstreamHeaders(
  headers: IncomingHttpHeaders,
  opts: UpstreamHeaderOptions,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = connectionNamed(headers.connection);
  const trusted = opts.peerTrusted;
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || HOP_BY_HOP.has(name)) continue;
    if (named !== undefined && named.includes(name)) continue;
    if (!trusted && isForwardingHeader(name)) continue;
    out[name] = v;
  }

  const ff = opts.forwardedFor;
  out['x-forwarded-for'] = ff.length === 0 ? opts.peer : ff.join(', ') + ', ' + opts.peer;
  out['x-real-ip'] = ff.length === 0 ? opts.peer : (ff[0] as string);
  if (!trusted || out['x-forwarded-proto'] === undefined) out['x-forwarded-proto'] = opts.proto;
  if (!trusted || out['x-forwarded-host'] === undefined) {
    if (opts.host !== undefined) out['x-forwarded-host'] = opts.host;
  }
  if (!trusted || out['x-forwarded-port'] === undefined) out['x-forwarded-port'] = String(opts.port);
  if (trusted) {
    const fwd = out['forwarded'];
    if (fwd !== undefined) {
      const prev = typeof fwd === 'string' ? fwd : fwd.join(', ');
      out['forwarded'] = `${prev}, for=${forwardedNode(opts.peer)}`;
    }
  }

  const set = opts.set;
  if (set !== undefined) {
    for (const key in set) {
      const v = set[key];
      if (v === undefined) continue;
      const name = key.toLowerCase();
      if (v === null) delete out[name];
      else out[name] = v;
    }
  }
  return out;
}

/** The upstream's response headers minus hop-by-hop ones (and those its Connection names). */
export function cleanResponseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = connectionNamed(headers.connection);
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || HOP_BY_HOP.has(name)) continue;
    if (named !== undefined && named.includes(name)) continue;
    out[name] = v;
  }
  return out;
}
