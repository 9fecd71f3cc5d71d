/**
 * The verified-token cache: a bounded LRU map from the SHA-256 of a token to what
 * verifying it established, valid until the token's `exp` and never beyond. A
 * reconnect storm with the same tokens then costs a hash and a map lookup per
 * handshake instead of a signature verification.
 */
import { createHash } from 'node:crypto';

/** What a successful verification established about one token. */
export interface Verified {
  /** The token's `exp` in ms: the entry is never used at or after it. */
  readonly expiresMs: number;
  /** When the connection must close: `exp` plus the allowed leeway, in ms. */
  readonly lifetimeMs: number;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly scopes: readonly string[];
  /** Consumer-bound form: the `key` claim naming the credential. Issuer form: the mapped username. */
  readonly subject: string | undefined;
}

export class VerifiedCache {
  readonly #max: number;
  readonly #map = new Map<string, Verified>();

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#max === 0 ? 0 : this.#map.size;
  }

  /** A fresh entry for `key`, or undefined (expired entries are dropped). */
  get(key: string, now: number): Verified | undefined {
    const v = this.#map.get(key);
    if (v === undefined) return undefined;
    if (now >= v.expiresMs) {
      this.#map.delete(key);
      return undefined;
    }
    // Most recently used last.
    this.#map.delete(key);
    this.#map.set(key, v);
    return v;
  }

  set(key: string, v: Verified, now: number): void {
    if (this.#max === 0 || now >= v.expiresMs) return;
    this.#map.delete(key);
    if (this.#map.size >= this.#max) {
      // Evict the least recently used entry.
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
    this.#map.set(key, v);
  }
}

/** The cache key of a token: never the token itself. */
export function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('base64');
}
