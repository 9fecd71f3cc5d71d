/**
 * limit-messages (priority 1004, message + control phases, and a frame phase for
 * tunnel mode): how many WebSocket messages (and, optionally, payload bytes) per
 * second a connection, or a key across all of its connections, may send.
 *
 * Token buckets: `rate` messages per second, holding `rate + burst` (at least 1);
 * optionally `bytes_per_second`, holding `bytes_per_second + bytes_burst` (a message
 * costs its length, capped at the bucket size so one big message cannot be refused
 * forever). Every data message counts, empty ones included, and so do pings and pongs
 * (through the control phase) and messages a later plugin rejects (this plugin runs
 * before the validators). `direction` picks what counts: client, upstream or both
 * (each direction its own bucket).
 *
 *   scope connection  a bucket per connection, in this process only (no store)
 *   scope key         a bucket per key (key_type/key as limit-conn) in the `policy`
 *                     store, shared by every connection and instance of the key
 *   scope both        both must have a token
 *
 * Per key, a connection takes tokens from the store in small batches
 * (LimitStore.takeTokens with min = what it needs, want = that plus a batch of about
 * a tenth of a second's worth, never more than a quarter of the bucket), so most
 * messages cost no Redis round trip; a message that needs the store waits for it
 * (later messages of its direction queue behind it). A ping that needs the store
 * does not wait: it runs on credit and a refused refill closes (or drops) at the
 * next frame.
 *
 * Over the limit: `on_exceed: close` closes the sender with 1008 `LIMIT_EXCEEDED`
 * (the other side with 1001); `drop` discards the message (a ping cannot be dropped:
 * it is already answered; it only uses up tokens). Redis unreachable: connections
 * already open are never touched, their key's bucket continues in this process
 * until Redis is back; a new handshake is answered at once by `allow_degradation`
 * (false: 503 `LIMIT_STORE_UNAVAILABLE` with Retry-After; true: admitted, under the
 * local bucket). Every refusal is published on `portcullis:message:rejected`.
 *
 * Tunnel mode. With `on_exceed: close` and no `bytes_per_second` the plugin is
 * tunnelable: the route stays a byte tunnel and the `frame` phase counts from frame
 * headers (a message at its first frame, continuations free; pings and pongs; empty
 * frames), refusing before any byte of the offending frame is forwarded. Dropping
 * needs frame mode (the tunnel cannot cut a message out of the stream), and so do
 * bytes (counted after reassembly and decompression, which the tunnel never does).
 * The frame phase cannot wait, so a per-key limit on a shared store (Redis, or the
 * cluster primary's with workers) keeps the route in frame mode, where a message
 * that needs the store waits for it: limits are exact in both modes.
 */
import { channels, type MessageRejectedEvent } from '../../core/events.js';
import { definePlugin, OPCODE, type Direction, type FrameVerdict, type MessageVerdict, type RequestContext } from '../../core/plugin.js';
import { LocalStore, RedisStore, openStore, type LimitStore, type StoreRef, type TokenResult } from '../../store/index.js';
import { compileKey, type KeyFn } from '../shared/limit-key.js';
import { storeSpec } from '../shared/limit-store.js';
import { schema, type LimitMessagesConfig } from './schema.js';

const NAME = 'limit-messages';

interface State {
  readonly rate: number;
  readonly capacity: number;
  /** Tokens taken from the store beyond what a frame needs. */
  readonly batch: number;
  readonly bytesRate: number | undefined;
  readonly bytesCapacity: number;
  readonly bytesBatch: number;
  readonly perConnection: boolean;
  readonly perKey: boolean;
  readonly client: boolean;
  readonly upstream: boolean;
  readonly key: KeyFn;
  readonly keyName: string;
  /** `msg:<scope>:` — the same in every instance loading the same config. */
  readonly prefix: string;
  readonly ref: StoreRef | undefined;
  readonly store: LimitStore | undefined;
  readonly redis: RedisStore | undefined;
  /** Per key on a shared store (Redis, the cluster primary): the buckets of open connections while it is unreachable. */
  readonly fallback: LocalStore | undefined;
  /** Per key on Redis without allow_degradation: handshakes are refused while Redis is down. */
  readonly refuseWhileDown: boolean;
  readonly exceeded: MessageVerdict;
  /** The frame phase can stand in for message + control (on_exceed close, no byte limit). */
  readonly tunnelable: boolean;
}

