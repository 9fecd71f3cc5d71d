/**
 * Checking an access token, in two steps:
 *
 * 1. `checkToken` (asynchronous, cached): is the token genuine and live? With
 *    `use_jwks` its signature is verified against the provider's JWKS (and its
 *    `exp`/`nbf`); otherwise the provider is asked (RFC 7662 introspection).
 * 2. `admit` (synchronous, on every request, also on a cache hit): the route's
 *    own rules: expiry, issuer, audience, required scopes, the consumer the
 *    token maps to. It sets the consumer and the connection's lifetime.
 */
import { decodeProtectedHeader, errors, jwtVerify } from 'jose';
import type { Consumer, Rejection, RequestContext } from '../../core/plugin.js';
import { wwwAuthenticate } from '../shared/credentials.js';
import type { OidcState } from './config.js';
import { ProviderUnavailable, callProvider } from './http.js';
import { JWKS_MAX_AGE_MS, isObject } from './provider.js';
import type { CheckedToken } from './token-cache.js';

/** A token refused while checking it; becomes a rejection. */
export class TokenRefused extends Error {
  override readonly name = 'TokenRefused';
  constructor(
    readonly code: 'AUTH_INVALID' | 'CREDENTIAL_EXPIRED',
    message: string,
  ) {
    super(message);
  }
}

/** Token headers that would let the token choose its own key: always refused. */
const KEY_SOURCE_HEADERS = ['jku', 'jwk', 'x5u'] as const;

/**
 * Check a token not found in the cache; concurrent checks of one token share one
 * verification or introspection. Caches the outcome as configured.
 */
export function checkToken(state: OidcState, token: string, key: string): Promise<CheckedToken> {
  let p = state.inflight.get(key);
  if (!p) {
    p = (state.useJwks ? verifyJwt(state, token) : introspect(state, token)).finally(() => state.inflight.delete(key));
    state.inflight.set(key, p);
    p.then((checked) => remember(state, key, checked), ignore);
  }
  return p;
}

function remember(state: OidcState, key: string, checked: CheckedToken): void {
  const now = Date.now();
  const exp = typeof checked.claims.exp === 'number' ? checked.claims.exp * 1000 : Infinity;
  if (state.useJwks) {
    // A verified signature stays verified; bounded by the token's exp and the JWKS max age.
    state.cache.set(key, checked, Math.min(exp, now + JWKS_MAX_AGE_MS));
  } else if (state.intervalMs > 0) {
    // Never reused longer than introspection_interval (a revocation shows within it), nor past exp.
    state.cache.set(key, checked, checked.active ? Math.min(exp, now + state.intervalMs) : now + state.intervalMs);
  }
}

