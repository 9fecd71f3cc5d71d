// Revocation across instances that share a real Redis (`gateway.redis`): a DELETE
// on one gateway process closes the matching connections held by another
// (1008 `revoked`), through the revoke channel; malformed channel messages are
// ignored; the subscriber comes back after a Redis restart; the status shows the
// Redis health without credentials, and a DELETE while Redis is unreachable still
// closes local connections and says the broadcast failed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { closed, collect, eventually, openWs, startGateway, wsUpstream } from './helpers.js';
import { freePort, startRedis, startSentinel } from './redis-helpers.js';
import { adminCall, chatConfig, startCli } from './admin-helpers.js';

const ADMIN_KEY = 'adm-redis-0123456789abcdef';
const ALICE = 'alice-key-0123456789';
const BOB = 'bob-key-0123456789';

let redis;
let up;
const instances = [];

/** A gateway process (`node dist/cli.js start`) with its proxy and admin ports. */
async function startInstance({ workers = 1, revokeSecret, db, url = redis.url } = {}) {
  const port = await freePort();
  const admin = await freePort();
  const redisUrl = db === undefined ? url : `${url}/${db}`;
  const yaml = chatConfig({ port, upstreamPort: up.port, alice: ALICE, bob: BOB, workers, admin, adminKey: ADMIN_KEY, redisUrl, revokeSecret });
  const inst = Object.assign(await startCli(yaml, { workers }), { port, admin });
  instances.push(inst);
  inst.call = (method, path) => adminCall(admin, method, path, { key: ADMIN_KEY });
  return inst;
}

/** True once the instance's revoke channel is subscribed (its status says so). */
async function subscribed(inst) {
  return eventually(async () => {
    const s = await inst.call('GET', '/admin/status');
    return s.json?.stores?.some((x) => x.use === 'revoke' && x.up);
  }, { tries: 150, every: 40 });
}

async function connect(inst, apikey) {
  const r = await openWs(`ws://127.0.0.1:${inst.port}/chat`, { headers: { apikey } });
  assert.ok(r.ws, `opened: ${r.status} ${r.body}`);
  await echoes(r.ws);
  return r.ws;
}

async function echoes(ws, text = 'ping') {
  const got = collect(ws, 1);
  ws.send(text);
  assert.deepEqual(await got, [text]);
}

before(async () => {
  redis = await startRedis();
  up = await wsUpstream();
});

after(async () => {
  for (const i of instances) {
    if (i.child.exitCode === null) {
      i.child.kill('SIGTERM');
      await once(i.child, 'exit');
    }
  }
  await up.close();
  await redis.close();
});