/** An in-process token bucket. */
interface Bucket {
  tokens: number;
  at: number;
}

/** Tokens of a key held by one connection; negative = spent on credit, to be taken from the store. */
interface Held {
  msgs: number;
  bytes: number;
  pending: Promise<void> | undefined;
  /** A refill was refused (or the store failed) after a frame ran on credit: the next frame is refused. */
  refused: MessageVerdict | undefined;
  /** The last refill asked for got nothing (the key's bucket had less than the debt). */
  denied: boolean;
}

interface Dir {
  readonly msgBucket: Bucket;
  readonly byteBucket: Bucket | undefined;
  readonly held: Held;
  /** Store keys of this direction (scope key). */
  readonly msgKey: string;
  readonly byteKey: string;
}

type Conn = Partial<Record<Direction, Dir>>;

export default definePlugin<LimitMessagesConfig, State>({
  name: NAME,
  version: '1.0.0',
  priority: 1004,
  schema,

  init(config, pctx) {
    const key = compileKey(config.key_type, config.key);
    const perKey = config.scope !== 'connection';
    const spec = storeSpec(config, pctx);
    const ref = perKey ? openStore(spec) : undefined;
    const redis = ref && ref.store instanceof RedisStore ? ref.store : undefined;
    const capacity = Math.max(1, config.rate + config.burst);
    const bytesRate = config.bytes_per_second;
    const bytesCapacity = bytesRate === undefined ? 0 : bytesRate + config.bytes_burst;
    const detail = `limit-messages: over ${config.rate}/s (burst ${config.burst})${bytesRate ? ` or ${bytesRate} bytes/s` : ''}`;
    return {
      rate: config.rate,
      capacity,
      batch: Math.floor(Math.min(config.rate / 10, capacity / 4)),
      bytesRate,
      bytesCapacity,
      bytesBatch: bytesRate === undefined ? 0 : Math.floor(Math.min(bytesRate / 10, bytesCapacity / 4)),
      perConnection: config.scope !== 'key',
      perKey,
      client: config.direction !== 'upstream',
      upstream: config.direction !== 'client',
      key,
      keyName: config.key,
      prefix: `msg:${pctx.scope}:`,
      ref,
      store: ref?.store,
      redis,
      fallback: ref && !(ref.store instanceof LocalStore) ? new LocalStore() : undefined,
      refuseWhileDown: redis !== undefined && !config.allow_degradation,
      exceeded:
        config.on_exceed === 'close'
          ? { action: 'close', code: 1008, reason: 'LIMIT_EXCEEDED', error: 'LIMIT_EXCEEDED', detail }
          : { action: 'drop', error: 'LIMIT_EXCEEDED' },
      // Per key, only an in-process store answers without waiting: a shared one (Redis, or the
      // primary's with workers) would make the tunnel run on credit and overshoot, so frame mode.
      tunnelable: config.on_exceed === 'close' && bytesRate === undefined && (!perKey || ref?.store instanceof LocalStore),
    };
  },

  tunnelable(st) {
    return st.tunnelable;
  },

  // A new connection while Redis is down, without allow_degradation: refused at once
  // (open connections go on under the local bucket; see above).
  access(_ctx, st) {
    if (!st.refuseWhileDown || !st.redis!.down) return undefined;
    return { reject: 'LIMIT_STORE_UNAVAILABLE', detail: 'limit-messages: store unavailable' };
  },

  message(msg, ctx, st) {
    const dir = msg.direction;
    if (dir === 'client' ? !st.client : !st.upstream) return undefined;
    const v = check(ctx, st, dir, msg.data.length, false);
    if (v === undefined) return undefined;
    return v instanceof Promise ? v.then((r) => published(r, ctx, dir)) : published(v, ctx, dir);
  },

  control(_kind, direction, size, ctx, st) {
    if (direction === 'client' ? !st.client : !st.upstream) return undefined;
    return published(check(ctx, st, direction, size, true) as MessageVerdict, ctx, direction);
  },

  // Tunnel mode: a message counts at its first frame (so it is refused before any of it
  // is forwarded), its continuations are free; pings and pongs count as in `control`.
  frame(direction, opcode, _fin, length, ctx, st) {
    if (direction === 'client' ? !st.client : !st.upstream) return undefined;
    if (opcode === OPCODE.continuation) return undefined;
    // Tunnelable only with on_exceed close: a refusal is a close verdict.
    return published(check(ctx, st, direction, length, true) as MessageVerdict, ctx, direction) as FrameVerdict;
  },

  async dispose(st) {
    await st.fallback?.close();
    await st.ref?.release();
  },
});

