/**
 * limit-req (APISIX priority 1001, access): how fast one key may open requests,
 * WebSocket handshakes and SSE streams, as a leaky bucket (resty.limit.req).
 *
 * The bucket drains at `rate` per second. A request that finds it empty passes at
 * once; one that finds `excess` requests ahead of it (at most `burst`) is delayed by
 * `excess / rate` seconds so that requests leave at `rate` (with `nodelay`, it passes
 * at once). Beyond `burst` it is refused with `rejected_code` and a `Retry-After`
 * covering the time until the bucket has drained back to `burst`. A refused request
 * is not counted. A WebSocket or SSE connection counts once, when it is opened.
 *
 * With `policy: redis` or `redis-cluster` the bucket lives in Redis (one Lua script
 * per request), shared by every instance. When Redis is unreachable the request is
 * answered at once: 503 LIMIT_STORE_UNAVAILABLE, or with `allow_degradation` let
 * through under a local bucket of the same rate and burst.
 */
import { definePlugin, type AccessResult, type Rejection, type RequestContext } from '../../core/plugin.js';
import { LocalStore, RedisStore, openStore, type BucketResult, type LimitStore, type StoreRef } from '../../store/index.js';
import { compileKey, type KeyFn } from '../shared/limit-key.js';
import { storeSpec } from '../shared/limit-store.js';
import { schema, type LimitReqConfig } from './schema.js';

const NAME = 'limit-req';

interface State {
  readonly rate: number;
  readonly burst: number;
  readonly nodelay: boolean;
  readonly key: KeyFn;
  /** Describes the key for the log (never its value: a header may be a credential). */
  readonly keyName: string;
  /** `req:<scope>:` — the same in every instance loading the same config. */
  readonly prefix: string;
  readonly rejectedCode: number;
  readonly rejectedMsg: string | undefined;
  readonly ref: StoreRef;
  readonly store: LimitStore;
  readonly redis: RedisStore | undefined;
  /** The local bucket used while Redis is down (allow_degradation). */
  readonly fallback: LocalStore | undefined;
}

export default definePlugin<LimitReqConfig, State>({
  name: NAME,
  version: '1.0.0',
  priority: 1001,
  schema,

  init(config, pctx) {
    const key = compileKey(config.key_type, config.key);
    const ref = openStore(storeSpec(config, pctx));
    const redis = ref.store instanceof RedisStore ? ref.store : undefined;
    return {
      rate: config.rate,
      burst: config.burst,
      nodelay: config.nodelay,
      key,
      keyName: config.key,
      prefix: `req:${pctx.scope}:`,
      rejectedCode: config.rejected_code,
      rejectedMsg: config.rejected_msg,
      ref,
      store: ref.store,
      redis,
      fallback: redis && config.allow_degradation ? new LocalStore() : undefined,
    };
  },

  access(ctx, st) {
    const key = st.prefix + st.key(ctx);
    if (st.redis) st.redis.useLogger(ctx.log);
    let r: BucketResult | Promise<BucketResult>;
    try {
      r = st.store.leakyBucket(key, st.rate, st.burst);
    } catch (err) {
      return unavailable(ctx, st, key, err);
    }
    if (r instanceof Promise) {
      return r.then(
        (v) => verdict(st, v),
        (err: unknown) => unavailable(ctx, st, key, err),
      );
    }
    return verdict(st, r);
  },

  async dispose(st) {
    await st.fallback?.close();
    await st.ref.release();
  },
});

function verdict(st: State, r: BucketResult): AccessResult | Promise<AccessResult> {
  if (!r.ok) return refuse(st, r);
  if (st.nodelay || r.delayMs < 1) return undefined;
  return new Promise<undefined>((resolve) => setTimeout(resolve, r.delayMs, undefined));
}

function refuse(st: State, r: BucketResult): Rejection {
  // The bucket is back at `burst` (so the next request fits) after (excess - burst) / rate seconds.
  const wait = Math.max(1, Math.ceil((r.excess - st.burst) / st.rate));
  return {
    reject: 'LIMIT_EXCEEDED',
    status: st.rejectedCode,
    ...(st.rejectedMsg !== undefined ? { message: st.rejectedMsg } : {}),
    headers: { 'retry-after': String(wait) },
    detail: `limit-req: over ${st.rate}/s with burst ${st.burst} for this ${st.keyName} (${st.prefix.slice(4, -1)})`,
  };
}

function unavailable(ctx: RequestContext, st: State, key: string, err: unknown): AccessResult | Promise<AccessResult> {
  if (!st.fallback) {
    const why = err instanceof Error ? err.message : String(err);
    return {
      reject: 'LIMIT_STORE_UNAVAILABLE',
      headers: { 'retry-after': String(Math.max(1, Math.ceil(1 / st.rate))) },
      detail: `limit-req: store unavailable: ${why}`,
    };
  }
  if (ctx.log.isLevelEnabled('debug')) ctx.log.debug({ plugin: NAME, request_id: ctx.id }, 'limit-req: Redis unavailable, local bucket applies');
  return verdict(st, st.fallback.leakyBucket(key, st.rate, st.burst));
}
