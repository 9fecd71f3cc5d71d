/**
 * Consumers blocked for a while by the admin API (`DELETE /admin/connections?consumer=NAME&block=SECONDS`):
 * their live connections are closed by the revocation, and while the block lasts
 * every new request or handshake they authenticate is refused (403 REVOKED with
 * Retry-After). A block lives in the gateway, not in the config: it survives a
 * reload and ends by itself, by `DELETE /admin/blocks`, or with the process. With
 * `gateway.redis` it is also kept in Redis until it ends, so that an instance that
 * starts later learns it (admin/revoke.ts).
 */

/** Longest block the admin API accepts, in seconds (7 days). */
export const MAX_BLOCK_SECONDS = 7 * 24 * 3600;
/** Most consumers blocked at once; an admin call past it is refused. */
export const MAX_BLOCKS = 10_000;

export interface BlockInfo {
  consumer: string;
  /** When the block ends (ISO 8601). */
  until: string;
  remaining_s: number;
}

export class ConsumerBlocks {
  /** consumer -> end of the block (ms since the epoch). */
  readonly #until = new Map<string, number>();

  get size(): number {
    return this.#until.size;
  }

  /**
   * Block `consumer` for `seconds` from now (a later block replaces an earlier one,
   * shorter or longer). Returns false when MAX_BLOCKS others are blocked already.
   */
  block(consumer: string, seconds: number, now = Date.now()): boolean {
    return this.blockUntil(consumer, now + seconds * 1000, now);
  }

  /** Block `consumer` until `until` (ms since the epoch), as block() does. */
  blockUntil(consumer: string, until: number, now = Date.now()): boolean {
    this.#sweep(now);
    if (!this.#until.has(consumer) && this.#until.size >= MAX_BLOCKS) return false;
    this.#until.set(consumer, until);
    return true;
  }

  /** Lift a block; true when there was one. */
  unblock(consumer: string): boolean {
    return this.#until.delete(consumer);
  }

  /** Seconds left of `consumer`'s block (rounded up), 0 when not blocked. One Map lookup when nobody is. */
  remaining(consumer: string, now = Date.now()): number {
    if (this.#until.size === 0) return 0;
    const until = this.#until.get(consumer);
    if (until === undefined) return 0;
    if (until <= now) {
      this.#until.delete(consumer);
      return 0;
    }
    return Math.ceil((until - now) / 1000);
  }

  list(now = Date.now()): BlockInfo[] {
    this.#sweep(now);
    const out: BlockInfo[] = [];
    for (const [consumer, until] of this.#until) {
      out.push({ consumer, until: new Date(until).toISOString(), remaining_s: Math.ceil((until - now) / 1000) });
    }
    return out.sort((a, b) => (a.consumer < b.consumer ? -1 : a.consumer > b.consumer ? 1 : 0));
  }

  #sweep(now: number): void {
    for (const [consumer, until] of this.#until) if (until <= now) this.#until.delete(consumer);
  }
}
