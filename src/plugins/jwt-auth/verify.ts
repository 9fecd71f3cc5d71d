/**
 * jwt-auth at run time: find the token, answer from the verified-token cache when
 * it can (synchronously), otherwise verify with jose against the configured key
 * and remember the result until the token's `exp`.
 *
 * Two forms, chosen by the route config:
 *   consumer-bound (APISIX): the token's `key` claim names a consumer credential;
 *     only that credential's key and algorithm can verify it.
 *   issuer: the route names the key (`jwks_uri`, `public_key` or `secret`) and the
 *     allowed `algorithms`; `consumer_claim` optionally maps a claim to a consumer.
 */
import { jwtVerify, type JWTPayload, type JWTVerifyOptions, type JWSHeaderParameters, type FlattenedJWSInput } from 'jose';
import type { ConsumerInfo, Rejection, RequestContext } from '../../core/plugin.js';
import { findCredential, hideCredential, wwwAuthenticate, type CredentialSources, type FoundCredential } from '../../plugins/shared/credentials.js';
import { tokenKey, VerifiedCache, type Verified } from './cache.js';
import { JwksUnavailable, type ConsumerKey, type ConsumerKeys, type JwksSource, type VerifyKey } from './keys.js';
import type { Algorithm } from './schema.js';
import { deepFreeze, parseJwt, scopesOf, stripBearer } from './token.js';

export const PLUGIN = 'jwt-auth';

type KeyFn = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

/** Where an issuer-form route gets its keys: one configured key, or a remote JWKS. */
export type IssuerKeys = { kind: 'static'; key: VerifyKey } | { kind: 'jwks'; source: JwksSource };

export interface CommonSettings {
  sources: CredentialSources;
  hide: boolean;
  realm: string;
  issuer: string | string[] | undefined;
  audience: string | string[] | undefined;
  requiredClaims: readonly string[];
  /** Route-level leeway in seconds (clock_skew). */
  clockSkew: number;
  cacheSize: number;
}

export interface ConsumerBoundSettings extends CommonSettings {
  form: 'consumer';
  keyClaim: string;
  keys: ConsumerKeys;
}

export interface IssuerSettings extends CommonSettings {
  form: 'issuer';
  algorithms: readonly Algorithm[];
  keys: IssuerKeys;
  consumerClaim: string | undefined;
  consumers: ReadonlyMap<string, ConsumerInfo>;
}

export type Settings = ConsumerBoundSettings | IssuerSettings;

type Outcome = { ok: true; v: Verified } | { ok: false; r: Rejection };

/** The state of one route's jwt-auth: settings, the verified-token cache, verifications in flight. */
export class JwtAuth {
  readonly s: Settings;
  readonly cache: VerifiedCache;
  readonly #inflight = new Map<string, Promise<Outcome>>();
  readonly #challenge: Record<string, string>;
  readonly #invalidChallenge: Record<string, string>;

  constructor(s: Settings) {
    this.s = s;
    this.cache = new VerifiedCache(s.cacheSize);
    this.#challenge = wwwAuthenticate('Bearer', s.realm);
    this.#invalidChallenge = wwwAuthenticate('Bearer', s.realm, 'error="invalid_token"');
  }