test('DELETE on one instance closes the consumer\'s connections on another instance sharing Redis: 1008 revoked', async () => {
  const [a, b] = await Promise.all([startInstance(), startInstance()]);
  assert.ok(await subscribed(a), 'instance A subscribed');
  assert.ok(await subscribed(b), 'instance B subscribed');
  const st = await b.call('GET', '/admin/status');
  const chan = st.json.stores.find((x) => x.use === 'revoke');
  assert.deepEqual(chan, { store: 'redis', address: `redis://127.0.0.1:${redis.port}`, use: 'revoke', up: true });

  const aliceOnA = await connect(a, ALICE);
  const aliceOnB = await connect(b, ALICE);
  const bobOnB = await connect(b, BOB);
  const cuts = [closed(aliceOnA), closed(aliceOnB)];
  const upstreamHeld = up.wss.clients.size;

  const d = await a.call('DELETE', '/admin/connections?consumer=alice');
  assert.equal(d.status, 200);
  assert.deepEqual(d.json, { closed: 1, broadcast: true });
  for (const c of await Promise.all(cuts)) assert.deepEqual(c, { code: 1008, reason: 'revoked' });
  assert.ok(await eventually(() => up.wss.clients.size === upstreamHeld - 2), 'the upstream sides of both, on A and on B, were closed too');
  await echoes(bobOnB, 'bob still here');
  assert.equal((await b.call('GET', '/admin/connections')).json.total, 1);
  // Instance B logged what it did, and from where.
  assert.ok(await eventually(() => /connections revoked by another instance/.test(b.stdout)), b.stdout);
  assert.ok(!a.stdout.includes('revoked by another instance'), 'A ignores its own message');

  // Malformed messages on the channel are ignored: nothing closes, it is logged.
  const pub = redis.client();
  for (const m of ['not json', '{"v":1}', '{"v":1,"origin":"x","filter":{"consumer":"bob","route":"chat"}}', '{"v":2,"origin":"x","filter":{"consumer":"bob"}}']) {
    await pub.publish('portcullis:revoke:0', m);
  }
  assert.ok(await eventually(() => /ignored a malformed message/.test(b.stdout)), b.stdout);
  await echoes(bobOnB, 'bob unaffected');

  // Another deployment on another database of the same server does not reach us: a later
  // message on our channel arrives (Redis keeps the order) and bob is still there.
  const seen = () => (b.stdout.match(/revoked by another instance/g) ?? []).length;
  const before = seen();
  await pub.publish('portcullis:revoke:1', JSON.stringify({ v: 1, origin: 'elsewhere', filter: { consumer: 'bob' } }));
  await pub.publish('portcullis:revoke:0', JSON.stringify({ v: 1, origin: 'elsewhere', filter: { consumer: 'nobody' } }));
  assert.ok(await eventually(() => seen() === before + 1), b.stdout);
  await echoes(bobOnB, 'bob not reached from database 1');
  // A well-formed message from another instance does.
  const bobCut = closed(bobOnB);
  await pub.publish('portcullis:revoke:0', JSON.stringify({ v: 1, origin: 'elsewhere', filter: { consumer: 'bob' } }));
  assert.deepEqual(await bobCut, { code: 1008, reason: 'revoked' });
});

test('a block set on one instance refuses the consumer on the other; lifting it there lifts it here; malformed block messages are ignored', async () => {
  // A database of their own: their channel (portcullis:revoke:2) reaches no other test's instances.
  const [a, b] = await Promise.all([startInstance({ db: 2 }), startInstance({ db: 2 })]);
  assert.ok(await subscribed(a), 'instance A subscribed');
  assert.ok(await subscribed(b), 'instance B subscribed');
  const aliceOnB = await connect(b, ALICE);
  const cut = closed(aliceOnB);
  const d = await a.call('DELETE', '/admin/connections?consumer=alice&block=600');
  assert.equal(d.status, 200, d.body);
  assert.equal(d.json.broadcast, true);
  assert.deepEqual(await cut, { code: 1008, reason: 'revoked' });
  const refused = await openWs(`ws://127.0.0.1:${b.port}/chat`, { headers: { apikey: ALICE } });
  assert.equal(refused.status, 403, 'instance B refuses alice');
  assert.equal(JSON.parse(refused.body).error.code, 'REVOKED');
  assert.deepEqual((await b.call('GET', '/admin/blocks')).json.blocks.map((x) => x.consumer), ['alice']);
  await connect(b, BOB);

  // Messages that would block wrongly are ignored: a block on a route, a block of 0 s, an unblock with a filter.
  const pub = redis.client();
  for (const m of [
    { v: 1, origin: 'x', filter: { route: 'chat' }, block_s: 60 },
    { v: 1, origin: 'x', filter: { consumer: 'bob' }, block_s: 0 },
    { v: 1, origin: 'x', filter: { consumer: 'bob' }, unblock: 'alice' },
  ]) {
    await pub.publish('portcullis:revoke:2', JSON.stringify(m));
  }
  assert.ok(await eventually(() => (b.stdout.match(/ignored a malformed message/g) ?? []).length >= 1), b.stdout);
  assert.deepEqual((await b.call('GET', '/admin/blocks')).json.blocks.map((x) => x.consumer), ['alice'], 'bob was not blocked');

  // Lifted on B: A lets alice in again.
  const lift = await b.call('DELETE', '/admin/blocks?consumer=alice');
  assert.deepEqual(lift.json, { lifted: true, broadcast: true });
  assert.ok(await eventually(async () => (await a.call('GET', '/admin/blocks')).json.blocks.length === 0), 'A lifted it too');
  await connect(a, ALICE);
});

