/**
 * Verification keys, all decided by configuration and loaded at init: a consumer's
 * secret or public key (bound to the one algorithm the consumer names), a route's
 * secret or public key (one key per allowed algorithm), or a route's remote JWKS.
 * A token's header never chooses where a key comes from; its `kid` and `alg` only
 * pick among the keys configured here.
 */
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, jwksCache, type JWK, type JWSHeaderParameters, type FlattenedJWSInput } from 'jose';
import type { ConsumerInfo } from '../../core/plugin.js';
import { isHmac, type Algorithm, type JwtCredential } from './schema.js';

/**
 * A verification key. Node KeyObjects: loading them is synchronous (init stays
 * synchronous) and jose converts each to a CryptoKey once per algorithm (cached).
 */
export type VerifyKey = KeyObject;

/** A configured secret as an HMAC key (base64-decoded when `base64`). Throws when empty. */
export function secretKey(secret: string, base64: boolean, where: string): VerifyKey {
  const bytes = base64 ? Buffer.from(secret, 'base64') : Buffer.from(secret, 'utf8');
  if (bytes.length === 0) throw new Error(`${where}: secret is empty${base64 ? ' after base64 decoding' : ''}`);
  return createSecretKey(bytes);
}

/** Parse a PEM public key once. Throws with a readable message. */
export function parsePublicKey(pem: string, where: string): VerifyKey {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new Error(`${where}: public_key is not a PEM public key`);
  }
  return key;
}

/** Why `key` cannot verify `alg`, or undefined when it can. */
export function keyMismatch(key: KeyObject, alg: Algorithm): string | undefined {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  const curve = details?.namedCurve;
  let ok: boolean;
  switch (alg) {
    case 'RS256':
    case 'RS384':
    case 'RS512':
      ok = type === 'rsa';
      break;
    case 'PS256':
    case 'PS384':
    case 'PS512':
      ok = type === 'rsa' || type === 'rsa-pss';
      break;
    case 'ES256':
      ok = type === 'ec' && curve === 'prime256v1';
      break;
    case 'ES384':
      ok = type === 'ec' && curve === 'secp384r1';
      break;
    case 'ES512':
      ok = type === 'ec' && curve === 'secp521r1';
      break;
    case 'EdDSA':
      ok = type === 'ed25519';
      break;
    default:
      ok = false;
  }
  if (!ok) return `a ${type ?? 'unknown'}${curve ? ` ${curve}` : ''} key cannot verify ${alg}`;
  if ((type === 'rsa' || type === 'rsa-pss') && (details?.modulusLength ?? 0) < 2048) return 'RSA keys must be at least 2048 bits';
  return undefined;
}

/** A PEM public key for asymmetric algorithms, after checking that it fits every one of them. */
export function publicKeyFor(pem: string, algs: readonly Algorithm[], where: string): VerifyKey {
  const key = parsePublicKey(pem, where);
  for (const alg of algs) {
    if (isHmac(alg)) throw new Error(`${where}: ${alg} verifies with a secret, not a public_key`);
    const why = keyMismatch(key, alg);
    if (why) throw new Error(`${where}: public_key does not fit algorithm ${alg} (${why})`);
  }
  return key;
}

// ---- consumer credentials ------------------------------------------------------

/** One consumer's jwt-auth credential, ready to verify. */
export interface ConsumerKey {
  readonly consumer: ConsumerInfo;
  readonly key: string;
  readonly algorithm: Algorithm;
  readonly verifyKey: VerifyKey;
  readonly leeway: number;
}

/** Credentials by their `key` (the claim that names them in a token). */
export type ConsumerKeys = ReadonlyMap<string, ConsumerKey>;

const consumerKeys = new WeakMap<readonly ConsumerInfo[], ConsumerKeys>();

/**
 * The jwt-auth credentials of every consumer, indexed by `key`. Built once per
 * config (the consumers array is shared by all routes of one config) and shared.
 */
export function consumerKeysOf(consumers: readonly ConsumerInfo[]): ConsumerKeys {
  let p = consumerKeys.get(consumers);
  if (!p) {
    p = buildConsumerKeys(consumers);
    consumerKeys.set(consumers, p);
  }
  return p;
}

