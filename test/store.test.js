// The limit stores: one suite, run unchanged over the local store, the Redis store
// and the Redis Cluster store (a real redis-server, and a one-node real cluster),
// then what only a shared store has: leases that outlive a dead instance by at most
// their ttl, refreshes that keep a live instance's leases, and outages answered at
// once and healed afterwards.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { LocalStore, RedisStore, StoreUnavailableError, openStore } from '../dist/store/index.js';
import { openRedisStores } from '../dist/store/registry.js';
import { startRedis } from './redis-helpers.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let n = 0;
const uniq = (name) => `${name}:${process.pid}:${++n}`;

async function eventually(fn, { tries = 100, every = 25 } = {}) {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await sleep(every);
  }
  return fn();
}

// Started at once, awaited by the suites that need them (a cluster node only turns
// writable 2 s after it starts: the local suite runs meanwhile).
const redisReady = startRedis();
const clusterReady = startRedis({ cluster: true });
let redis;
after(async () => {
  await Promise.all([redisReady.then((r) => r.close()), clusterReady.then((c) => c.close())]);
});

/** The suite every store must pass. `make()` returns { store, close }. */
function suite(name, make) {
  describe(`${name} store`, { concurrency: 1 }, () => {
    let store;
    let done;
    before(async () => {
      ({ store, close: done } = await make());
    });
    after(async () => done?.());

    test('slots: up to the limit, then refused; count and release', async () => {
      const key = uniq('slots');
      const got = [];
      for (let i = 0; i < 3; i++) got.push(await store.acquireSlot(key, 3, 60_000));
      assert.deepEqual(got.map((r) => [r.ok, r.count]), [[true, 1], [true, 2], [true, 3]]);
      const refused = await store.acquireSlot(key, 3, 60_000);
      assert.equal(refused.ok, false);
      assert.equal(refused.count, 3);
      assert.equal(refused.lease, undefined);
      assert.equal(await store.countSlots(key), 3);
      await store.releaseSlot(got[0].lease);
      assert.equal(await store.countSlots(key), 2);
      const again = await store.acquireSlot(key, 3, 60_000);
      assert.equal(again.ok, true);
      for (const l of [got[1].lease, got[2].lease, again.lease]) await store.releaseSlot(l);
      assert.equal(await store.countSlots(key), 0);
    });

    test('slots: a release not awaited is seen by the next acquire of its key at once (a client reconnecting at the limit)', async () => {
      const key = uniq('reconnect');
      let last = await store.acquireSlot(key, 1, 60_000);
      for (let i = 0; i < 20; i++) {
        void store.releaseSlot(last.lease);
        last = await store.acquireSlot(key, 1, 60_000);
        assert.equal(last.ok, true, `reconnect ${i}`);
      }
      await store.releaseSlot(last.lease);
      assert.equal(await store.countSlots(key), 0);
    });

    test('slots: releasing twice gives back one slot, not another holder\'s', async () => {
      const key = uniq('twice');
      const a = await store.acquireSlot(key, 2, 60_000);
      const b = await store.acquireSlot(key, 2, 60_000);
      await store.releaseSlot(a.lease);
      await store.releaseSlot(a.lease);
      assert.equal(await store.countSlots(key), 1);
      await store.releaseSlot(b.lease);
      assert.equal(await store.countSlots(key), 0);
    });

    test('slots: keys are independent', async () => {
      const k1 = uniq('k1');
      const k2 = uniq('k2');
      const a = await store.acquireSlot(k1, 1, 60_000);
      const b = await store.acquireSlot(k2, 1, 60_000);
      assert.equal(a.ok && b.ok, true);
      assert.equal((await store.acquireSlot(k1, 1, 60_000)).ok, false);
      await store.releaseSlot(a.lease);
      await store.releaseSlot(b.lease);
    });

    test('slots: 50 concurrent acquires for 7 slots take exactly 7', async () => {
      const key = uniq('race');
      const results = await Promise.all(Array.from({ length: 50 }, () => store.acquireSlot(key, 7, 60_000)));
      const ok = results.filter((r) => r.ok);
      assert.equal(ok.length, 7);
      assert.deepEqual(ok.map((r) => r.count).sort((x, y) => x - y), [1, 2, 3, 4, 5, 6, 7]);
      await Promise.all(ok.map((r) => store.releaseSlot(r.lease)));
      assert.equal(await store.countSlots(key), 0);
    });

    test('leaky bucket: delays by excess / rate, refuses beyond burst, drains at rate', async () => {
      const key = uniq('leaky');
      const r1 = await store.leakyBucket(key, 10, 2);
      const r2 = await store.leakyBucket(key, 10, 2);
      const r3 = await store.leakyBucket(key, 10, 2);
      const r4 = await store.leakyBucket(key, 10, 2);
      assert.deepEqual([r1.ok, r2.ok, r3.ok, r4.ok], [true, true, true, false]);
      assert.equal(r1.delayMs, 0);
      // 10/s: each request right after the previous adds about one to the excess (100 ms of delay).
      assert.ok(r2.delayMs > 80 && r2.delayMs <= 100, `second delay ${r2.delayMs}`);
      assert.ok(r3.delayMs > 170 && r3.delayMs <= 200, `third delay ${r3.delayMs}`);
      await sleep(350);
      const r5 = await store.leakyBucket(key, 10, 2);
      assert.equal(r5.ok, true);
      assert.ok(r5.delayMs < 100, `drained: ${r5.delayMs}`);
    });

    test('fixed window: limit per window, remaining and reset, then a new window', async () => {
      const key = uniq('fixed');
      const rs = [];
      for (let i = 0; i < 4; i++) rs.push(await store.fixedWindow(key, 3, 300));
      assert.deepEqual(rs.map((r) => [r.ok, r.remaining]), [[true, 2], [true, 1], [true, 0], [false, 0]]);
      for (const r of rs) assert.ok(r.resetMs > 0 && r.resetMs <= 300, `reset ${r.resetMs}`);
      const costly = await store.fixedWindow(uniq('fixed-cost'), 10, 300, 4);
      assert.deepEqual([costly.ok, costly.remaining], [true, 6]);
      await sleep(rs[3].resetMs + 30);
      const next = await store.fixedWindow(key, 3, 300);
      assert.deepEqual([next.ok, next.remaining], [true, 2]);
    });

    test('sliding window: the previous window still counts while it overlaps', async () => {
      const key = uniq('sliding');
      const w = 250;
      // Start just after a window boundary so the whole burst falls in one window.
      await sleep(w - (Date.now() % w) + 5);
      const rs = [];
      for (let i = 0; i < 5; i++) rs.push(await store.slidingWindow(key, 4, w));
      assert.deepEqual(rs.map((r) => r.ok), [true, true, true, true, false]);
      assert.deepEqual(rs.map((r) => r.remaining), [3, 2, 1, 0, 0]);
      // Early in the next window most of the previous one still overlaps: still refused.
      await sleep(rs[4].resetMs + 20);
      assert.equal((await store.slidingWindow(key, 4, w)).ok, false);
      // Two windows later nothing overlaps.
      await sleep(w + 20);
      const fresh = await store.slidingWindow(key, 4, w);
      assert.deepEqual([fresh.ok, fresh.remaining], [true, 3]);
    });

    test('token bucket: batches up to want when min is there, waits otherwise, refills at rate', async () => {
      const key = uniq('tokens');
      const a = await store.takeTokens(key, 10, 5, 1, 3);
      const b = await store.takeTokens(key, 10, 5, 1, 3);
      const c = await store.takeTokens(key, 10, 5, 1, 3);
      assert.equal(a.granted, 3);
      assert.equal(b.granted, 2);
      assert.equal(c.granted, 0);
      assert.ok(c.waitMs > 0 && c.waitMs <= 100, `wait ${c.waitMs}`);
      // All or nothing: 4 wanted, fewer there.
      assert.equal((await store.takeTokens(key, 10, 5, 4, 4)).granted, 0);
      await sleep(250);
      const d = await store.takeTokens(key, 10, 5, 2, 2);
      assert.equal(d.granted, 2);
      assert.equal(d.waitMs, 0);
    });
  });
}