test('gateway.redis.revoke_secret: signed messages work across instances; unsigned, wrongly signed and stale ones are ignored', async () => {
  const SECRET = 'revoke-secret-0123456789abcdef-0123456789';
  const [a, b] = await Promise.all([startInstance({ revokeSecret: SECRET, db: 3 }), startInstance({ revokeSecret: SECRET, db: 3 })]);
  assert.ok(await subscribed(a), 'instance A subscribed');
  assert.ok(await subscribed(b), 'instance B subscribed');
  // What an attacker with PUBLISH rights (and no secret) can send: ignored, bob keeps his connection.
  const bobOnB = await connect(b, BOB);
  const sign = (body, secret) => createHmac('sha256', secret).update(JSON.stringify(body)).digest('base64url');
  const pub = redis.client();
  const now = Date.now();
  const forged = [
    { v: 1, origin: 'x', filter: { consumer: 'bob' } },
    { v: 1, origin: 'x', filter: { consumer: 'bob' }, ts: now, sig: sign({ v: 1, origin: 'x', filter: { consumer: 'bob' }, ts: now }, 'another-secret-0123456789abcdef-0123') },
    { v: 1, origin: 'x', filter: { consumer: 'bob' }, block_s: 600, ts: now - 120_000, sig: sign({ v: 1, origin: 'x', filter: { consumer: 'bob' }, block_s: 600, ts: now - 120_000 }, SECRET) },
  ];
  for (const m of forged) await pub.publish('portcullis:revoke:3', JSON.stringify(m));
  assert.ok(await eventually(() => /ignored a message not signed with revoke_secret/.test(b.stdout)), b.stdout);
  await echoes(bobOnB, 'bob survives forged messages');
  // A message signed with the secret and fresh is obeyed (Redis keeps the order: the forged ones came first).
  const cut = closed(bobOnB);
  const good = { v: 1, origin: 'x', filter: { consumer: 'bob' }, ts: Date.now() };
  await pub.publish('portcullis:revoke:3', JSON.stringify({ ...good, sig: sign(good, SECRET) }));
  assert.deepEqual(await cut, { code: 1008, reason: 'revoked' });
  assert.deepEqual((await b.call('GET', '/admin/blocks')).json.blocks, [], 'the stale block was not applied');
  assert.ok(!b.stdout.includes(SECRET) && !a.stdout.includes(SECRET), 'the secret is never logged');
  // The instances' own messages are signed: a DELETE on A reaches B.
  const aliceOnB = await connect(b, ALICE);
  const aliceCut = closed(aliceOnB);
  const d = await a.call('DELETE', '/admin/connections?consumer=alice');
  assert.equal(d.json.broadcast, true);
  assert.deepEqual(await aliceCut, { code: 1008, reason: 'revoked' });
  const cfg = await a.call('GET', '/admin/config');
  assert.ok(!cfg.body.includes(SECRET), 'GET /admin/config does not show it');
});