function buildConsumerKeys(consumers: readonly ConsumerInfo[]): ConsumerKeys {
  const out = new Map<string, ConsumerKey>();
  for (const consumer of consumers) {
    const cred = consumer.plugins['jwt-auth'] as unknown as JwtCredential | undefined;
    if (!cred) continue;
    const where = `consumer "${consumer.username}" jwt-auth`;
    const other = out.get(cred.key);
    if (other) throw new Error(`${where}: key is also the key of consumer "${other.consumer.username}"; keys must be unique`);
    let verifyKey: VerifyKey;
    if (isHmac(cred.algorithm)) {
      if (cred.secret === undefined) throw new Error(`${where}: ${cred.algorithm} needs a secret`);
      verifyKey = secretKey(cred.secret, cred.base64_secret, where);
    } else {
      if (cred.public_key === undefined) throw new Error(`${where}: ${cred.algorithm} needs a public_key`);
      verifyKey = publicKeyFor(cred.public_key, [cred.algorithm], where);
    }
    out.set(cred.key, { consumer, key: cred.key, algorithm: cred.algorithm, verifyKey, leeway: cred.lifetime_grace_period });
  }
  return out;
}

export { consumersByName } from '../shared/consumer-index.js';

// ---- remote JWKS ---------------------------------------------------------------

/** The JWKS endpoint could not be fetched and no keys were ever fetched from it. */
export class JwksUnavailable extends Error {
  constructor(cause: unknown) {
    super(`JWKS unavailable: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'JwksUnavailable';
  }
}

export interface JwksOptions {
  /** At most one refetch per this many ms on an unknown `kid`. */
  cooldownMs: number;
  /** Refetch the set after this many ms. */
  maxAgeMs: number;
  timeoutMs: number;
}

type KeyLookup = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

/** Lookup errors that are the token's fault: its `kid`/`alg` names no key of the set. */
const LOOKUP_ERRORS = new Set(['ERR_JWKS_NO_MATCHING_KEY', 'ERR_JWKS_MULTIPLE_MATCHING_KEYS', 'ERR_JOSE_NOT_SUPPORTED']);

/**
 * A remote JWKS (jose's createRemoteJWKSet: cached for maxAge, refetched at most
 * once per cooldown on an unknown kid) that keeps serving the last keys it fetched
 * while the endpoint is down, and backs off from a failing endpoint.
 */
export class JwksSource {
  readonly url: string;
  readonly #remote: KeyLookup;
  readonly #store: { uat?: number; jwks?: { keys: JWK[] } } = {};
  readonly #cooldownMs: number;
  #fallback: KeyLookup | undefined;
  #fallbackUat: number | undefined;
  #failedAt = Number.NEGATIVE_INFINITY;

  constructor(url: string, opts: JwksOptions) {
    this.url = url;
    this.#cooldownMs = opts.cooldownMs;
    const remote = createRemoteJWKSet(new URL(url), {
      cooldownDuration: opts.cooldownMs,
      cacheMaxAge: opts.maxAgeMs,
      timeoutDuration: opts.timeoutMs,
      [jwksCache]: this.#store,
    } as Parameters<typeof createRemoteJWKSet>[1]);
    this.#remote = remote as unknown as KeyLookup;
  }

  /** The key for a token header; rejects with JwksUnavailable only when no keys are known. */
  readonly lookup: KeyLookup = async (header, token) => {
    const sinceFailure = Date.now() - this.#failedAt;
    // The endpoint failed recently: serve the last fetched keys without asking it again.
    if (this.#fallback && sinceFailure < this.#cooldownMs) return this.#fallback(header, token);
    if (!this.#fallback && sinceFailure < Math.min(this.#cooldownMs, 1000)) throw new JwksUnavailable('endpoint failed moments ago');
    try {
      const key = await this.#remote(header, token);
      this.#refreshFallback();
      return key;
    } catch (err) {
      if (LOOKUP_ERRORS.has((err as { code?: string }).code ?? '')) {
        this.#refreshFallback();
        throw err;
      }
      this.#failedAt = Date.now();
      this.#refreshFallback();
      if (this.#fallback) return this.#fallback(header, token);
      throw new JwksUnavailable(err);
    }
  };

  #refreshFallback(): void {
    const { uat, jwks } = this.#store;
    if (uat !== undefined && uat !== this.#fallbackUat && jwks) {
      this.#fallback = createLocalJWKSet(jwks) as unknown as KeyLookup;
      this.#fallbackUat = uat;
    }
  }
}

const jwksSources = new WeakMap<readonly ConsumerInfo[], Map<string, JwksSource>>();

/** One JwksSource per URL and options within a config (routes share fetched keys). */
export function jwksSourceFor(consumers: readonly ConsumerInfo[], url: string, opts: JwksOptions): JwksSource {
  let m = jwksSources.get(consumers);
  if (!m) {
    m = new Map();
    jwksSources.set(consumers, m);
  }
  const id = `${url} ${opts.cooldownMs} ${opts.maxAgeMs} ${opts.timeoutMs}`;
  let s = m.get(id);
  if (!s) {
    s = new JwksSource(url, opts);
    m.set(id, s);
  }
  return s;
}
