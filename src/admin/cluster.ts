/**
 * The admin API with `gateway.workers` > 1. The workers share the admin port, so
 * any one of them answers a call; it relays the call through the primary over the
 * cluster IPC channel, the primary hands it to every worker (the one asking
 * included), each runs it on its own gateway, and the primary sends the answers
 * back together. So DELETE, PUT config and reload act on every worker, and the
 * status, the connection list and a /metrics scrape cover them all.
 *
 *   worker --call--> primary --do--> every ready worker --done--> primary --result--> worker
 *
 * A worker takes part once its gateway has started (it says `ready`); one that does
 * not answer in time, or dies meanwhile, is reported as missing, never waited for.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { INSTANCE_ENV } from './revoke.js';

/** Marks our messages on the shared IPC channel (the stores use `portcullis:store`). */
const TAG = 'portcullis:admin';

export type RelayOp = 'status' | 'connections' | 'revoke' | 'blocks' | 'unblock' | 'config' | 'reload' | 'metrics';
const OPS: readonly string[] = ['status', 'connections', 'revoke', 'blocks', 'unblock', 'config', 'reload', 'metrics'];

/** One worker's share of a relayed call. */
export interface WorkerAnswer {
  pid: number;
  value?: unknown;
  error?: string;
}

export interface RelayResult {
  answers: WorkerAnswer[];
  /** Workers that were asked and did not answer in time (or died). */
  missing: number;
}

type Msg =
  | { t: typeof TAG; k: 'ready' }
  | { t: typeof TAG; k: 'gone' }
  | { t: typeof TAG; k: 'call'; id: number; op: RelayOp; args: unknown; timeoutMs: number }
  | { t: typeof TAG; k: 'do'; rid: number; op: RelayOp; args: unknown }
  | { t: typeof TAG; k: 'done'; rid: number; pid: number; value?: unknown; error?: string }
  | { t: typeof TAG; k: 'result'; id: number; answers: WorkerAnswer[]; missing: number };

function ours(m: unknown): Msg | undefined {
  return typeof m === 'object' && m !== null && (m as { t?: unknown }).t === TAG ? (m as Msg) : undefined;
}

// ---- worker side ----------------------------------------------------------------

export type Executor = (op: RelayOp, args: unknown) => Promise<unknown>;

/** A worker's end of the relay: runs relayed calls on its gateway, and relays its own. */
export class WorkerRelay {
  readonly #exec: Executor;
  readonly #pending = new Map<number, { resolve(r: RelayResult): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  readonly #onMessage: (m: unknown) => void;
  #seq = 0;
  #closed = false;

  constructor(exec: Executor) {
    this.#exec = exec;
    this.#onMessage = (m: unknown) => this.#receive(m);
    process.on('message', this.#onMessage);
    send({ t: TAG, k: 'ready' });
  }

  /** Run `op` on every worker; rejects when the primary does not answer in time. */
  call(op: RelayOp, args: unknown, timeoutMs: number): Promise<RelayResult> {
    if (this.#closed) return Promise.reject(new Error('relay closed'));
    const id = ++this.#seq;
    return new Promise<RelayResult>((resolve, reject) => {
      // The primary gives up on slow workers after timeoutMs; this bounds a primary that never answers.
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error('the cluster primary did not answer'));
      }, timeoutMs + 2000);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
      if (!send({ t: TAG, k: 'call', id, op, args, timeoutMs })) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(new Error('no IPC channel to the cluster primary'));
      }
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    send({ t: TAG, k: 'gone' });
    process.off('message', this.#onMessage);
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('relay closed'));
    }
    this.#pending.clear();
  }

  #receive(raw: unknown): void {
    const m = ours(raw);
    if (!m) return;
    if (m.k === 'result') {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      clearTimeout(p.timer);
      p.resolve({ answers: m.answers, missing: m.missing });
      return;
    }
    if (m.k !== 'do') return;
    const rid = m.rid;
    if (!OPS.includes(m.op)) {
      send({ t: TAG, k: 'done', rid, pid: process.pid, error: 'unknown operation' });
      return;
    }
    this.#exec(m.op, m.args).then(
      (value) => send({ t: TAG, k: 'done', rid, pid: process.pid, value }),
      (err: unknown) => send({ t: TAG, k: 'done', rid, pid: process.pid, error: err instanceof Error ? err.message : String(err) }),
    );
  }
}

