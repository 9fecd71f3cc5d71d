/**
 * `local` limits across the workers of `gateway.workers` (node:cluster): the primary
 * holds the real LocalStores, a worker holds a ClusterStore that forwards each
 * primitive over the cluster IPC channel (a message with an id; the primary answers
 * with the result), so its answers are promises, like the Redis store's.
 *
 * The primary holds one LocalStore for every plugin instance of every worker, as a
 * Redis holds one keyspace: each plugin names its keys by its scope (`conn:<scope>:`,
 * `count:group:<name>:`, ...), which is the same in every worker, whatever order
 * its plugins were created in, before or after a reload, and in a worker forked
 * later to replace one that died. The primary remembers the leases each worker
 * holds and releases them when the worker exits.
 */
import cluster, { type Worker } from 'node:cluster';
import { LocalStore } from './local.js';
import type { BucketResult, Lease, LimitStore, SlotResult, TokenResult, WindowResult } from './types.js';

/** Marks our messages on the shared IPC channel. */
const TAG = 'portcullis:store';

type Op = 'acquireSlot' | 'releaseSlot' | 'countSlots' | 'leakyBucket' | 'fixedWindow' | 'slidingWindow' | 'takeTokens';

interface Request {
  readonly t: typeof TAG;
  readonly id: number;
  readonly op: Op;
  readonly args: unknown[];
}

interface Reply {
  readonly t: typeof TAG;
  readonly id: number;
  readonly value?: unknown;
  readonly error?: string;
}

// ---- worker side ----

let msgSeq = 0;
const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
let listening = false;

function listen(): void {
  if (listening) return;
  listening = true;
  process.on('message', (m: unknown) => {
    const r = m as Reply | null;
    if (!r || typeof r !== 'object' || r.t !== TAG) return;
    const p = pending.get(r.id);
    if (!p) return;
    pending.delete(r.id);
    if (r.error !== undefined) p.reject(new Error(r.error));
    else p.resolve(r.value);
  });
}

/** A worker's view of the primary's local store. */
export class ClusterStore implements LimitStore {
  readonly policy = 'local' as const;

  constructor() {
    listen();
  }

  #call<T>(op: Op, args: unknown[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const id = ++msgSeq;
      const req: Request = { t: TAG, id, op, args };
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        process.send!(req);
      } catch (err) {
        pending.delete(id);
        reject(err as Error);
      }
    });
  }

  acquireSlot(key: string, limit: number, ttlMs: number): Promise<SlotResult> {
    return this.#call('acquireSlot', [key, limit, ttlMs]);
  }

  releaseSlot(lease: Lease): Promise<void> {
    // Never rejects: a primary that is gone releases everything anyway.
    return this.#call<void>('releaseSlot', [{ key: lease.key, id: lease.id }]).catch(() => undefined);
  }

  countSlots(key: string): Promise<number> {
    return this.#call('countSlots', [key]);
  }

  leakyBucket(key: string, rate: number, burst: number): Promise<BucketResult> {
    return this.#call('leakyBucket', [key, rate, burst]);
  }

  fixedWindow(key: string, limit: number, windowMs: number, cost = 1): Promise<WindowResult> {
    return this.#call('fixedWindow', [key, limit, windowMs, cost]);
  }

  slidingWindow(key: string, limit: number, windowMs: number, cost = 1): Promise<WindowResult> {
    return this.#call('slidingWindow', [key, limit, windowMs, cost]);
  }

  takeTokens(key: string, rate: number, capacity: number, min: number, want: number): Promise<TokenResult> {
    return this.#call('takeTokens', [key, rate, capacity, min, want]);
  }

  async close(): Promise<void> {}
}

// ---- primary side ----

/**
 * Answer the workers' store requests in the primary. Call once, before forking.
 * Returns a function that closes the stores.
 */
export function serveClusterStores(): () => Promise<void> {
  const s = new LocalStore();
  /** Leases per worker id, by lease id. */
  const leases = new Map<number, Map<string, Lease>>();

  const onMessage = (worker: Worker, m: unknown): void => {
    const q = m as Request | null;
    if (!q || typeof q !== 'object' || q.t !== TAG) return;
    let reply: Reply;
    try {
      const a = q.args;
      let value: unknown;
      switch (q.op) {
        case 'acquireSlot': {
          const r = s.acquireSlot(a[0] as string, a[1] as number, a[2] as number);
          if (r.lease) {
            let held = leases.get(worker.id);
            if (!held) leases.set(worker.id, (held = new Map()));
            held.set(r.lease.id, r.lease);
          }
          value = r;
          break;
        }
        case 'releaseSlot': {
          const lease = a[0] as Lease;
          s.releaseSlot(lease);
          leases.get(worker.id)?.delete(lease.id);
          value = undefined;
          break;
        }
        case 'countSlots':
          value = s.countSlots(a[0] as string);
          break;
        case 'leakyBucket':
          value = s.leakyBucket(a[0] as string, a[1] as number, a[2] as number);
          break;
        case 'fixedWindow':
          value = s.fixedWindow(a[0] as string, a[1] as number, a[2] as number, a[3] as number);
          break;
        case 'slidingWindow':
          value = s.slidingWindow(a[0] as string, a[1] as number, a[2] as number, a[3] as number);
          break;
        case 'takeTokens':
          value = s.takeTokens(a[0] as string, a[1] as number, a[2] as number, a[3] as number, a[4] as number);
          break;
        default:
          throw new Error(`unknown store operation ${String(q.op)}`);
      }
      reply = { t: TAG, id: q.id, value };
    } catch (err) {
      reply = { t: TAG, id: q.id, error: (err as Error).message };
    }
    if (worker.isConnected()) worker.send(reply);
  };

  const onExit = (worker: Worker): void => {
    const held = leases.get(worker.id);
    if (!held) return;
    leases.delete(worker.id);
    for (const lease of held.values()) s.releaseSlot(lease);
  };

  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return async () => {
    cluster.off('message', onMessage);
    cluster.off('exit', onExit);
    await s.close();
  };
}
