/**
 * Checked tokens (a verified JWT's claims, an introspection answer), keyed by a
 * SHA-256 digest of the token so the cache never holds a token itself. Bounded:
 * past MAX_ENTRIES the oldest entry goes. An entry is never used after `until`.
 */
import { createHash } from 'node:crypto';

export const MAX_ENTRIES = 10_000;

export interface CheckedToken {
  /** The token's claims (JWT payload or introspection answer). */
  readonly claims: Readonly<Record<string, unknown>>;
  /** False for an introspection answer `active: false`. */
  readonly active: boolean;
  /** The granted scopes (`scope` or `scp`), parsed once. */
  readonly scopes: readonly string[];
}

interface Entry {
  readonly value: CheckedToken;
  readonly until: number;
}

export class TokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #max: number;

  constructor(max = MAX_ENTRIES) {
    this.#max = max;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string, now = Date.now()): CheckedToken | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.until <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: CheckedToken, until: number): void {
    if (!(until > Date.now())) return;
    this.#entries.delete(key);
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { value, until });
  }
}

/** The cache key of a token. */
export function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}