test('a block is kept in Redis until it ends: an instance started later refuses the consumer; a lifted block is gone for the next one', async () => {
  const a = await startInstance({ db: 4 });
  assert.ok(await subscribed(a));
  const d = await a.call('DELETE', '/admin/connections?consumer=alice&block=600');
  assert.equal(d.json.broadcast, true);
  const db4 = redis.client();
  await db4.select(4);
  const ttl = await db4.pttl('portcullis:block:alice');
  assert.ok(ttl > 590_000 && ttl <= 600_000, `the key expires with the block: ${ttl} ms`);

  const later = await startInstance({ db: 4 });
  assert.ok(await subscribed(later));
  assert.ok(await eventually(async () => (await later.call('GET', '/admin/blocks')).json.blocks.some((x) => x.consumer === 'alice')), later.stdout);
  const refused = await openWs(`ws://127.0.0.1:${later.port}/chat`, { headers: { apikey: ALICE } });
  assert.equal(refused.status, 403, 'an instance started after the block refuses alice');
  assert.ok(Number(refused.headers['retry-after']) > 590);

  assert.deepEqual((await a.call('DELETE', '/admin/blocks?consumer=alice')).json, { lifted: true, broadcast: true });
  assert.equal(await db4.exists('portcullis:block:alice'), 0, 'lifting deletes the key');
  assert.ok(await eventually(async () => (await later.call('GET', '/admin/blocks')).json.blocks.length === 0));
  // A value that is not a block (someone wrote it by hand) is ignored and counted.
  await db4.set('portcullis:block:bob', 'not a block', 'PX', 60_000);
  const next = await startInstance({ db: 4 });
  assert.ok(await subscribed(next));
  assert.ok(await eventually(() => /blocks in force read from Redis/.test(next.stdout)), next.stdout);
  assert.match(next.stdout, /"ignored":1/);
  await connect(next, ALICE);
  await connect(next, BOB);
});

/**
 * A TCP relay in front of the test's Redis, on a port of its own: cut() drops every
 * connection and stops listening (this instance alone loses Redis), restore() listens
 * again on the same port.
 */
async function redisRelay() {
  const port = await freePort();
  const sockets = new Set();
  let server;
  const listen = () => new Promise((resolve) => {
    server = net.createServer((c) => {
      const r = net.connect(redis.port, '127.0.0.1');
      for (const s of [c, r]) {
        sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => sockets.delete(s));
      }
      c.pipe(r).pipe(c);
    });
    server.listen(port, '127.0.0.1', resolve);
  });
  await listen();
  return {
    url: `redis://127.0.0.1:${port}`,
    cut: () => new Promise((resolve) => {
      server.close(resolve);
      for (const s of sockets) s.destroy();
    }),
    restore: listen,
  };
}

test('a block set while an instance was cut off from Redis reaches it when it is back: it closes the consumer\'s connections there and refuses new ones', { timeout: 30_000 }, async (t) => {
  const relay = await redisRelay();
  t.after(() => relay.cut());
  const a = await startInstance({ db: 5 });
  const b = await startInstance({ db: 5, url: relay.url });
  assert.ok(await subscribed(a));
  assert.ok(await subscribed(b));
  const onB = await connect(b, ALICE);
  const bobOnB = await connect(b, BOB);
  await relay.cut();
  assert.ok(await eventually(async () => (await b.call('GET', '/admin/status')).json.stores.some((x) => x.use === 'revoke' && !x.up)), 'B lost Redis');
  const cut = closed(onB);
  const d = await a.call('DELETE', '/admin/connections?consumer=alice&block=600');
  assert.equal(d.json.closed, 0);
  assert.equal(d.json.broadcast, true);
  await relay.restore();
  assert.deepEqual(await cut, { code: 1008, reason: 'revoked' }, 'the connection B held is closed once B reads the block');
  assert.ok(await eventually(() => /blocks in force read from Redis/.test(b.stdout)), b.stdout);
  const refused = await openWs(`ws://127.0.0.1:${b.port}/chat`, { headers: { apikey: ALICE } });
  assert.equal(refused.status, 403);
  await echoes(bobOnB, 'bob is untouched');
  assert.deepEqual((await a.call('DELETE', '/admin/blocks?consumer=alice')).json, { lifted: true, broadcast: true });
});

