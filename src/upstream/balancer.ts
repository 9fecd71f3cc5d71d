/**
 * Picks the upstream node for a new connection: smooth weighted round-robin, the
 * algorithm of nginx's `upstream` module. On each pick every eligible node adds its
 * weight to its running `current` value, the node with the largest `current` wins
 * (the first one on a tie) and the sum of the eligible weights is taken from the
 * winner. Weights 5:1:1 give a, a, b, a, c, a, a: proportional and spread out.
 *
 * Eligible means weight > 0, not in the caller's `tried` set (so a caller that got
 * ECONNREFUSED retries on another node), and not marked failed within the last
 * `failTimeoutMs`. When every node that is otherwise eligible is marked failed, the
 * failed ones are tried anyway rather than giving up (nginx does the same when all
 * peers are down). `pick` returns undefined only when no node is left to try.
 */
import type { UpstreamNode } from '../config/types.js';

export interface BalancerOptions {
  /** How long a failed node is skipped, in ms (default 10000). */
  failTimeoutMs?: number;
  /** Clock in ms, for tests (default Date.now). */
  now?: () => number;
}

export interface Pick {
  node: UpstreamNode;
  index: number;
}

/** `host:port`, with an IPv6 address in brackets. */
export function nodeLabel(n: UpstreamNode): string {
  return n.host.includes(':') && n.host[0] !== '[' ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`;
}

export class Balancer {
  readonly nodes: readonly UpstreamNode[];
  private readonly failTimeoutMs: number;
  private readonly now: () => number;
  private readonly current: Float64Array;
  /** Time until which a node is skipped; 0 when it is not marked failed. */
  private readonly failedUntil: Float64Array;
  /** Number of nodes with failedUntil != 0, so the clock is read only when needed. */
  private failedCount = 0;

  constructor(nodes: readonly UpstreamNode[], opts: BalancerOptions = {}) {
    for (let i = 0; i < nodes.length; i++) {
      const w = nodes[i]!.weight;
      if (!Number.isFinite(w) || w < 0) {
        throw new TypeError(`upstream node ${i} has an invalid weight: ${w}`);
      }
    }
    const failTimeoutMs = opts.failTimeoutMs ?? 10000;
    if (!Number.isFinite(failTimeoutMs) || failTimeoutMs < 0) {
      throw new TypeError(`failTimeoutMs must be a non-negative number: ${failTimeoutMs}`);
    }
    this.nodes = nodes;
    this.failTimeoutMs = failTimeoutMs;
    this.now = opts.now ?? Date.now;
    this.current = new Float64Array(nodes.length);
    this.failedUntil = new Float64Array(nodes.length);
  }

  /** The next node to connect to, skipping the indexes in `tried`; undefined when none is left. */
  pick(tried?: ReadonlySet<number>): Pick | undefined {
    if (this.failedCount !== 0) this.expireFailures();
    let best = this.select(tried, false);
    if (best < 0 && this.failedCount !== 0) best = this.select(tried, true);
    if (best < 0) return undefined;
    return { node: this.nodes[best]!, index: best };
  }

  /** Skip this node for the next `failTimeoutMs` (a connect error or timeout). */
  markFailed(index: number): void {
    this.checkIndex(index);
    if (this.failedUntil[index] === 0) this.failedCount++;
    // Never 0, which means "not failed", even with a clock at 0 and no timeout.
    this.failedUntil[index] = Math.max(this.now() + this.failTimeoutMs, Number.MIN_VALUE);
  }

  /** The node answered: stop skipping it. */
  markOk(index: number): void {
    this.checkIndex(index);
    if (this.failedUntil[index] !== 0) {
      this.failedUntil[index] = 0;
      this.failedCount--;
    }
  }

  /** One round of smooth weighted round-robin over the eligible nodes; -1 when none is. */
  private select(tried: ReadonlySet<number> | undefined, includeFailed: boolean): number {
    const nodes = this.nodes;
    const current = this.current;
    const failedUntil = this.failedUntil;
    let best = -1;
    let total = 0;
    for (let i = 0; i < nodes.length; i++) {
      const w = nodes[i]!.weight;
      if (w === 0) continue;
      if (!includeFailed && failedUntil[i] !== 0) continue;
      if (tried !== undefined && tried.has(i)) continue;
      current[i] += w;
      total += w;
      if (best < 0 || current[i]! > current[best]!) best = i;
    }
    if (best >= 0) current[best] -= total;
    return best;
  }

  /** Clears failure marks whose timeout has passed. */
  private expireFailures(): void {
    const t = this.now();
    const failedUntil = this.failedUntil;
    for (let i = 0; i < failedUntil.length; i++) {
      const until = failedUntil[i]!;
      if (until !== 0 && until <= t) {
        failedUntil[i] = 0;
        this.failedCount--;
      }
    }
  }

  private checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.nodes.length) {
      throw new TypeError(`no upstream node at index ${index}`);
    }
  }
}
