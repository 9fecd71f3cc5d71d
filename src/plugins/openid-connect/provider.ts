/**
 * What the plugin knows about one OpenID provider: its discovery document and
 * its signing keys (JWKS), fetched lazily on first use and cached.
 *
 * - A fetch that fails leaves what was cached in place: a provider that goes
 *   down after one successful fetch does not stop tokens from being checked.
 * - With nothing cached, a failure is remembered for FAILURE_COOLDOWN_MS, so a
 *   storm of handshakes against a dead provider is answered 503 at once rather
 *   than each one waiting for its own timeout. Concurrent fetches are shared.
 * - A cached document older than its max age is refreshed in the background
 *   while the cached one keeps serving.
 * - The JWKS is fetched again on a `kid` it does not hold, at most once per
 *   JWKS_COOLDOWN_MS, and never from a location named by the token.
 */
import { createLocalJWKSet, errors } from 'jose';
import type { JSONWebKeySet, JWSHeaderParameters, FlattenedJWSInput, CryptoKey } from 'jose';
import { ProviderUnavailable, callProvider, describeUrl } from './http.js';

export const DISCOVERY_MAX_AGE_MS = 60 * 60 * 1000;
export const JWKS_MAX_AGE_MS = 10 * 60 * 1000;
export const JWKS_COOLDOWN_MS = 30 * 1000;
export const FAILURE_COOLDOWN_MS = 1000;

export interface DiscoveryDocument {
  readonly issuer: string;
  readonly jwks_uri?: string;
  readonly introspection_endpoint?: string;
  readonly [key: string]: unknown;
}

/**
 * A value fetched from the provider and cached: the shared in-flight fetch, the
 * background refresh when stale, the cooldown after a failure with nothing cached.
 */
class Cached<T> {
  #value: T | undefined;
  #fetchedAt = 0;
  #failedAt = 0;
  #failure = '';
  #inflight: Promise<T> | undefined;

  constructor(
    private readonly load: () => Promise<T>,
    private readonly maxAgeMs: number,
  ) {}

  /** The cached value, if any (synchronous). */
  get value(): T | undefined {
    return this.#value;
  }

  get fetchedAt(): number {
    return this.#fetchedAt;
  }

  /** The cached value, refreshing it in the background when stale; or a fetch. */
  get(): T | Promise<T> {
    if (this.#value !== undefined) {
      const now = Date.now();
      if (now - this.#fetchedAt > this.maxAgeMs && now - this.#failedAt >= FAILURE_COOLDOWN_MS) void this.refresh().catch(ignore);
      return this.#value;
    }
    if (this.#failedAt !== 0 && Date.now() - this.#failedAt < FAILURE_COOLDOWN_MS) {
      return Promise.reject(new ProviderUnavailable(`${this.#failure} (not retried for ${FAILURE_COOLDOWN_MS} ms)`));
    }
    return this.refresh();
  }

  /** Fetch now (shared with a fetch already under way). Keeps the old value on failure. */
  refresh(): Promise<T> {
    this.#inflight ??= this.load().then(
      (v) => {
        this.#value = v;
        this.#fetchedAt = Date.now();
        this.#failedAt = 0;
        this.#inflight = undefined;
        return v;
      },
      (err: unknown) => {
        this.#failedAt = Date.now();
        this.#failure = err instanceof Error ? err.message : String(err);
        this.#inflight = undefined;
        throw err instanceof ProviderUnavailable ? err : new ProviderUnavailable(this.#failure);
      },
    );
    return this.#inflight;
  }
}

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

export class OpenIdProvider {
  readonly discoveryUrl: string;
  readonly timeoutMs: number;
  readonly #discovery: Cached<DiscoveryDocument>;
  readonly #jwks: Cached<{ resolve: KeyResolver; size: number }>;
  #lastKidRefetch = 0;

  constructor(discoveryUrl: string, timeoutMs: number) {
    this.discoveryUrl = discoveryUrl;
    this.timeoutMs = timeoutMs;
    this.#discovery = new Cached(() => this.#loadDiscovery(), DISCOVERY_MAX_AGE_MS);
    this.#jwks = new Cached(() => this.#loadJwks(), JWKS_MAX_AGE_MS);
  }

  /** The cached discovery document (synchronous), if fetched. */
  get document(): DiscoveryDocument | undefined {
    return this.#discovery.value;
  }

  discovery(): DiscoveryDocument | Promise<DiscoveryDocument> {
    return this.#discovery.get();
  }

  /**
   * The key for a JWS, for jose's jwtVerify: from the cached JWKS, fetched again
   * once per cooldown when the `kid` is unknown.
   */
  readonly key: KeyResolver = async (header, token) => {
    const jwks = await this.#jwks.get();
    try {
      return await jwks.resolve(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      const now = Date.now();
      if (now - this.#lastKidRefetch < JWKS_COOLDOWN_MS) throw err;
      this.#lastKidRefetch = now;
      let fresh: { resolve: KeyResolver };
      try {
        fresh = await this.#jwks.refresh();
      } catch {
        throw err; // the provider is down: the token names a key we do not hold
      }
      return fresh.resolve(header, token);
    }
  };

  async #loadDiscovery(): Promise<DiscoveryDocument> {
    const res = await callProvider(this.discoveryUrl, this.timeoutMs);
    const where = describeUrl(this.discoveryUrl);
    if (res.status !== 200) throw new ProviderUnavailable(`discovery ${where} answered ${res.status}`);
    const doc = res.body;
    if (!isObject(doc) || typeof doc.issuer !== 'string' || doc.issuer === '') {
      throw new ProviderUnavailable(`discovery ${where} gave no issuer`);
    }
    for (const field of ['jwks_uri', 'introspection_endpoint'] as const) {
      if (doc[field] !== undefined && !isHttpUrl(doc[field])) {
        throw new ProviderUnavailable(`discovery ${where}: ${field} is not an http(s) URL`);
      }
    }
    return doc as DiscoveryDocument;
  }

  async #loadJwks(): Promise<{ resolve: KeyResolver; size: number }> {
    const doc = await this.discovery();
    if (!doc.jwks_uri) throw new ProviderUnavailable(`discovery ${describeUrl(this.discoveryUrl)} has no jwks_uri`);
    const res = await callProvider(doc.jwks_uri, this.timeoutMs);
    const where = describeUrl(doc.jwks_uri);
    if (res.status !== 200) throw new ProviderUnavailable(`JWKS ${where} answered ${res.status}`);
    const body = res.body;
    if (!isObject(body) || !Array.isArray(body.keys)) throw new ProviderUnavailable(`JWKS ${where} is not a key set`);
    // Only public signing keys: a symmetric ("oct") key in a public key set is a provider mistake.
    const keys = (body.keys as unknown[]).filter(
      (k): k is JSONWebKeySet['keys'][number] => isObject(k) && typeof k.kty === 'string' && k.kty !== 'oct' && (k.use === undefined || k.use === 'sig'),
    );
    let resolve: KeyResolver;
    try {
      resolve = createLocalJWKSet({ keys }) as KeyResolver;
    } catch (err) {
      throw new ProviderUnavailable(`JWKS ${where} is invalid: ${(err as Error).message}`);
    }
    return { resolve, size: keys.length };
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isHttpUrl(v: unknown): boolean {
  if (typeof v !== 'string') return false;
  try {
    const u = new URL(v);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

function ignore(): void {}