test('a block kept in Redis is signed with revoke_secret and bound to its consumer', async () => {
  const { encodeBlock, decodeBlock } = await import('../dist/admin/revoke.js');
  const S = 'revoke-secret-0123456789abcdef-0123456789';
  const until = Date.now() + 60_000;
  assert.equal(decodeBlock('alice', encodeBlock('alice', until, S), S), until);
  assert.equal(decodeBlock('bob', encodeBlock('alice', until, S), S), undefined, 'copied to another consumer');
  assert.equal(decodeBlock('alice', encodeBlock('alice', until, undefined), S), undefined, 'unsigned');
  assert.equal(decodeBlock('alice', encodeBlock('alice', until, 'another-secret-0123456789abcdef-0'), S), undefined);
  const tampered = JSON.stringify({ ...JSON.parse(encodeBlock('alice', until, S)), until: until + 86_400_000 });
  assert.equal(decodeBlock('alice', tampered, S), undefined, 'a longer block');
  assert.equal(decodeBlock('alice', encodeBlock('alice', until, undefined), undefined), until);
  for (const v of [null, 'x', '[]', '{"until":"soon"}', 'x'.repeat(600)]) assert.equal(decodeBlock('alice', v, undefined), undefined, String(v).slice(0, 20));
});

test('the subscriber comes back after Redis restarts; a broadcast then still reaches the other instance', async () => {
  const [a, b] = instances.length >= 2 ? instances : await Promise.all([startInstance(), startInstance()]);
  assert.ok(await subscribed(b));
  await redis.stop();
  const down = await eventually(async () => {
    const s = await b.call('GET', '/admin/status');
    return s.json.stores.find((x) => x.use === 'revoke' && !x.up);
  });
  assert.ok(down, 'B reports the revoke channel down');
  // While Redis is down, DELETE still closes local connections and says the broadcast failed.
  const local = await connect(a, BOB);
  const cut = closed(local);
  const d = await a.call('DELETE', '/admin/connections?consumer=bob');
  assert.equal(d.status, 200);
  assert.deepEqual(d.json, { closed: 1, broadcast: false });
  assert.deepEqual(await cut, { code: 1008, reason: 'revoked' });

  await redis.start();
  assert.ok(await subscribed(b), 'B subscribed again');
  const onB = await connect(b, ALICE);
  const cutB = closed(onB);
  const again = await eventually(async () => {
    const r = await a.call('DELETE', '/admin/connections?consumer=alice');
    return r.json.broadcast ? r : undefined;
  }, { tries: 50, every: 100 });
  assert.ok(again, 'A can publish again');
  assert.deepEqual(await cutB, { code: 1008, reason: 'revoked' });
});

test('an instance with workers: DELETE closes on every worker, is published once, and its own workers ignore it', async () => {
  const a = await startInstance({ workers: 2 });
  const b = await startInstance();
  // Every worker of A subscribed (two revoke entries in per_worker), and B.
  assert.ok(await eventually(async () => {
    const s = await a.call('GET', '/admin/status');
    return s.json?.per_worker?.length === 2 && s.json.per_worker.every((w) => w.stores.some((x) => x.use === 'revoke' && x.up));
  }, { tries: 150, every: 40 }));
  assert.ok(await subscribed(b));
  const onA = [];
  for (let i = 0; i < 6; i++) onA.push(await connect(a, ALICE));
  const onB = await connect(b, ALICE);
  const workersHolding = new Set((await a.call('GET', '/admin/connections')).json.connections.map((c) => c.worker));
  assert.equal(workersHolding.size, 2);
  const cuts = [...onA, onB].map((s) => closed(s));
  const d = await a.call('DELETE', '/admin/connections?consumer=alice');
  assert.deepEqual(d.json, { closed: 6, broadcast: true });
  for (const c of await Promise.all(cuts)) assert.deepEqual(c, { code: 1008, reason: 'revoked' });
  assert.ok(await eventually(() => /connections revoked by another instance/.test(b.stdout)));
  assert.ok(!a.stdout.includes('revoked by another instance'), 'the workers of A share one id: they ignore it');
});