/** Tell observers (metrics) about a refusal; returns the verdict. Costs a test when nobody listens. */
function published(v: MessageVerdict, ctx: RequestContext, dir: Direction): MessageVerdict {
  if (v && channels.messageRejected.hasSubscribers) {
    const ev: MessageRejectedEvent = {
      source: undefined,
      routeId: ctx.routeId,
      direction: dir,
      reason: (v.action === 'close' || v.action === 'drop' ? v.error : undefined) ?? 'LIMIT_EXCEEDED',
      plugin: NAME,
    };
    channels.messageRejected.publish(ev);
  }
  return v;
}

function dirState(ctx: RequestContext, st: State, dir: Direction): Dir {
  let conn = ctx.vars.get(NAME) as Conn | undefined;
  if (!conn) {
    conn = {};
    ctx.vars.set(NAME, conn);
  }
  let d = conn[dir];
  if (!d) {
    const now = Date.now();
    const k = st.perKey ? st.key(ctx) : '';
    d = {
      msgBucket: { tokens: st.capacity, at: now },
      byteBucket: st.bytesRate === undefined ? undefined : { tokens: st.bytesCapacity, at: now },
      held: { msgs: 0, bytes: 0, pending: undefined, refused: undefined, denied: false },
      msgKey: `${st.prefix}${dir}:${k}`,
      byteKey: `${st.prefix}${dir}:bytes:${k}`,
    };
    conn[dir] = d;
  }
  return d;
}

function takeLocal(b: Bucket, rate: number, capacity: number, cost: number): boolean {
  const now = Date.now();
  b.tokens = Math.min(capacity, b.tokens + ((now - b.at) * rate) / 1000);
  b.at = now;
  if (b.tokens < cost) return false;
  b.tokens -= cost;
  return true;
}

/** One frame of `size` bytes from `dir`. `sync`: a control frame, which cannot wait for the store. */
function check(ctx: RequestContext, st: State, dir: Direction, size: number, sync: boolean): MessageVerdict | Promise<MessageVerdict> {
  const d = dirState(ctx, st, dir);
  const bytes = Math.min(size, st.bytesCapacity);
  if (st.perConnection) {
    // Both buckets are charged: a refused frame still counts.
    const okMsg = takeLocal(d.msgBucket, st.rate, st.capacity, 1);
    const okBytes = d.byteBucket ? takeLocal(d.byteBucket, st.bytesRate!, st.bytesCapacity, bytes) : true;
    if (!okMsg || !okBytes) return st.exceeded;
  }
  if (!st.perKey) return undefined;
  const h = d.held;
  if (h.refused) {
    const v = h.refused;
    h.refused = undefined;
    return v;
  }
  h.msgs -= 1;
  if (st.bytesRate !== undefined) h.bytes -= bytes;
  if (h.msgs >= 0 && h.bytes >= 0) return undefined;
  if (st.redis) st.redis.useLogger(ctx.log);
  if (sync) {
    // More debt than a whole bucket: no refill can cover it, refused now.
    if (-h.msgs > st.capacity || -h.bytes > st.bytesCapacity) {
      h.msgs += 1;
      if (st.bytesRate !== undefined) h.bytes += bytes;
      return st.exceeded;
    }
    // Run on credit; a refused refill refuses the next frame.
    if (!h.pending) {
      const r = refill(st, d);
      if (r) h.pending = r.then(() => settleCredit(st, d));
      else return verdictAfterRefill(st, d);
    }
    return undefined;
  }
  if (h.pending) return h.pending.then(() => afterWait(st, d));
  const r = refill(st, d);
  if (!r) return verdictAfterRefill(st, d);
  h.pending = r;
  return r.then(() => {
    h.pending = undefined;
    return verdictAfterRefill(st, d);
  });
}

