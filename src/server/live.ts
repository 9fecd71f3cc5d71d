/**
 * The live WebSocket and SSE connections of a gateway. Enforces credential
 * lifetime: a connection admitted by an expiring credential is closed when it
 * expires (WebSocket 1008 "credential expired", SSE stream ended). The gateway
 * looks at each connection as it joins (`onAdd`): one whose handshake started
 * before a reload may have to be closed at once.
 */
import { ERRORS } from '../core/errors.js';
import type { LiveConnection } from './exchange.js';

export class LiveRegistry {
  readonly #conns = new Set<LiveConnection>();
  readonly #expiry = new Map<LiveConnection, NodeJS.Timeout>();
  /** Called for each connection as it joins (after it is registered). */
  onAdd: ((conn: LiveConnection) => void) | undefined = undefined;

  get size(): number {
    return this.#conns.size;
  }

  [Symbol.iterator](): IterableIterator<LiveConnection> {
    return this.#conns.values();
  }

  has(conn: LiveConnection): boolean {
    return this.#conns.has(conn);
  }

  add(conn: LiveConnection): void {
    this.#conns.add(conn);
    this.#arm(conn);
    this.onAdd?.(conn);
  }

  #arm(conn: LiveConnection): void {
    const expiresAt = conn.exchange.ctx.expiresAt;
    if (expiresAt !== undefined) {
      // setTimeout's limit is 2^31-1 ms (24.8 days); longer lifetimes re-arm.
      const delay = Math.min(Math.max(0, expiresAt - Date.now()), 2 ** 31 - 1);
      const timer = setTimeout(expire, delay, this, conn);
      timer.unref();
      this.#expiry.set(conn, timer);
    }
  }

  delete(conn: LiveConnection): void {
    this.#conns.delete(conn);
    const timer = this.#expiry.get(conn);
    if (timer) {
      clearTimeout(timer);
      this.#expiry.delete(conn);
    }
  }

  /** Called by the expiry timer. */
  expire(conn: LiveConnection): void {
    this.#expiry.delete(conn);
    if (!this.#conns.has(conn)) return;
    const expiresAt = conn.exchange.ctx.expiresAt ?? 0;
    if (expiresAt > Date.now()) {
      this.#arm(conn);
      return;
    }
    conn.close(ERRORS.CREDENTIAL_EXPIRED.close, 'credential expired', 'CREDENTIAL_EXPIRED');
  }

  /** Close every connection matching `pick` (revocation, reload); returns how many. */
  closeWhere(pick: (c: LiveConnection) => boolean, code: number, reason: string, error: Parameters<LiveConnection['close']>[2]): number {
    let n = 0;
    for (const c of [...this.#conns]) {
      if (pick(c)) {
        c.close(code, reason, error);
        n++;
      }
    }
    return n;
  }
}

function expire(reg: LiveRegistry, conn: LiveConnection): void {
  reg.expire(conn);
}
