/**
 * Where authentication plugins find a credential, and how they hide it from the
 * upstream. Browsers cannot set headers on WebSocket or EventSource, so besides a
 * header a credential may arrive as a query parameter, a cookie, or (WebSocket
 * only) an offered subprotocol `<prefix><credential>`.
 *
 * A credential-carrying subprotocol is always withheld from the upstream and is
 * never the subprotocol answered; a hidden header, query parameter or cookie is
 * removed from the upstream request.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestContext } from '../../core/plugin.js';
import { offeredProtocols } from '../../transport/ws/handshake.js';

export interface CredentialSources {
  /** Header name (lowercase), e.g. `apikey` or `authorization`. */
  header?: string | undefined;
  /** Query parameter name. */
  query?: string | undefined;
  /** Cookie name. */
  cookie?: string | undefined;
  /** Subprotocol prefix, e.g. `bearer.`: an offered `bearer.<credential>` carries it. */
  subprotocol?: string | undefined;
}

export type CredentialSource = 'header' | 'query' | 'cookie' | 'subprotocol';

export interface FoundCredential {
  readonly value: string;
  readonly from: CredentialSource;
  /** Header, parameter or cookie name, or the whole subprotocol string. */
  readonly name: string;
}

/**
 * Look for a credential in the order header, query, cookie, subprotocol. The
 * subprotocol is withheld from the upstream as soon as it is seen, whether or
 * not it turns out valid.
 */
export function findCredential(ctx: RequestContext, src: CredentialSources): FoundCredential | undefined {
  let proto: FoundCredential | undefined;
  if (src.subprotocol && ctx.websocket) {
    for (const p of offeredProtocols(ctx.headers)) {
      if (p.startsWith(src.subprotocol) && p.length > src.subprotocol.length) {
        ctx.dropProtocols.add(p);
        proto ??= { value: p.slice(src.subprotocol.length), from: 'subprotocol', name: p };
      }
    }
  }
  if (src.header) {
    const v = ctx.headers[src.header];
    const value = Array.isArray(v) ? v[0] : v;
    if (value) return { value, from: 'header', name: src.header };
  }
  if (src.query && ctx.query !== '') {
    const value = queryParam(ctx.query, src.query);
    if (value) return { value, from: 'query', name: src.query };
  }
  if (src.cookie) {
    const value = cookieValue(ctx.headers.cookie, src.cookie);
    if (value) return { value, from: 'cookie', name: src.cookie };
  }
  return proto;
}

/** Remove the credential from what the upstream receives. */
export function hideCredential(ctx: RequestContext, found: FoundCredential): void {
  switch (found.from) {
    case 'header':
      ctx.upstreamHeaders[found.name] = null;
      break;
    case 'query':
      ctx.stripQuery.add(found.name);
      break;
    case 'cookie': {
      const rest = withoutCookie(ctx.headers.cookie, found.name);
      ctx.upstreamHeaders.cookie = rest === '' ? null : rest;
      break;
    }
    case 'subprotocol':
      // Already withheld by findCredential.
      break;
  }
}

function queryParam(query: string, name: string): string | undefined {
  // Fast reject before building URLSearchParams.
  if (!query.includes(name)) return undefined;
  return new URLSearchParams(query).get(name) ?? undefined;
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) {
      const raw = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
  }
  return undefined;
}

function withoutCookie(header: string | undefined, name: string): string {
  if (!header) return '';
  return header
    .split(';')
    .filter((part) => {
      const eq = part.indexOf('=');
      return eq === -1 || part.slice(0, eq).trim() !== name;
    })
    .map((p) => p.trim())
    .filter((p) => p !== '')
    .join('; ');
}

/**
 * Constant-time comparison of two secrets of any length: both sides are hashed
 * to fixed-length digests first (timingSafeEqual throws on unequal lengths).
 */
export function safeEqual(a: string | Buffer, b: string | Buffer): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

/** A `WWW-Authenticate` header value for a 401. */
export function wwwAuthenticate(scheme: string, realm = 'portcullis', extra?: string): Record<string, string> {
  return { 'WWW-Authenticate': `${scheme} realm="${realm}"${extra ? `, ${extra}` : ''}` };
}
