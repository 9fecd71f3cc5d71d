/**
 * The basic-auth consumer index, built once per consumers array (all routes of
 * one config share it, and its verification cache): basic user name -> consumer
 * and its parsed stored password.
 *
 * Hash checks (bcrypt, scrypt) are expensive on purpose, so successful ones are
 * remembered for VERIFIED_TTL_MS, keyed by SHA-256(username:password), in a
 * bounded map: a reconnect storm of one client re-runs no hash, and concurrent
 * checks of the same credentials share one computation. A new config builds a
 * new index, so a changed password is never served from the cache.
 */
import { createHash } from 'node:crypto';
import { perConsumers } from '../shared/consumer-index.js';
import type { ConsumerInfo } from '../../core/plugin.js';
import { checkHashed, parseStoredPassword, type StoredPassword } from './hash.js';

export const VERIFIED_TTL_MS = 60_000;
export const VERIFIED_MAX = 10_000;

export interface BasicUser {
  /** The consumer's name. */
  readonly consumer: string;
  readonly group_id: string | undefined;
  /** The basic-auth user name (X-Credential-Identifier). */
  readonly username: string;
  readonly stored: StoredPassword;
}

export class UserIndex {
  readonly users = new Map<string, BasicUser>();
  /** SHA-256(username:password) -> expiry (ms since the epoch); oldest first. */
  readonly #verified = new Map<string, number>();
  readonly #pending = new Map<string, Promise<boolean>>();

  /** True when these exact credentials passed a hash check less than VERIFIED_TTL_MS ago. */
  recentlyVerified(cacheKey: string, now = Date.now()): boolean {
    const until = this.#verified.get(cacheKey);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#verified.delete(cacheKey);
    return false;
  }

  /** Run (or join) the hash check of `password` for `user`; remembers a success. */
  verify(user: BasicUser, password: string, cacheKey: string): Promise<boolean> {
    let p = this.#pending.get(cacheKey);
    if (p === undefined) {
      p = checkHashed(user.stored, password).then(
        (ok) => {
          this.#pending.delete(cacheKey);
          if (ok) this.#remember(cacheKey);
          return ok;
        },
        (err: unknown) => {
          this.#pending.delete(cacheKey);
          throw err;
        },
      );
      this.#pending.set(cacheKey, p);
    }
    return p;
  }

  #remember(cacheKey: string): void {
    this.#verified.delete(cacheKey);
    if (this.#verified.size >= VERIFIED_MAX) {
      // Drop the oldest entry (Map iterates in insertion order).
      const oldest = this.#verified.keys().next().value;
      if (oldest !== undefined) this.#verified.delete(oldest);
    }
    this.#verified.set(cacheKey, Date.now() + VERIFIED_TTL_MS);
  }

  get cachedCount(): number {
    return this.#verified.size;
  }
}

/** The cache key of a pair of credentials (user names contain no colon). */
export function verifiedKey(username: string, password: string): string {
  return createHash('sha256').update(`${username}:${password}`).digest('base64');
}

/**
 * The index for a consumers array, built on first use. Throws, every time it is
 * asked, when two consumers share a user name or a stored hash is malformed.
 */
export const userIndex = perConsumers(build);

function build(consumers: readonly ConsumerInfo[]): UserIndex | Error {
  const index = new UserIndex();
  for (const c of consumers) {
    const cred = c.plugins['basic-auth'];
    if (!cred || typeof cred.username !== 'string' || typeof cred.password !== 'string') continue;
    const first = index.users.get(cred.username);
    if (first) {
      return new Error(`consumers "${first.consumer}" and "${c.username}" have the same basic-auth username "${cred.username}"; user names must be unique`);
    }
    let stored: StoredPassword;
    try {
      stored = parseStoredPassword(cred.password);
    } catch (err) {
      return new Error(`consumer "${c.username}": basic-auth ${(err as Error).message}`);
    }
    index.users.set(cred.username, { consumer: c.username, group_id: c.group_id, username: cred.username, stored });
  }
  return index;
}
