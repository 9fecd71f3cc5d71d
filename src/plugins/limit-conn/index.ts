/**
 * limit-conn (APISIX priority 1003, access + log): how many connections (or
 * requests in flight) one key may hold at once.
 *
 * The slot is taken in `access` and given back in `log`, which the gateway runs
 * exactly once on every way a request or connection ends (normal close, client
 * reset, upstream death or 5xx, idle timeout, shutdown, and a later plugin
 * refusing the handshake after this one admitted it: APISIX #11868). So a
 * WebSocket or SSE connection holds its slot from the accepted handshake to its
 * close; a plain HTTP request for the request. Release is idempotent.
 *
 * Up to `conn` slots: admitted at once. Up to `conn + burst`: admitted after a
 * delay, as resty.limit.conn computes it (`step * floor((n - 1) / conn)` for the
 * n-th slot; the step starts at `default_conn_delay` and, unless
 * `only_use_default_delay`, follows the average duration of plain HTTP requests;
 * WebSocket and SSE durations are connection lifetimes and never feed it).
 * Beyond: refused before any 101 with `rejected_code` and `Retry-After`.
 *
 * With `policy: redis` or `redis-cluster` the slots are leases in Redis shared by
 * every instance (see src/store/redis.ts). When Redis is unreachable the request is
 * answered at once: 503 LIMIT_STORE_UNAVAILABLE, or with `allow_degradation` let
 * through under a local cap of the same size. Open connections are never touched.
 */
import { definePlugin, type AccessResult, type Rejection, type RequestContext } from '../../core/plugin.js';
import { LocalStore, RedisStore, openStore, type Lease, type LimitStore, type SlotResult, type StoreRef } from '../../store/index.js';
import { compileKey, type KeyFn } from '../shared/limit-key.js';
import { storeSpec } from '../shared/limit-store.js';
import { schema, type LimitConnConfig } from './schema.js';

const NAME = 'limit-conn';

interface State {
  readonly conn: number;
  /** conn + burst: slots a key may hold. */
  readonly max: number;
  /** The delay step, seconds; adapts to plain HTTP request times unless onlyDefault. */
  unitDelay: number;
  readonly onlyDefault: boolean;
  readonly key: KeyFn;
  /** Describes the key for the log (never its value: a header may be a credential). */
  readonly keyName: string;
  /** `conn:<scope>:` — the same in every instance loading the same config. */
  readonly prefix: string;
  readonly ttlMs: number;
  readonly rejectedCode: number;
  readonly rejectedMsg: string | undefined;
  readonly allowDegradation: boolean;
  readonly ref: StoreRef;
  readonly store: LimitStore;
  /** The Redis store, for outage reports. */
  readonly redis: RedisStore | undefined;
  /** The local cap used while Redis is down (allow_degradation). */
  readonly fallback: LocalStore | undefined;
}

/** What one request holds, in ctx.vars. */
interface Held {
  store: LimitStore;
  lease: Lease | undefined;
  /** The log phase ran: a slot granted after this is given back at once. */
  done: boolean;
  /** Seconds this request was delayed. */
  delay: number;
}

export default definePlugin<LimitConnConfig, State>({
  name: NAME,
  version: '1.0.0',
  priority: 1003,
  schema,

  init(config, pctx) {
    const key = compileKey(config.key_type, config.key);
    const spec = storeSpec(config, pctx);
    const ref = openStore(spec);
    const redis = ref.store instanceof RedisStore ? ref.store : undefined;
    return {
      conn: config.conn,
      max: config.conn + config.burst,
      unitDelay: config.default_conn_delay,
      onlyDefault: config.only_use_default_delay,
      key,
      keyName: config.key,
      prefix: `conn:${pctx.scope}:`,
      ttlMs: config.key_ttl * 1000,
      rejectedCode: config.rejected_code,
      rejectedMsg: config.rejected_msg,
      allowDegradation: config.allow_degradation,
      ref,
      store: ref.store,
      redis,
      fallback: redis && config.allow_degradation ? new LocalStore() : undefined,
    };
  },

  access(ctx, st) {
    const key = st.prefix + st.key(ctx);
    const held: Held = { store: st.store, lease: undefined, done: false, delay: 0 };
    ctx.vars.set(NAME, held);
    if (st.redis) st.redis.useLogger(ctx.log);
    let r: SlotResult | Promise<SlotResult>;
    try {
      r = st.store.acquireSlot(key, st.max, st.ttlMs);
    } catch (err) {
      return unavailable(ctx, st, held, key, err);
    }
    if (r instanceof Promise) {
      return r.then(
        (v) => admit(st, held, v),
        (err: unknown) => unavailable(ctx, st, held, key, err),
      );
    }
    return admit(st, held, r);
  },

  log(ctx, summary, st) {
    const held = ctx.vars.get(NAME) as Held | undefined;
    if (!held || held.done) return;
    held.done = true;
    const lease = held.lease;
    if (!lease) return;
    held.lease = undefined;
    void held.store.releaseSlot(lease);
    if (!st.onlyDefault && summary.protocol === 'http') {
      const latency = summary.durationMs / 1000 - held.delay;
      if (latency > 0) st.unitDelay = (latency + st.unitDelay) / 2;
    }
  },

  async dispose(st) {
    await st.fallback?.close();
    await st.ref.release();
  },
});

function admit(st: State, held: Held, r: SlotResult): AccessResult | Promise<AccessResult> {
  if (!r.ok) return refuse(st, r.count);
  if (held.done) {
    // The request ended (handshake timeout, client gone) while the store answered.
    void held.store.releaseSlot(r.lease!);
    return undefined;
  }
  held.lease = r.lease;
  if (r.count <= st.conn) return undefined;
  const delay = st.unitDelay * Math.floor((r.count - 1) / st.conn);
  if (delay < 0.001) return undefined;
  held.delay = delay;
  return new Promise<undefined>((resolve) => setTimeout(resolve, delay * 1000, undefined));
}

function refuse(st: State, count: number): Rejection {
  return {
    reject: 'LIMIT_EXCEEDED',
    status: st.rejectedCode,
    ...(st.rejectedMsg !== undefined ? { message: st.rejectedMsg } : {}),
    headers: { 'retry-after': retryAfter(st) },
    detail: `limit-conn: ${count} of ${st.max} slots already held for this ${st.keyName} (${st.prefix.slice(5, -1)})`,
  };
}

function unavailable(ctx: RequestContext, st: State, held: Held, key: string, err: unknown): AccessResult | Promise<AccessResult> {
  const why = err instanceof Error ? err.message : String(err);
  if (!st.fallback) {
    return {
      reject: 'LIMIT_STORE_UNAVAILABLE',
      headers: { 'retry-after': retryAfter(st) },
      detail: `limit-conn: store unavailable: ${why}`,
    };
  }
  if (ctx.log.isLevelEnabled('debug')) ctx.log.debug({ plugin: NAME, request_id: ctx.id }, 'limit-conn: Redis unavailable, local cap applies');
  held.store = st.fallback;
  return admit(st, held, st.fallback.acquireSlot(key, st.max, st.ttlMs));
}

/**
 * Seconds a refused client should wait: the delay step (at least 1 s), spread over
 * [step, 2 step) so that refused clients do not all come back in the same second.
 */
function retryAfter(st: State): string {
  const base = Math.max(1, Math.ceil(st.unitDelay));
  return String(base + Math.floor(Math.random() * base));
}
