/**
 * Admin API authentication: the `X-API-KEY` header against `admin.key`, compared
 * in constant time. `timingSafeEqual` needs equal lengths, so both sides are
 * hashed first (SHA-256): the comparison takes the same time whatever the key
 * sent, and the length of the real key does not show.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export type AuthResult = { ok: true } | { ok: false; reason: 'missing key' | 'wrong key' };

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class KeyCheck {
  readonly #want: Buffer | undefined;

  /** `key` undefined: every call is allowed (the loader only permits that on loopback). */
  constructor(key: string | undefined) {
    this.#want = key === undefined ? undefined : digest(key);
  }

  get required(): boolean {
    return this.#want !== undefined;
  }

  check(header: string | string[] | undefined): AuthResult {
    if (this.#want === undefined) return { ok: true };
    // A repeated header is refused rather than guessed at.
    if (header === undefined || Array.isArray(header) || header === '') return { ok: false, reason: 'missing key' };
    return timingSafeEqual(digest(header), this.#want) ? { ok: true } : { ok: false, reason: 'wrong key' };
  }
}