async function verifyJwt(state: OidcState, token: string): Promise<CheckedToken> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new TokenRefused('AUTH_INVALID', 'not a JWT (use_jwks verifies JWT access tokens)');
  }
  for (const h of KEY_SOURCE_HEADERS) {
    if (h in header) throw new TokenRefused('AUTH_INVALID', `JWT header "${h}" refused: keys come only from the provider's JWKS`);
  }
  // The discovery document first: its jwks_uri is the only key source.
  await state.provider.discovery();
  try {
    const { payload } = await jwtVerify(token, state.provider.key, {
      algorithms: state.algorithms,
      requiredClaims: ['exp'],
    });
    return checked(payload, true);
  } catch (err) {
    if (err instanceof ProviderUnavailable) throw err;
    if (err instanceof errors.JWTExpired) throw new TokenRefused('CREDENTIAL_EXPIRED', 'JWT expired');
    if (err instanceof errors.JOSEError) throw new TokenRefused('AUTH_INVALID', `JWT refused: ${err.code}: ${err.message}`);
    throw new TokenRefused('AUTH_INVALID', `JWT refused: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function introspect(state: OidcState, token: string): Promise<CheckedToken> {
  let endpoint = state.introspection.endpoint;
  if (endpoint === undefined || state.validIssuers === undefined) {
    const doc = await state.provider.discovery();
    endpoint ??= doc.introspection_endpoint;
  }
  if (endpoint === undefined) {
    throw new ProviderUnavailable('the discovery document names no introspection_endpoint (configure introspection_endpoint, or use_jwks)');
  }
  const form = new URLSearchParams({ token, token_type_hint: 'access_token' });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  const { secret, method } = state.introspection;
  if (method === 'client_secret_post') {
    form.set('client_id', state.clientId);
    form.set('client_secret', secret);
  } else {
    // RFC 6749 2.3.1: both parts form-urlencoded before base64.
    const basic = `${formEncode(state.clientId)}:${formEncode(secret)}`;
    headers.authorization = `Basic ${Buffer.from(basic).toString('base64')}`;
  }
  const res = await callProvider(endpoint, state.provider.timeoutMs, { method: 'POST', headers, body: form.toString() });
  if (res.status === 200 && isObject(res.body)) {
    const type = res.body.token_type;
    // A sender-constrained token (DPoP) needs a proof the gateway does not check: not a bearer token.
    if (res.body.active === true && typeof type === 'string' && type.toLowerCase() !== 'bearer') {
      throw new TokenRefused('AUTH_INVALID', `token_type ${/^[\w.-]{1,32}$/.test(type) ? type : '(unprintable)'} is not a bearer token`);
    }
    return checked(res.body, res.body.active === true);
  }
  // 400: the provider refuses to introspect this token (malformed, of a kind it cannot introspect).
  if (res.status === 400) throw new TokenRefused('AUTH_INVALID', `introspection refused the token (400${errorOf(res.body)})`);
  throw new ProviderUnavailable(`introspection endpoint answered ${res.status}${errorOf(res.body)}`);
}

function checked(claims: Record<string, unknown>, active: boolean): CheckedToken {
  return { claims: Object.freeze({ ...claims }), active, scopes: Object.freeze(scopesOf(claims)) };
}

/** `scope` (space-separated, RFC 6749/7662/9068) or `scp` (a list, as some providers send). */
function scopesOf(claims: Record<string, unknown>): string[] {
  const s = claims.scope ?? claims.scp;
  if (typeof s === 'string') return s.split(' ').filter((x) => x !== '');
  if (Array.isArray(s)) return s.filter((x): x is string => typeof x === 'string');
  return [];
}

/**
 * The route's rules over a genuine token. Returns a rejection, or sets the
 * consumer (when `consumer_claim` maps the token to one), the claims and scopes
 * (`ctx.vars` `auth.claims` / `auth.scopes`), and the connection's lifetime.
 */
export function admit(ctx: RequestContext, state: OidcState, t: CheckedToken): Rejection | undefined {
  if (!t.active) return invalid(state, 'token is not active (introspection)');
  const c = t.claims;
  let expMs: number | undefined;
  if (c.exp !== undefined) {
    if (typeof c.exp !== 'number' || !Number.isFinite(c.exp)) return invalid(state, 'exp is not a number');
    expMs = c.exp * 1000;
    if (expMs <= Date.now()) return expired(state);
  }

  const issuers = state.validIssuers ?? (state.provider.document ? new Set([state.provider.document.issuer]) : undefined);
  if (issuers === undefined) {
    return { reject: 'AUTH_UNAVAILABLE', detail: 'no trusted issuer known: the discovery document was never fetched and no valid_issuers is configured' };
  }
  if (typeof c.iss === 'string') {
    if (!issuers.has(c.iss)) return invalid(state, 'issuer not trusted');
  } else if (c.iss !== undefined || state.useJwks) {
    // A JWT must name its issuer; an introspection answer may leave it out (the provider asked is the issuer).
    return invalid(state, 'iss missing or not a string');
  }

  const aud = state.audience;
  if (aud.required || aud.matchClientId || aud.valid) {
    const raw = c[aud.claim];
    const values = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.filter((x): x is string => typeof x === 'string') : [];
    if (values.length === 0) return invalid(state, `audience claim "${aud.claim}" missing`);
    if (aud.matchClientId && !values.includes(state.clientId)) return invalid(state, 'mismatched audience: client_id not in the audience');
    if (aud.valid && !values.some((v) => aud.valid!.has(v))) return invalid(state, 'mismatched audience: none of valid_audiences');
  }

  for (const s of state.requiredScopes) {
    if (!t.scopes.includes(s)) {
      return {
        reject: 'AUTHZ_DENIED',
        headers: wwwAuthenticate('Bearer', state.realm, 'error="insufficient_scope"'),
        detail: `required scope "${s}" missing`,
      };
    }
  }

  if (state.consumerClaim !== undefined) {
    const name = c[state.consumerClaim];
    const info = typeof name === 'string' ? state.consumers.get(name) : undefined;
    if (!info) {
      return invalid(state, `claim "${state.consumerClaim}" ${typeof name === 'string' ? `(${JSON.stringify(name)}) names no consumer` : 'missing or not a string'}`);
    }
    const consumer: Consumer = {
      username: info.username,
      ...(info.group_id !== undefined ? { group_id: info.group_id } : {}),
      auth: 'openid-connect',
      claims: c,
      scopes: t.scopes,
    };
    const credentialId = credentialIdOf(c);
    if (credentialId !== undefined) consumer.credential_id = credentialId;
    ctx.consumer = consumer;
  }
  ctx.vars.set('auth.claims', c);
  ctx.vars.set('auth.scopes', t.scopes);
  if (expMs !== undefined) ctx.limitLifetime(expMs);
  return undefined;
}

/** Who the token was issued to: its subject, else its client. Never the token. */
function credentialIdOf(c: Readonly<Record<string, unknown>>): string | undefined {
  if (typeof c.sub === 'string' && c.sub !== '') return c.sub;
  if (typeof c.client_id === 'string' && c.client_id !== '') return c.client_id;
  return undefined;
}

export function refusal(state: OidcState, err: unknown): Rejection {
  if (err instanceof TokenRefused) return err.code === 'CREDENTIAL_EXPIRED' ? expired(state) : invalid(state, err.message);
  if (err instanceof ProviderUnavailable) return { reject: 'AUTH_UNAVAILABLE', detail: `OpenID provider unavailable: ${err.message}` };
  return { reject: 'AUTH_UNAVAILABLE', detail: `token check failed: ${err instanceof Error ? err.message : String(err)}` };
}

export function invalid(state: OidcState, detail: string): Rejection {
  return { reject: 'AUTH_INVALID', headers: wwwAuthenticate('Bearer', state.realm, 'error="invalid_token"'), detail };
}

function expired(state: OidcState): Rejection {
  return {
    reject: 'CREDENTIAL_EXPIRED',
    headers: wwwAuthenticate('Bearer', state.realm, 'error="invalid_token", error_description="The access token expired"'),
    detail: 'access token expired',
  };
}

/** The OAuth `error` code of a provider answer, for the log (never its other fields). */
function errorOf(body: unknown): string {
  if (isObject(body) && typeof body.error === 'string' && /^[\x20-\x7e]{1,64}$/.test(body.error)) return `, error ${body.error}`;
  return '';
}

function formEncode(s: string): string {
  return new URLSearchParams([['', s]]).toString().slice(1);
}

function ignore(): void {}