/** After waiting on another frame's refill: still in debt means ask again. */
function afterWait(st: State, d: Dir): MessageVerdict | Promise<MessageVerdict> {
  const h = d.held;
  if (h.refused) {
    const v = h.refused;
    h.refused = undefined;
    return v;
  }
  if (h.msgs >= 0 && h.bytes >= 0) return undefined;
  if (h.pending) return h.pending.then(() => afterWait(st, d));
  const r = refill(st, d);
  if (!r) return verdictAfterRefill(st, d);
  h.pending = r;
  return r.then(() => {
    h.pending = undefined;
    return verdictAfterRefill(st, d);
  });
}

/**
 * A refill asked for by a frame on credit is back. Frames that ran on credit while
 * it was on its way may still be owed: ask again for them, unless the store just
 * refused (its bucket had less than the debt): then the next frame is refused.
 */
function settleCredit(st: State, d: Dir): void {
  const h = d.held;
  h.pending = undefined;
  if (h.refused || (h.msgs >= 0 && h.bytes >= 0)) return;
  if (!h.denied) {
    const r = refill(st, d);
    if (r) {
      h.pending = r.then(() => settleCredit(st, d));
      return;
    }
  }
  const v = verdictAfterRefill(st, d);
  if (v) h.refused = v;
}

/** Still in debt after the refill: refused; the debt is forgiven (the store took nothing). */
function verdictAfterRefill(st: State, d: Dir): MessageVerdict {
  const h = d.held;
  if (h.refused) {
    const v = h.refused;
    h.refused = undefined;
    h.msgs = Math.max(0, h.msgs);
    h.bytes = Math.max(0, h.bytes);
    return v;
  }
  if (h.msgs >= 0 && h.bytes >= 0) return undefined;
  h.msgs = Math.max(0, h.msgs);
  h.bytes = Math.max(0, h.bytes);
  return st.exceeded;
}

/**
 * Take from the store what the connection owes plus a batch. Updates d.held; when
 * the store fails, the local fallback answers. Returns a promise only when the store
 * answered with one.
 */
function refill(st: State, d: Dir): Promise<void> | undefined {
  const h = d.held;
  h.denied = false;
  const jobs: (Promise<void> | undefined)[] = [];
  if (h.msgs < 0) {
    const need = Math.min(-h.msgs, st.capacity);
    jobs.push(take(st, d.msgKey, st.rate, st.capacity, need, Math.min(need + st.batch, st.capacity), (g) => (h.msgs += g), h));
  }
  if (h.bytes < 0) {
    const need = Math.min(-h.bytes, st.bytesCapacity);
    jobs.push(take(st, d.byteKey, st.bytesRate!, st.bytesCapacity, need, Math.min(need + st.bytesBatch, st.bytesCapacity), (g) => (h.bytes += g), h));
  }
  const waits = jobs.filter((j): j is Promise<void> => j !== undefined);
  if (waits.length === 0) return undefined;
  return Promise.all(waits).then(() => undefined);
}

function take(
  st: State,
  key: string,
  rate: number,
  capacity: number,
  min: number,
  want: number,
  add: (granted: number) => void,
  h: Held,
): Promise<void> | undefined {
  const granted = (g: number): void => {
    if (g === 0) h.denied = true;
    add(g);
  };
  // The store failed: an open connection is never closed for it; the local bucket answers.
  const failed = (): void => granted(st.fallback ? st.fallback.takeTokens(key, rate, capacity, min, want).granted : 0);
  let r: TokenResult | Promise<TokenResult>;
  try {
    r = st.store!.takeTokens(key, rate, capacity, min, want);
  } catch {
    failed();
    return undefined;
  }
  if (r instanceof Promise) return r.then((v) => granted(v.granted), failed);
  granted(r.granted);
  return undefined;
}
