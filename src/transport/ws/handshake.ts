/**
 * Checks a client's WebSocket opening handshake (RFC 6455 section 4.2.1) before
 * anything reaches an upstream, and verifies the upstream's answer (4.1).
 * Pure functions over headers: no sockets here.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { GatewayError } from '../../core/errors.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY_RE = /^[A-Za-z0-9+/]{22}==$/;

export function acceptFor(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** True when the Upgrade header asks for WebSocket (and only that). */
export function isWebSocketUpgrade(upgrade: string | undefined): boolean {
  return upgrade !== undefined && upgrade.trim().toLowerCase() === 'websocket';
}

function countHeader(raw: readonly string[], lower: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === lower.length && raw[i]!.toLowerCase() === lower) n++;
  return n;
}

/** Throws a GatewayError for a malformed handshake; returns the client's key. */
export function checkClientHandshake(req: IncomingMessage): string {
  if (req.method !== 'GET') {
    throw new GatewayError('WS_BAD_METHOD', { headers: { Allow: 'GET' }, detail: `method ${req.method}` });
  }
  const raw = req.rawHeaders;
  const key = req.headers['sec-websocket-key'];
  if (countHeader(raw, 'sec-websocket-key') !== 1 || typeof key !== 'string' || !KEY_RE.test(key)) {
    throw new GatewayError('WS_BAD_KEY', { detail: 'missing, duplicate or malformed Sec-WebSocket-Key' });
  }
  const version = req.headers['sec-websocket-version'];
  if (countHeader(raw, 'sec-websocket-version') !== 1 || version !== '13') {
    throw new GatewayError('WS_BAD_VERSION', {
      headers: { 'Sec-WebSocket-Version': '13' },
      detail: `Sec-WebSocket-Version ${JSON.stringify(version ?? null)}`,
    });
  }
  return key;
}

/** Subprotocols the client offered, in order. */
export function offeredProtocols(headers: IncomingHttpHeaders): string[] {
  const v = headers['sec-websocket-protocol'];
  if (!v) return [];
  return v.split(',').map((p) => p.trim()).filter((p) => p !== '');
}

function extensionNames(v: string | undefined): Set<string> {
  const names = new Set<string>();
  if (!v) return names;
  for (const ext of v.split(',')) {
    const name = ext.split(';')[0]!.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names;
}

/**
 * Verifies the upstream's 101: Upgrade/Connection, Sec-WebSocket-Accept for the
 * key we forwarded, a subprotocol the client offered (if any), extensions the
 * client offered. Throws WS_UPSTREAM_BAD_HANDSHAKE.
 */
export function checkUpstreamHandshake(
  h: Readonly<Record<string, string | undefined>>,
  key: string,
  offered: readonly string[],
  offeredExtensions: string | undefined,
): void {
  const bad = (why: string): never => {
    throw new GatewayError('WS_UPSTREAM_BAD_HANDSHAKE', { detail: why });
  };
  if (!isWebSocketUpgrade(h.upgrade)) bad('upgrade header is not websocket');
  if (!h.connection || !/(^|,)\s*upgrade\s*(,|$)/i.test(h.connection)) bad('connection header lacks upgrade');
  if (h['sec-websocket-accept'] !== acceptFor(key)) bad('wrong Sec-WebSocket-Accept');
  const proto = h['sec-websocket-protocol'];
  if (proto !== undefined && !offered.includes(proto)) bad('subprotocol the client did not offer');
  const exts = extensionNames(h['sec-websocket-extensions']);
  if (exts.size > 0) {
    const allowed = extensionNames(offeredExtensions);
    for (const e of exts) if (!allowed.has(e)) bad(`extension ${e} the client did not offer`);
  }
}
