/**
 * Cached decisions of the authorization service, so that a reconnect storm does
 * not become a storm of auth requests. Keyed on a SHA-256 of what the service
 * would have been sent (the values, never stored as such: they carry cookies and
 * tokens). Bounded by `max_entries` and by MAX_CACHE_BYTES of relayed denial
 * bodies (so that many distinct denied credentials cannot fill the memory with
 * 64 KiB bodies): the least recently used entry goes first; expired entries are
 * dropped when met. Failures are never cached; concurrent identical questions
 * share one request to the service.
 */
import { createHash } from 'node:crypto';
import type { Outcome } from './client.js';

/** Budget for the bodies of cached denials, per plugin instance. */
export const MAX_CACHE_BYTES = 8 * 1024 * 1024;
/** What an entry is counted as besides its body (key, headers, bookkeeping). */
const ENTRY_OVERHEAD = 512;

interface Entry {
  readonly outcome: Outcome;
  readonly expires: number;
  readonly bytes: number;
}

export class DecisionCache {
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Promise<Outcome>>();
  readonly #allowMs: number;
  readonly #denyMs: number;
  readonly #max: number;
  #bytes = 0;

  constructor(allowTtlSeconds: number, denyTtlSeconds: number, maxEntries: number) {
    this.#allowMs = allowTtlSeconds * 1000;
    this.#denyMs = denyTtlSeconds * 1000;
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string, now: number): Outcome | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    this.#entries.delete(key);
    if (e.expires <= now) {
      this.#bytes -= e.bytes;
      return undefined;
    }
    this.#entries.set(key, e); // most recently used last
    return e.outcome;
  }

  /** A question with the same key already on its way to the service. */
  pending(key: string): Promise<Outcome> | undefined {
    return this.#pending.get(key);
  }

  /** Ask once for `key`; the answer is stored when cacheable. */
  track(key: string, question: Promise<Outcome>): Promise<Outcome> {
    this.#pending.set(key, question);
    return question.then(
      (o) => {
        this.#pending.delete(key);
        this.#store(key, o, Date.now());
        return o;
      },
      (err: unknown) => {
        this.#pending.delete(key);
        throw err;
      },
    );
  }

  #store(key: string, o: Outcome, now: number): void {
    let ms = 0;
    if (o.kind === 'allow') ms = this.#allowMs;
    else if (o.kind === 'deny' && o.complete) ms = this.#denyMs;
    if (ms <= 0) return;
    const bytes = ENTRY_OVERHEAD + (o.kind === 'deny' && o.body ? o.body.length : 0);
    this.#drop(key);
    while (this.#entries.size > 0 && (this.#entries.size >= this.#max || this.#bytes + bytes > MAX_CACHE_BYTES)) {
      this.#drop(this.#entries.keys().next().value!);
    }
    this.#entries.set(key, { outcome: o, expires: now + ms, bytes });
    this.#bytes += bytes;
  }

  #drop(key: string): void {
    const e = this.#entries.get(key);
    if (!e) return;
    this.#entries.delete(key);
    this.#bytes -= e.bytes;
  }
}

/**
 * The cache key: SHA-256 over the named values, each length-prefixed so that no
 * two different lists hash the same input (an absent value differs from '').
 */
export function cacheKey(values: readonly (string | undefined)[]): string {
  const h = createHash('sha256');
  for (const v of values) h.update(v === undefined ? '-;' : `${Buffer.byteLength(v)}:${v};`);
  return h.digest('base64');
}