test('Redis unreachable: status says down without credentials, DELETE answers broadcast false, no password in the log', async () => {
  const dead = await freePort();
  const ws = await wsUpstream();
  const g = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  redis: { url: "redis://portcullis:s3cret-pass@127.0.0.1:${dead}/2", timeout: 0.3 }
upstreams:
  - id: up
    nodes: { "127.0.0.1:${ws.port}": 1 }
routes:
  - id: r
    uri: /r
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-conn: { conn: 10, burst: 0, default_conn_delay: 0.1, policy: redis, allow_degradation: true }
admin:
  listen: { host: 127.0.0.1, port: 0 }
`);
  try {
    const port = g.gw.adminAddress().port;
    const s = await adminCall(port, 'GET', '/admin/status');
    assert.equal(s.status, 200);
    assert.ok(!s.body.includes('s3cret-pass'), 'no password in the status');
    assert.ok(!s.body.includes('portcullis:'), 'no user name either');
    const stores = s.json.stores.map((x) => `${x.use} ${x.store} ${x.address} ${x.up}`).sort();
    assert.deepEqual(stores, [`limits redis redis://127.0.0.1:${dead}/2 false`, `revoke redis redis://127.0.0.1:${dead}/2 false`]);
    const d = await adminCall(port, 'DELETE', '/admin/connections?route=r');
    assert.deepEqual(d.json, { closed: 0, broadcast: false });
    const c = await adminCall(port, 'GET', '/admin/config');
    assert.ok(!c.body.includes('s3cret-pass'));
    assert.equal(c.json.gateway.redis.url, `redis://portcullis:[redacted]@127.0.0.1:${dead}/2`);
    assert.ok(!g.log.raw().includes('s3cret-pass'), 'no password in the log');
  } finally {
    await g.close();
    await ws.close();
  }
});

test('gateway.redis through Sentinel: the revoke channel follows the master the sentinels name (database in the channel name)', async () => {
  const sentinel = await startSentinel({ masterPort: redis.port });
  const ws = await wsUpstream();
  const yamlFor = () => `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  redis: { sentinels: ["${sentinel.address}"], master_name: ${sentinel.name}, database: 3, timeout: 1 }
upstreams:
  - id: up
    nodes: { "127.0.0.1:${ws.port}": 1 }
routes:
  - id: r
    uri: /r
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
consumers:
  - username: alice
    plugins:
      key-auth: { key: ${ALICE} }
admin:
  listen: { host: 127.0.0.1, port: 0 }
`;
  const g1 = await startGateway(yamlFor());
  const g2 = await startGateway(yamlFor());
  try {
    const status = (g) => adminCall(g.gw.adminAddress().port, 'GET', '/admin/status');
    for (const g of [g1, g2]) {
      assert.ok(await eventually(async () => (await status(g)).json.stores.some((x) => x.use === 'revoke' && x.up), { tries: 150, every: 40 }));
    }
    const chan = (await status(g2)).json.stores.find((x) => x.use === 'revoke');
    assert.equal(chan.address, `redis-sentinel ${sentinel.name} (${sentinel.address})/3`);
    const r = await openWs(`${g2.ws}/r`, { headers: { apikey: ALICE } });
    assert.ok(r.ws);
    const cut = closed(r.ws);
    // Someone on another database of the same master is not heard.
    await redis.client().publish('portcullis:revoke:0', JSON.stringify({ v: 1, origin: 'x', filter: { consumer: 'alice' } }));
    const d = await adminCall(g1.gw.adminAddress().port, 'DELETE', '/admin/connections?consumer=alice');
    assert.deepEqual(d.json, { closed: 0, broadcast: true });
    assert.deepEqual(await cut, { code: 1008, reason: 'revoked' });
    assert.equal(g2.log.lines.filter((l) => l.msg === 'connections revoked by another instance').length, 1);
  } finally {
    await g1.close();
    await g2.close();
    await ws.close();
    await sentinel.close();
  }
});
