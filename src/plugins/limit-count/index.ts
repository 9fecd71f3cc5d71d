/**
 * limit-count (APISIX priority 1002, access): how many requests, WebSocket
 * handshakes and SSE streams one key may open per `time_window` seconds.
 *
 * `window_type: fixed` counts in a window that starts at the key's first request;
 * `sliding` estimates the last `time_window` seconds from two aligned windows. The
 * first `count` requests of a window pass, the next are refused with
 * `rejected_code` and a `Retry-After` of the time until the window resets. A refused
 * request is not counted. A WebSocket or SSE connection counts once, when opened.
 *
 * The counter is per key and per route, or per key and `group`: routes with the same
 * group share it. With `show_limit_quota_header` the response carries
 * `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until
 * the window resets): on a relayed response, an SSE stream's head, a WebSocket 101
 * (through ctx.responseHeaders) and on a refusal.
 *
 * With `policy: redis` or `redis-cluster` the counter lives in Redis (one Lua script
 * per request), shared by every instance. When Redis is unreachable the request is
 * answered at once: 503 LIMIT_STORE_UNAVAILABLE, or with `allow_degradation` let
 * through under a local counter of the same size.
 */
import cluster from 'node:cluster';
import { definePlugin, type AccessResult, type Rejection, type RequestContext } from '../../core/plugin.js';
import { LocalStore, RedisStore, openStore, type LimitStore, type StoreRef, type WindowResult } from '../../store/index.js';
import { ClusterStore } from '../../store/cluster.js';
import { compileKey, type KeyFn } from '../shared/limit-key.js';
import { storeSpec } from '../shared/limit-store.js';
import { schema, type LimitCountConfig } from './schema.js';

const NAME = 'limit-count';

/**
 * Local stores of groups: the routes of one group share a counter, so they share the
 * store that holds it (local stores are otherwise one per plugin instance). Counted,
 * closed with the last instance.
 */
const groupStores = new Map<string, { store: LimitStore; users: number }>();

/** `shared`: policy local, which a worker of `gateway.workers` asks the primary for (store/cluster.ts). */
function groupStore(name: string, shared: boolean): LimitStore {
  let g = groupStores.get(name);
  if (!g) {
    g = { store: shared && cluster.isWorker ? new ClusterStore() : new LocalStore(), users: 0 };
    groupStores.set(name, g);
  }
  g.users++;
  return g.store;
}

async function releaseGroupStore(name: string): Promise<void> {
  const g = groupStores.get(name);
  if (!g || --g.users > 0) return;
  groupStores.delete(name);
  await g.store.close();
}

interface State {
  readonly count: number;
  readonly windowMs: number;
  readonly sliding: boolean;
  readonly key: KeyFn;
  /** Describes the key for the log (never its value: a header may be a credential). */
  readonly keyName: string;
  /** `count:<scope>:` or `count:group:<name>:` — the same in every instance loading the same config. */
  readonly prefix: string;
  readonly headers: boolean;
  readonly rejectedCode: number;
  readonly rejectedMsg: string | undefined;
  readonly ref: StoreRef;
  readonly store: LimitStore;
  readonly redis: RedisStore | undefined;
  /** The local counter used while Redis is down (allow_degradation). */
  readonly fallback: LocalStore | undefined;
  /** Key of the group's shared local store in groupStores, if this instance holds one. */
  readonly groupLocal: string | undefined;
}

export default definePlugin<LimitCountConfig, State>({
  name: NAME,
  version: '1.0.0',
  priority: 1002,
  schema,

  init(config, pctx) {
    const key = compileKey(config.key_type, config.key);
    const ref = openStore(storeSpec(config, pctx));
    const redis = ref.store instanceof RedisStore ? ref.store : undefined;
    const scope = config.group !== undefined ? `group:${config.group}` : pctx.scope;
    // A group's local counter (policy local, or the fallback while Redis is down) is shared by its routes.
    const groupLocal = config.group !== undefined && (!redis || config.allow_degradation) ? `${config.policy}:${config.group}` : undefined;
    const local = groupLocal !== undefined ? groupStore(groupLocal, !redis) : undefined;
    return {
      count: config.count,
      windowMs: config.time_window * 1000,
      sliding: config.window_type === 'sliding',
      key,
      keyName: config.key_type === 'constant' ? 'constant key' : config.key,
      prefix: `count:${config.window_type}:${scope}:`,
      headers: config.show_limit_quota_header,
      rejectedCode: config.rejected_code,
      rejectedMsg: config.rejected_msg,
      ref,
      store: !redis && local ? local : ref.store,
      redis,
      fallback: redis && config.allow_degradation ? (local instanceof LocalStore ? local : new LocalStore()) : undefined,
      groupLocal,
    };
  },

  access(ctx, st) {
    const key = st.prefix + st.key(ctx);
    if (st.redis) st.redis.useLogger(ctx.log);
    let r: WindowResult | Promise<WindowResult>;
    try {
      r = take(st.store, st, key);
    } catch (err) {
      return unavailable(ctx, st, key, err);
    }
    if (r instanceof Promise) {
      return r.then(
        (v) => verdict(ctx, st, v),
        (err: unknown) => unavailable(ctx, st, key, err),
      );
    }
    return verdict(ctx, st, r);
  },

  async dispose(st) {
    if (st.groupLocal !== undefined) await releaseGroupStore(st.groupLocal);
    else await st.fallback?.close();
    await st.ref.release();
  },
});

function take(store: LimitStore, st: State, key: string): WindowResult | Promise<WindowResult> {
  return st.sliding ? store.slidingWindow(key, st.count, st.windowMs) : store.fixedWindow(key, st.count, st.windowMs);
}

function quota(st: State, r: WindowResult): Record<string, string> {
  return {
    'x-ratelimit-limit': String(st.count),
    'x-ratelimit-remaining': String(r.remaining),
    'x-ratelimit-reset': String(Math.max(0, Math.ceil(r.resetMs / 1000))),
  };
}

function verdict(ctx: RequestContext, st: State, r: WindowResult): AccessResult {
  if (r.ok) {
    if (st.headers) Object.assign(ctx.responseHeaders, quota(st, r));
    return undefined;
  }
  return refuse(st, r);
}

function refuse(st: State, r: WindowResult): Rejection {
  return {
    reject: 'LIMIT_EXCEEDED',
    status: st.rejectedCode,
    ...(st.rejectedMsg !== undefined ? { message: st.rejectedMsg } : {}),
    headers: {
      ...(st.headers ? quota(st, { ...r, remaining: 0 }) : {}),
      'retry-after': String(Math.max(1, Math.ceil(r.resetMs / 1000))),
    },
    detail: `limit-count: ${st.count} per ${st.windowMs / 1000} s used up for this ${st.keyName} (${st.prefix.slice(6, -1)})`,
  };
}

function unavailable(ctx: RequestContext, st: State, key: string, err: unknown): AccessResult {
  if (!st.fallback) {
    const why = err instanceof Error ? err.message : String(err);
    return {
      reject: 'LIMIT_STORE_UNAVAILABLE',
      headers: { 'retry-after': '1' },
      detail: `limit-count: store unavailable: ${why}`,
    };
  }
  if (ctx.log.isLevelEnabled('debug')) ctx.log.debug({ plugin: NAME, request_id: ctx.id }, 'limit-count: Redis unavailable, local counter applies');
  return verdict(ctx, st, take(st.fallback, st, key) as WindowResult);
}
