// Store failures are published on the `portcullis:store:error` diagnostics channel
// (metrics count them): a frozen Redis gives `timeout`, a stopped one `connection`
// (the client lost it) and `unavailable` (calls refused at once meanwhile); each
// event names the store and its address, and nothing else (no credentials).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { StoreUnavailableError, openStore } from '../dist/store/index.js';
import { startRedis } from './redis-helpers.js';
import { eventually } from './helpers.js';

const events = [];
const onEvent = (ev) => events.push(ev);

let redis;
before(async () => {
  redis = await startRedis();
  dc.subscribe('portcullis:store:error', onEvent);
});
after(async () => {
  dc.unsubscribe('portcullis:store:error', onEvent);
  redis?.resume();
  await redis?.close();
});

test('a frozen, then a stopped redis-server: timeout, connection and unavailable events, one per failure, without credentials', async () => {
  const ref = openStore({ policy: 'redis', host: '127.0.0.1', port: redis.port, timeoutMs: 300 });
  const store = ref.store;
  try {
    const ok = await store.acquireSlot('events', 5, 60_000);
    assert.equal(ok.ok, true);
    assert.deepEqual(events, [], 'nothing published while Redis answers');

    // Frozen: the command times out.
    redis.pause();
    await assert.rejects(store.fixedWindow('events:w', 10, 60_000), StoreUnavailableError);
    redis.resume();
    assert.deepEqual(events, [{ store: 'redis', address: `127.0.0.1:${redis.port}`, kind: 'timeout' }]);

    // Stopped: the client reports the lost connection; calls meanwhile are refused at once.
    const mark = events.length;
    await redis.stop();
    assert.ok(await eventually(() => events.slice(mark).some((e) => e.kind === 'connection')), 'a connection event');
    const before = events.length;
    await assert.rejects(store.fixedWindow('events:w', 10, 60_000), StoreUnavailableError);
    await assert.rejects(store.takeTokens('events:t', 10, 10, 1, 1), StoreUnavailableError);
    const refused = events.slice(before).filter((e) => e.kind === 'unavailable');
    assert.equal(refused.length, 2, 'one event per refused call');

    for (const e of events) {
      assert.deepEqual(Object.keys(e).sort(), ['address', 'kind', 'store']);
      assert.equal(e.store, 'redis');
      assert.equal(e.address, `127.0.0.1:${redis.port}`);
      assert.ok(['timeout', 'connection', 'unavailable'].includes(e.kind), e.kind);
    }

    // Back (empty: nothing persisted): the held lease is written back, limits resume.
    await redis.start();
    assert.ok(await eventually(async () => (await store.countSlots('events').catch(() => -1)) === 1, { tries: 150, every: 20 }));
    await store.releaseSlot(ok.lease);
    assert.equal(await store.countSlots('events'), 0);
  } finally {
    await ref.release();
  }
});
