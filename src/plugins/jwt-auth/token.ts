/**
 * Reading a JWT before it is trusted: a pure function over the token text. It
 * decodes the protected header and the payload (to find the consumer and refuse
 * dangerous headers before any key is looked up) and never verifies anything;
 * jose verifies afterwards, on the same text.
 */

/** Longest token considered (header limits bound it anyway; this bounds the work). */
export const MAX_TOKEN_LENGTH = 8 * 1024;

/** Header parameters that carry or point at a key: a token never chooses its own key. */
const EMBEDDED_KEY_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;

const B64URL = /^[A-Za-z0-9_-]+$/;

export interface UnverifiedJwt {
  readonly header: Readonly<Record<string, unknown>>;
  readonly payload: Readonly<Record<string, unknown>>;
  readonly alg: string;
}

export type Parsed = { ok: true; jwt: UnverifiedJwt } | { ok: false; reason: string };

/**
 * Split and decode a compact JWS. Refuses (with a reason for the log, never the
 * token) anything that is not three base64url parts with JSON objects for header
 * and payload, `alg: none` in any spelling, and embedded or remote key headers.
 */
export function parseJwt(token: string): Parsed {
  if (token.length > MAX_TOKEN_LENGTH) return fail('token too long');
  const dot1 = token.indexOf('.');
  const dot2 = dot1 === -1 ? -1 : token.indexOf('.', dot1 + 1);
  if (dot1 === -1 || dot2 === -1 || token.indexOf('.', dot2 + 1) !== -1) return fail('not a compact JWS (three dot-separated parts)');
  const h = token.slice(0, dot1);
  const p = token.slice(dot1 + 1, dot2);
  const s = token.slice(dot2 + 1);
  if (!B64URL.test(h) || !B64URL.test(p)) return fail('header or payload is not base64url');
  const header = decodeObject(h);
  if (!header) return fail('header is not a JSON object');
  const alg = header.alg;
  if (typeof alg !== 'string' || alg === '') return fail('header has no "alg"');
  if (alg.toLowerCase() === 'none') return fail('unsigned token (alg none)');
  for (const name of EMBEDDED_KEY_HEADERS) {
    if (Object.hasOwn(header, name)) return fail(`header carries "${name}" (embedded or remote keys are refused)`);
  }
  if (s === '' || !B64URL.test(s)) return fail('signature missing or not base64url');
  const payload = decodeObject(p);
  if (!payload) return fail('payload is not a JSON object');
  return { ok: true, jwt: { header, payload, alg } };
}

function decodeObject(part: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function fail(reason: string): Parsed {
  return { ok: false, reason };
}

/** The token from an Authorization-style value: `Bearer ` is optional (APISIX). */
export function stripBearer(value: string): string {
  const v = value.trim();
  if (v.length >= 6 && v.slice(0, 6).toLowerCase() === 'bearer') {
    if (v.length === 6) return '';
    if (v[6] === ' ') return v.slice(7).trimStart();
  }
  return v;
}

/** Scopes granted by a token: a space-separated `scope` string or an `scp` array (or string). */
export function scopesOf(claims: Readonly<Record<string, unknown>>): string[] {
  const scope = claims.scope;
  if (typeof scope === 'string') return scope.split(' ').filter((s) => s !== '');
  const scp = claims.scp;
  if (Array.isArray(scp)) return scp.filter((s): s is string => typeof s === 'string' && s !== '');
  if (typeof scp === 'string') return scp.split(' ').filter((s) => s !== '');
  return [];
}

/** Freeze a parsed JSON value all the way down (verified claims are shared by cache hits). */
export function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}