  /** The rewrite phase: synchronous when the token is missing or a cache hit. */
  authenticate(ctx: RequestContext): Rejection | undefined | Promise<Rejection | undefined> {
    const found = findCredential(ctx, this.s.sources);
    if (!found) return { reject: 'AUTH_MISSING', headers: this.#challenge, detail: 'jwt-auth: no token in header, query, cookie or subprotocol' };
    const token = found.from === 'header' ? stripBearer(found.value) : found.value;
    if (token === '') return { reject: 'AUTH_MISSING', headers: this.#challenge, detail: `jwt-auth: empty token in ${found.from}` };
    const id = tokenKey(token);
    const hit = this.cache.get(id, Date.now());
    if (hit) return this.#admit(ctx, found, hit);
    let pending = this.#inflight.get(id);
    if (!pending) {
      pending = this.#verify(token)
        .catch((err: unknown): Outcome => ({ ok: false, r: this.#invalid(`jwt-auth: verification failed (${(err as Error)?.name ?? 'error'})`) }))
        .then((o) => {
          this.#inflight.delete(id);
          if (o.ok) this.cache.set(id, o.v, Date.now());
          return o;
        });
      this.#inflight.set(id, pending);
    }
    return pending.then((o) => (o.ok ? this.#admit(ctx, found, o.v) : o.r));
  }

  /** Apply a verified token to the request: consumer, claims, lifetime, hidden credential. */
  #admit(ctx: RequestContext, found: FoundCredential, v: Verified): Rejection | undefined {
    const s = this.s;
    let consumer: ConsumerInfo | undefined;
    let credentialId: string | undefined;
    if (s.form === 'consumer') {
      // The consumer must still exist in the config this state was built from.
      const cred = v.subject === undefined ? undefined : s.keys.get(v.subject);
      if (!cred) return this.#invalid('jwt-auth: the consumer of the token no longer exists');
      consumer = cred.consumer;
      credentialId = cred.key;
    } else if (s.consumerClaim !== undefined) {
      consumer = v.subject === undefined ? undefined : s.consumers.get(v.subject);
      if (!consumer) return this.#invalid(`jwt-auth: claim "${s.consumerClaim}" names no consumer`);
    }
    if (consumer) {
      ctx.consumer = {
        username: consumer.username,
        ...(consumer.group_id !== undefined ? { group_id: consumer.group_id } : {}),
        ...(credentialId !== undefined ? { credential_id: credentialId } : {}),
        auth: PLUGIN,
        claims: v.claims,
        scopes: v.scopes,
      };
    }
    ctx.vars.set(PLUGIN, { claims: v.claims });
    ctx.vars.set('auth.claims', v.claims);
    ctx.vars.set('auth.scopes', v.scopes);
    ctx.limitLifetime(v.lifetimeMs);
    if (s.hide) hideCredential(ctx, found);
    return undefined;
  }

  #invalid(detail: string): Rejection {
    return { reject: 'AUTH_INVALID', headers: this.#invalidChallenge, detail };
  }

  /** Verify a token not in the cache. Never rejects: every failure is an Outcome. */
  async #verify(token: string): Promise<Outcome> {
    const parsed = parseJwt(token);
    if (!parsed.ok) return { ok: false, r: this.#invalid(`jwt-auth: ${parsed.reason}`) };
    const { jwt } = parsed;
    const s = this.s;
    let key: VerifyKey | KeyFn;
    let algorithms: Algorithm[];
    let leeway = s.clockSkew;
    let cred: ConsumerKey | undefined;
    if (s.form === 'consumer') {
      const name = jwt.payload[s.keyClaim];
      if (typeof name !== 'string' || name === '') return { ok: false, r: this.#invalid(`jwt-auth: token has no "${s.keyClaim}" claim`) };
      cred = s.keys.get(name);
      if (!cred) return { ok: false, r: this.#invalid(`jwt-auth: the "${s.keyClaim}" claim names no consumer credential`) };
      // The credential's algorithm, and only it: an RS256 key is never an HS256 secret.
      if (jwt.alg !== cred.algorithm) {
        return { ok: false, r: this.#invalid(`jwt-auth: token algorithm is not ${cred.algorithm}, the algorithm of consumer "${cred.consumer.username}"`) };
      }
      key = cred.verifyKey;
      algorithms = [cred.algorithm];
      leeway = Math.max(leeway, cred.leeway);
    } else {
      algorithms = s.algorithms as Algorithm[];
      if (!algorithms.includes(jwt.alg as Algorithm)) return { ok: false, r: this.#invalid('jwt-auth: token algorithm is not one of the allowed algorithms') };
      const keys = s.keys;
      key = keys.kind === 'jwks' ? keys.source.lookup : keys.key;
    }
    const opts: JWTVerifyOptions = {
      algorithms,
      clockTolerance: leeway,
      requiredClaims: ['exp', ...s.requiredClaims],
      ...(s.issuer !== undefined ? { issuer: s.issuer } : {}),
      ...(s.audience !== undefined ? { audience: s.audience } : {}),
    };
    let payload: JWTPayload;
    try {
      payload = await verifyWith(token, key, opts);
    } catch (err) {
      return { ok: false, r: this.#failure(err) };
    }
    let subject: string | undefined;
    if (cred) subject = cred.key;
    else if (s.form === 'issuer' && s.consumerClaim !== undefined) {
      const c = payload[s.consumerClaim];
      if (typeof c !== 'string' || !s.consumers.has(c)) return { ok: false, r: this.#invalid(`jwt-auth: claim "${s.consumerClaim}" names no consumer`) };
      subject = c;
    }
    const exp = payload.exp as number;
    const claims = deepFreeze(payload as Record<string, unknown>);
    return {
      ok: true,
      v: {
        expiresMs: exp * 1000,
        lifetimeMs: (exp + leeway) * 1000,
        claims,
        scopes: Object.freeze(scopesOf(claims)),
        subject,
      },
    };
  }

  /** Map a verification error to a rejection; the cause goes to the log, never the token. */
  #failure(err: unknown): Rejection {
    if (err instanceof JwksUnavailable) {
      return { reject: 'AUTH_UNAVAILABLE', headers: { 'Retry-After': '1' }, detail: `jwt-auth: ${err.message}` };
    }
    const code = (err as { code?: unknown }).code;
    switch (code) {
      case 'ERR_JWT_EXPIRED':
        return { reject: 'CREDENTIAL_EXPIRED', headers: this.#invalidChallenge, detail: 'jwt-auth: token expired' };
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return this.#invalid('jwt-auth: signature verification failed');
      case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
        const e = err as { claim?: string; reason?: string };
        return this.#invalid(`jwt-auth: claim "${e.claim}" ${e.reason === 'missing' ? 'missing' : 'check failed'}`);
      }
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
        return this.#invalid('jwt-auth: token algorithm not allowed');
      case 'ERR_JWKS_NO_MATCHING_KEY':
        return this.#invalid('jwt-auth: no key of the JWKS matches the token (kid/alg)');
      default:
        return this.#invalid(`jwt-auth: token rejected (${typeof code === 'string' ? code : (err as Error)?.name ?? 'error'})`);
    }
  }
}

/**
 * jwtVerify, plus: when several keys of a JWKS match a token without a `kid`,
 * each is tried (jose leaves that to the caller).
 */
async function verifyWith(token: string, key: VerifyKey | KeyFn, opts: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, key as Parameters<typeof jwtVerify>[1], opts)).payload;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') throw err;
    let last: unknown = err;
    for await (const candidate of err as AsyncIterable<CryptoKey>) {
      try {
        return (await jwtVerify(token, candidate, opts)).payload;
      } catch (e) {
        last = e;
        // Claims failures are the same for every key: stop at the first that verified the signature.
        if ((e as { code?: string }).code !== 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') break;
      }
    }
    throw last;
  }
}