function send(m: Msg): boolean {
  if (!process.send || !process.connected) return false;
  try {
    process.send(m);
    return true;
  } catch {
    return false;
  }
}

// ---- primary side ---------------------------------------------------------------

interface Job {
  readonly origin: Worker;
  readonly id: number;
  /** Workers asked and not answered yet. */
  readonly waiting: Set<number>;
  readonly answers: WorkerAnswer[];
  readonly timer: NodeJS.Timeout;
  /** Workers that died before answering. */
  lost: number;
}

/**
 * Relay admin calls between the workers. Call once in the primary, before forking
 * (it also gives the workers of this instance one id on the revoke channel).
 * Returns a function that stops relaying.
 */
export function serveAdminRelay(): () => void {
  // Always a new id: one inherited from the environment could be shared by other instances.
  process.env[INSTANCE_ENV] = randomUUID();
  const ready = new Set<number>();
  const jobs = new Map<number, Job>();
  let seq = 0;

  const finish = (rid: number): void => {
    const job = jobs.get(rid);
    if (!job) return;
    jobs.delete(rid);
    clearTimeout(job.timer);
    if (job.origin.isConnected()) {
      job.origin.send({ t: TAG, k: 'result', id: job.id, answers: job.answers, missing: job.waiting.size + job.lost } satisfies Msg);
    }
  };

  const onMessage = (worker: Worker, raw: unknown): void => {
    const m = ours(raw);
    if (!m) return;
    switch (m.k) {
      case 'ready':
        ready.add(worker.id);
        return;
      case 'gone':
        ready.delete(worker.id);
        return;
      case 'call': {
        if (!OPS.includes(m.op)) return;
        const rid = ++seq;
        const targets = new Set(ready);
        targets.add(worker.id);
        const timeoutMs = Math.min(Math.max(Number(m.timeoutMs) || 0, 100), 120_000);
        const timer = setTimeout(finish, timeoutMs, rid);
        const job: Job = { origin: worker, id: m.id, waiting: new Set(), answers: [], timer, lost: 0 };
        jobs.set(rid, job);
        for (const wid of targets) {
          const w = cluster.workers?.[wid];
          if (!w || !w.isConnected()) continue;
          job.waiting.add(wid);
          w.send({ t: TAG, k: 'do', rid, op: m.op, args: m.args } satisfies Msg);
        }
        if (job.waiting.size === 0) finish(rid);
        return;
      }
      case 'done': {
        const job = jobs.get(m.rid);
        if (!job || !job.waiting.delete(worker.id)) return;
        job.answers.push({ pid: worker.process.pid ?? m.pid, ...(m.error !== undefined ? { error: m.error } : { value: m.value }) });
        if (job.waiting.size === 0) finish(m.rid);
        return;
      }
      default:
        return;
    }
  };

  const onExit = (worker: Worker): void => {
    ready.delete(worker.id);
    for (const [rid, job] of jobs) {
      if (job.origin === worker) {
        jobs.delete(rid);
        clearTimeout(job.timer);
        continue;
      }
      if (!job.waiting.delete(worker.id)) continue;
      job.lost++;
      if (job.waiting.size === 0) finish(rid);
    }
  };

  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return () => {
    cluster.off('message', onMessage);
    cluster.off('exit', onExit);
    for (const job of jobs.values()) clearTimeout(job.timer);
    jobs.clear();
  };
}