// The three stores side by side (their keys never meet); the outage tests after them.
describe('one suite over every store', { concurrency: 3 }, () => {
  suite('local', async () => {
    const store = new LocalStore();
    return { store, close: () => store.close() };
  });

  suite('redis', async () => {
    const { port } = await redisReady;
    const ref = openStore({ policy: 'redis', host: '127.0.0.1', port, database: 0, timeoutMs: 500 });
    return { store: ref.store, close: () => ref.release() };
  });

  suite('redis-cluster', async () => {
    const { port } = await clusterReady;
    const ref = openStore({ policy: 'redis-cluster', nodes: [{ host: '127.0.0.1', port }], timeoutMs: 500 });
    return { store: ref.store, close: () => ref.release() };
  });
});

/** A Redis store with a client of its own: an "instance" that can die. */
function instance(port, timeoutMs = 300) {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    enableOfflineQueue: false,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 1,
    retryStrategy: (t) => Math.min(t * 50, 200),
  });
  return new RedisStore(client, { policy: 'redis', label: `redis://127.0.0.1:${port}` });
}

describe('redis leases', () => {
  before(async () => {
    redis = await redisReady;
  });

  test('an instance that dies (stops refreshing) frees its slots within the ttl', async (t) => {
    const key = uniq('dead');
    const TTL = 400;
    const dying = instance(redis.port);
    const survivor = instance(redis.port);
    t.after(() => Promise.all([dying.close(), survivor.close()]));
    assert.equal((await dying.acquireSlot(key, 3, TTL)).ok, true);
    assert.equal((await dying.acquireSlot(key, 3, TTL)).ok, true);
    const mine = await survivor.acquireSlot(key, 3, TTL);
    assert.equal((await survivor.acquireSlot(key, 3, TTL)).ok, false, 'full while both live');
    const diedAt = Date.now();
    await dying.close(); // no release, no more refreshes: as after SIGKILL
    const freed = await eventually(async () => (await survivor.countSlots(key)) === 1, { tries: 60, every: 25 });
    assert.ok(freed, 'the dead instance\'s slots expired');
    assert.ok(Date.now() - diedAt <= TTL + 150, `freed after ${Date.now() - diedAt} ms`);
    // The survivor refreshed its own lease all along.
    await sleep(TTL + 100);
    assert.equal(await survivor.countSlots(key), 1);
    const next = await survivor.acquireSlot(key, 3, TTL);
    assert.equal(next.ok, true);
    await survivor.releaseSlot(mine.lease);
    await survivor.releaseSlot(next.lease);
    assert.equal(await redis.client().exists(survivor.redisKey(key)), 0, 'the key is gone once empty');
  });

  test('a frozen Redis is answered at once after the first timeout; releases made meanwhile land when it is back', async (t) => {
    const key = uniq('frozen');
    const store = instance(redis.port, 200);
    t.after(() => store.close());
    const warnings = [];
    store.useLogger({ warn: (o, m) => warnings.push([o, m]), info: () => {} });
    const a = await store.acquireSlot(key, 5, 60_000);
    const b = await store.acquireSlot(key, 5, 60_000);
    redis.pause();
    try {
      // Speed is the benchmark's business; here: every call fails cleanly, none hangs.
      await assert.rejects(store.acquireSlot(key, 5, 60_000), StoreUnavailableError);
      for (let i = 0; i < 20; i++) await assert.rejects(store.acquireSlot(key, 5, 60_000), StoreUnavailableError);
      await store.releaseSlot(a.lease); // cannot reach Redis: kept for later
    } finally {
      redis.resume();
    }
    assert.equal(warnings.length, 1, 'the outage is logged once, not per call');
    assert.doesNotMatch(JSON.stringify(warnings), /password/);
    // The release (and the lost acquire) are sent once Redis answers again.
    const inspect = redis.client();
    const members = await eventually(async () => {
      const m = await inspect.zrange(store.redisKey(key), 0, -1);
      return m.length === 1 ? m : undefined;
    }, { tries: 120, every: 25 });
    assert.deepEqual(members, [b.lease.id]);
    await store.releaseSlot(b.lease);
    assert.ok(await eventually(async () => (await inspect.exists(store.redisKey(key))) === 0), 'the key is gone once empty');
  });

  test('a stopped Redis fails calls at once; after a restart limits resume and held leases are counted again', async (t) => {
    const key = uniq('restart');
    const store = instance(redis.port, 300);
    t.after(() => store.close());
    const held = await store.acquireSlot(key, 2, 60_000);
    await redis.stop();
    try {
      await assert.rejects(store.acquireSlot(key, 2, 60_000), StoreUnavailableError);
    } finally {
      await redis.start();
    }
    // Redis lost everything; the instance re-adds the lease it still holds when it reconnects.
    const inspect = redis.client();
    assert.ok(await eventually(async () => (await inspect.zcard(store.redisKey(key))) === 1, { tries: 100, every: 25 }));
    assert.equal((await store.acquireSlot(key, 2, 60_000)).ok, true);
    assert.equal((await store.acquireSlot(key, 2, 60_000)).ok, false);
    await store.releaseSlot(held.lease);
  });

  test('stores with the same address share one client, closed when the last user lets go', async () => {
    const before = openRedisStores();
    const spec = { policy: 'redis', host: '127.0.0.1', port: redis.port, database: 3, timeoutMs: 400 };
    const a = openStore(spec);
    const b = openStore({ ...spec });
    assert.equal(a.store, b.store);
    assert.equal(openRedisStores(), before + 1);
    await a.release();
    await a.release();
    assert.equal(openRedisStores(), before + 1, 'still used by b');
    await b.release();
    assert.equal(openRedisStores(), before);
  });
});
