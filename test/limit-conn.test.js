// limit-conn as a client, the upstream and Redis see it: exactly `conn` connections
// per key, in one gateway, in two gateways of one process and in two gateway processes
// sharing a real redis-server; a slot given back on every way a connection ends (the
// Redis keys return to their baseline); a Redis outage answered at once per
// allow_degradation without touching open connections, and healed when Redis is back;
// the slots of a SIGKILLed instance freed within key_ttl; the burst delayed as in
// APISIX; a client rotating X-Forwarded-For stays one key.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import http from 'node:http';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { closed, config, eventually, get, httpUpstream, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';
import { openRedisStores } from '../dist/store/registry.js';
import { startRedis } from './redis-helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const REJECT_AFTER = fileURLToPath(new URL('./fixtures/plugins/reject-after.js', import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const redisKey = (route, who = '127.0.0.1') => `portcullis:conn:route:${route}:${who}`;

// Every finished request/connection (published after its log phase ran).
const finished = [];
dc.subscribe('portcullis:finished', (ev) => finished.push(ev));
/** Waits until `n` exchanges of `route` finished after `mark` (an index into `finished`). */
async function finishedSince(mark, route, n) {
  const ok = await eventually(() => finished.slice(mark).filter((e) => e.routeId === route).length >= n, { tries: 200, every: 10 });
  assert.ok(ok, `${n} exchanges of ${route} finished`);
}

let redis;
let inspect;
let upstream;
before(async () => {
  [redis, upstream] = await Promise.all([
    startRedis(),
    wsUpstream({
      // /.../500: the upstream refuses the handshake with a 500.
      verifyClient: (info, cb) => (info.req.url.includes('/500') ? cb(false, 500) : cb(true)),
      onConnection(ws, req) {
        // /.../die: the upstream accepts, then its connection dies (no close frame).
        if (req.url.includes('/die')) return void setTimeout(() => ws.terminate(), 30);
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      },
    }),
  ]);
  inspect = redis.client();
});
after(async () => {
  await upstream?.close();
  await redis?.close();
});

/** A route with limit-conn (attributes as an object) and more YAML lines. */
function route(id, attrs, more = '') {
  const lc = Object.entries(attrs)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(', ');
  return `  - id: ${id}
    uri: /${id}/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-conn: { ${lc} }
${more}`;
}

const redisAttrs = () => ({ policy: 'redis', redis_host: '127.0.0.1', redis_port: redis.port });

/** Open `n` WebSockets at once; returns the results (`{ ws }` or `{ status, headers, body }`). */
const openMany = (url, n, opts) => Promise.all(Array.from({ length: n }, () => openWs(url, opts)));
const opened = (rs) => rs.filter((r) => r.ws).map((r) => r.ws);

async function echoes(ws, text = 'ping') {
  ws.send(text);
  return (await nextMessage(ws)) === text;
}

async function closeAll(sockets) {
  await Promise.all(
    sockets.map(async (ws) => {
      if (ws.readyState === ws.OPEN) ws.close();
      await closed(ws);
    }),
  );
}

describe('one gateway, local policy', () => {
  let gw;
  let slow;
  before(async () => {
    slow = await httpUpstream((req, res) => {
      const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms') ?? 0);
      if (!req.url.includes('/sse')) return void setTimeout(() => res.end('done'), ms);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
      setTimeout(() => res.end('data: two\n\n'), ms);
    });
    gw = await startGateway(
      config(
        upstream.port,
        [
          route('exact', { conn: 5, burst: 0, default_conn_delay: 0.1 }),
          route('burst', { conn: 1, burst: 1, default_conn_delay: 0.3, only_use_default_delay: true }),
          route('spoof', { conn: 2, burst: 0, default_conn_delay: 0.1, rejected_code: 429, rejected_msg: 'slow down' }),
          route('tenant', { conn: 1, burst: 0, default_conn_delay: 0.1, key: 'http_x_tenant' }),
          route('combo', { conn: 1, burst: 0, default_conn_delay: 0.1, key_type: 'var_combination', key: '$arg_room $http_x_user' }),
          `  - id: plain
    uri: /plain/*
    upstream_id: slow
    plugins:
      limit-conn: { conn: 1, burst: 0, default_conn_delay: 0.1 }
`,
          ...['adaptive', 'fixed'].map((id) => `  - id: ${id}
    uri: /${id}/*
    upstream_id: slow
    plugins:
      limit-conn: { conn: 1, burst: 0, default_conn_delay: 0.1, only_use_default_delay: ${id === 'fixed'} }
`),
          route('adaptive-ws', { conn: 1, burst: 0, default_conn_delay: 0.1 }),
        ].join(''),
        `  custom_plugins: [${JSON.stringify(REJECT_AFTER)}]`,
      ).replace('routes:\n', `  - id: slow\n    nodes: { "127.0.0.1:${slow.port}": 1 }\nroutes:\n`),
    );
  });
  after(async () => {
    await gw?.close();
    await slow?.close();
  });

  test('conn 5, burst 0: of 20 concurrent handshakes from one address exactly 5 open; the rest get 503 with Retry-After, no 101', async () => {
    const handshakesBefore = upstream.handshakes.length;
    const rs = await openMany(`${gw.ws}/exact/echo`, 20);
    const open = opened(rs);
    assert.equal(open.length, 5);
    for (const r of rs.filter((x) => !x.ws)) {
      assert.equal(r.status, 503);
      assert.equal(r.headers['x-portcullis-error'], 'LIMIT_EXCEEDED');
      assert.match(r.headers['retry-after'], /^[1-9]\d*$/);
      assert.equal(JSON.parse(r.body).error.code, 'LIMIT_EXCEEDED');
    }
    assert.equal(upstream.handshakes.length - handshakesBefore, 5, 'refused handshakes never reached the upstream');
    for (const ws of open) assert.ok(await echoes(ws));
    const mark = finished.length;
    await closeAll(open);
    await finishedSince(mark, 'exact', 5);
    const again = await openMany(`${gw.ws}/exact/echo`, 5);
    assert.equal(opened(again).length, 5, 'closed connections gave their slots back');
    await closeAll(opened(again));
  });

  test('between conn and conn + burst a handshake is delayed by default_conn_delay; beyond, refused', async () => {
    const first = await openWs(`${gw.ws}/burst/echo`);
    const t = Date.now();
    const [second, third] = await Promise.all([openWs(`${gw.ws}/burst/echo`), sleep(50).then(() => openWs(`${gw.ws}/burst/echo`))]);
    assert.ok(second.ws, 'the burst connection is admitted');
    assert.ok(Date.now() - t >= 290, `after the delay (${Date.now() - t} ms)`);
    assert.equal(third.status, 503, 'beyond conn + burst: refused at once');
    await closeAll([first.ws, second.ws]);
  });

  test('a client rotating X-Forwarded-For (not a trusted proxy) stays one key; rejected_code and rejected_msg apply', async () => {
    const rs = [];
    for (let i = 0; i < 5; i++) rs.push(await openWs(`${gw.ws}/spoof/echo`, { headers: { 'x-forwarded-for': `203.0.113.${i + 1}`, 'x-real-ip': `198.51.100.${i}` } }));
    assert.equal(opened(rs).length, 2);
    const refused = rs.filter((r) => !r.ws);
    assert.deepEqual(refused.map((r) => r.status), [429, 429, 429]);
    assert.equal(JSON.parse(refused[0].body).error.message, 'slow down');
    await closeAll(opened(rs));
  });

  test('key http_x_tenant: one slot per tenant; without the header the client address is the key', async () => {
    const a = await openWs(`${gw.ws}/tenant/echo`, { headers: { 'x-tenant': 'acme' } });
    const b = await openWs(`${gw.ws}/tenant/echo`, { headers: { 'x-tenant': 'globex' } });
    const a2 = await openWs(`${gw.ws}/tenant/echo`, { headers: { 'x-tenant': 'acme' } });
    const none = await openWs(`${gw.ws}/tenant/echo`);
    const none2 = await openWs(`${gw.ws}/tenant/echo`);
    assert.ok(a.ws && b.ws && none.ws);
    assert.equal(a2.status, 503);
    assert.equal(none2.status, 503);
    await closeAll([a.ws, b.ws, none.ws]);
  });

  test('key_type var_combination: "$arg_room $http_x_user"', async () => {
    const r1 = await openWs(`${gw.ws}/combo/echo?room=1`, { headers: { 'x-user': 'ann' } });
    const r2 = await openWs(`${gw.ws}/combo/echo?room=2`, { headers: { 'x-user': 'ann' } });
    const r3 = await openWs(`${gw.ws}/combo/echo?room=1`, { headers: { 'x-user': 'ann' } });
    assert.ok(r1.ws && r2.ws);
    assert.equal(r3.status, 503);
    await closeAll([r1.ws, r2.ws]);
  });

  test('a plain HTTP request holds its slot for the request only', async () => {
    const slowReq = get(`${gw.http}/plain/x?ms=300`);
    await sleep(80);
    const during = await get(`${gw.http}/plain/x`);
    assert.equal(during.status, 503);
    assert.equal((await slowReq).status, 200);
    assert.equal((await get(`${gw.http}/plain/x`)).status, 200);
  });

  // The step is only observable in Retry-After (step to 2 steps, at least 1 s): a step
  // moved past 1 s by a 2.1 s request gives 2 or 3; the default 0.1 s step gives 1.
  test('only_use_default_delay false: the delay step follows plain HTTP request times (APISIX), never WebSocket lifetimes; true keeps default_conn_delay', async () => {
    const ws = (await openWs(`${gw.ws}/adaptive-ws/echo`)).ws;
    await Promise.all([get(`${gw.http}/adaptive/x?ms=2100`), get(`${gw.http}/fixed/x?ms=2100`), sleep(2100)]);
    ws.close();
    await closed(ws);
    const retryAfter = async (path) => {
      const hold = path.includes('ws') ? (await openWs(`${gw.ws}${path}`)).ws : get(`${gw.http}${path}?ms=300`);
      await sleep(80);
      const r = path.includes('ws') ? await openWs(`${gw.ws}${path}`) : await get(`${gw.http}${path}`);
      assert.equal(r.status, 503, path);
      if (path.includes('ws')) {
        hold.close();
        await closed(hold);
      } else await hold;
      return Number(r.headers['retry-after']);
    };
    assert.ok([2, 3].includes(await retryAfter('/adaptive/x')), 'the step moved halfway to 2.1 s');
    assert.equal(await retryAfter('/fixed/x'), 1, 'only_use_default_delay: the step stays 0.1 s');
    assert.equal(await retryAfter('/adaptive-ws/echo'), 1, 'a WebSocket held 2.1 s did not move it');
  });

  test('an SSE stream holds its slot until it ends', async () => {
    const stream = get(`${gw.http}/plain/sse?ms=300`);
    await sleep(80);
    assert.equal((await get(`${gw.http}/plain/x`)).status, 503);
    const s = await stream;
    assert.equal(s.status, 200);
    assert.match(s.body, /data: two/);
    assert.equal((await get(`${gw.http}/plain/x`)).status, 200);
  });
});

/** Leak-proofing: every way a connection can end gives its slot back. */
function leakSuite(policy) {
  describe(`every way a connection ends gives its slot back (${policy})`, () => {
    const N = 3;
    let gw;
    const leak = `leak-${policy}`;
    const idle = `idle-${policy}`;
    before(async () => {
      const attrs = { conn: N, burst: 0, default_conn_delay: 0.1, ...(policy === 'redis' ? redisAttrs() : {}) };
      gw = await startGateway(
        config(
          upstream.port,
          route(leak, attrs, '      reject-after: {}\n') + route(idle, attrs, '    websocket: { idle_timeout: 0.3 }\n'),
          `  custom_plugins: [${JSON.stringify(REJECT_AFTER)}]`,
        ),
      );
    });
    after(() => gw?.close());

    /** Waits for `n` finished exchanges, checks Redis is back to baseline, then N fresh connections open and one more is refused. */
    async function slotsBack(id, mark, n) {
      await finishedSince(mark, id, n);
      if (policy === 'redis') {
        assert.ok(await eventually(async () => (await inspect.exists(redisKey(id))) === 0), 'the Redis key is back to its baseline (gone)');
      }
      const fresh = await openMany(`${gw.ws}/${id}/echo`, N);
      assert.equal(opened(fresh).length, N, `${N} fresh connections open`);
      assert.equal((await openWs(`${gw.ws}/${id}/echo`)).status, 503, 'and the limit still holds');
      if (policy === 'redis') assert.equal(await inspect.zcard(redisKey(id)), N);
      const m2 = finished.length;
      await closeAll(opened(fresh));
      await finishedSince(m2, id, N);
      if (policy === 'redis') assert.ok(await eventually(async () => (await inspect.exists(redisKey(id))) === 0));
    }

    test('client close', async () => {
      const mark = finished.length;
      const open = opened(await openMany(`${gw.ws}/${leak}/echo`, N));
      assert.equal(open.length, N);
      await closeAll(open);
      await slotsBack(leak, mark, N);
    });

    test('client reset (TCP destroyed, no close frame)', async () => {
      const mark = finished.length;
      const open = opened(await openMany(`${gw.ws}/${leak}/echo`, N));
      for (const ws of open) ws.terminate();
      await slotsBack(leak, mark, N);
    });

    test('upstream death', async () => {
      const mark = finished.length;
      const open = opened(await openMany(`${gw.ws}/${leak}/die`, N));
      assert.equal(open.length, N);
      for (const ws of open) await closed(ws);
      await slotsBack(leak, mark, N);
    });

    // One after the other, more than N: each must have given its slot back before the next.
    test('a later plugin refusing the handshake after limit-conn admitted it (APISIX #11868)', async () => {
      const mark = finished.length;
      for (let i = 0; i < N + 2; i++) {
        const r = await openWs(`${gw.ws}/${leak}/echo`, { headers: { 'x-reject': '1' } });
        assert.equal(r.status, 403);
        assert.equal(r.headers['x-portcullis-error'], 'ACCESS_DENIED');
        await finishedSince(mark, leak, i + 1);
      }
      await slotsBack(leak, mark, N + 2);
    });

    test('upstream 5xx to the handshake', async () => {
      const mark = finished.length;
      for (let i = 0; i < N + 2; i++) {
        assert.equal((await openWs(`${gw.ws}/${leak}/500`)).status, 500);
        await finishedSince(mark, leak, i + 1);
        if (policy === 'redis') assert.ok(await eventually(async () => (await inspect.exists(redisKey(leak))) === 0));
      }
      await slotsBack(leak, mark, N + 2);
    });

    test('idle timeout', async () => {
      const mark = finished.length;
      const open = opened(await openMany(`${gw.ws}/${idle}/echo`, N));
      assert.equal(open.length, N);
      const codes = await Promise.all(open.map((ws) => closed(ws)));
      assert.deepEqual(codes.map((c) => c.code), Array(N).fill(1001));
      await slotsBack(idle, mark, N);
    });
  });
}

leakSuite('local');
leakSuite('redis');

/** The same for SSE streams: a stream's slot is given back however it ends. */
function sseLeakSuite(policy) {
  describe(`every way an SSE stream ends gives its slot back (${policy})`, () => {
    const N = 2;
    let gw;
    let sse;
    const id = `sse-${policy}`;
    const capped = `sse-capped-${policy}`;
    before(async () => {
      // /.../die: the upstream's connection dies after the first event; otherwise it streams until the client goes.
      sse = await httpUpstream((req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: one\n\n');
        if (req.url.includes('/die')) setTimeout(() => req.socket.destroy(), 30);
      });
      const attrs = { conn: N, burst: 0, default_conn_delay: 0.1, ...(policy === 'redis' ? redisAttrs() : {}) };
      const lc = Object.entries(attrs).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(', ');
      const r = (rid, more = '') => `  - id: ${rid}\n    uri: /${rid}/*\n    upstream_id: up\n${more}    plugins:\n      limit-conn: { ${lc} }\n`;
      gw = await startGateway(config(sse.port, r(id) + r(capped, '    sse: { max_duration: 0.3 }\n')));
    });
    after(async () => {
      await gw?.close(100);
      await sse?.close();
    });

    /** Open an event stream; resolves { req, res } once its head and first event arrived. */
    function stream(path) {
      return new Promise((resolve, reject) => {
        const req = http.get(`${gw.http}${path}`, { headers: { accept: 'text/event-stream' }, agent: false });
        req.on('error', () => {});
        req.once('response', (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            return resolve({ req, res });
          }
          res.once('data', () => resolve({ req, res }));
        });
        req.once('error', reject);
      });
    }

    async function slotsBack(rid, mark, n) {
      await finishedSince(mark, rid, n);
      if (policy === 'redis') assert.ok(await eventually(async () => (await inspect.exists(redisKey(rid))) === 0), 'the Redis key is gone');
      const fresh = await Promise.all(Array.from({ length: N }, () => stream(`/${rid}/x`)));
      assert.deepEqual(fresh.map((f) => f.res.statusCode), Array(N).fill(200), `${N} fresh streams open`);
      const over = await stream(`/${rid}/x`);
      assert.equal(over.res.statusCode, 503, 'and the limit still holds');
      const m2 = finished.length;
      for (const f of fresh) f.req.destroy();
      await finishedSince(m2, rid, N);
    }

    test('client reset', async () => {
      const mark = finished.length;
      const open = await Promise.all(Array.from({ length: N }, () => stream(`/${id}/x`)));
      assert.deepEqual(open.map((o) => o.res.statusCode), Array(N).fill(200));
      assert.equal((await stream(`/${id}/x`)).res.statusCode, 503, 'the streams hold the slots');
      for (const o of open) o.req.destroy();
      await slotsBack(id, mark, N + 1);
    });

    test('upstream death', async () => {
      const mark = finished.length;
      const open = await Promise.all(Array.from({ length: N }, () => stream(`/${id}/die`)));
      for (const o of open) {
        if (!o.res.complete) await Promise.race([once(o.res, 'close'), once(o.res, 'end')]);
      }
      await slotsBack(id, mark, N);
    });

    test('max_duration ends the stream', async () => {
      const mark = finished.length;
      const open = await Promise.all(Array.from({ length: N }, () => stream(`/${capped}/x`)));
      assert.deepEqual(open.map((o) => o.res.statusCode), Array(N).fill(200));
      for (const o of open) {
        o.res.resume();
        await once(o.res, 'end');
      }
      await slotsBack(capped, mark, N);
    });
  });
}

sseLeakSuite('local');
sseLeakSuite('redis');

describe('redis policy', () => {
  test('two gateways in one process sharing Redis (gateway.redis and redis_host): of 20 concurrent handshakes exactly 5 open', async () => {
    const attrs = { conn: 5, burst: 0, default_conn_delay: 0.1, key_ttl: 60 };
    const a = await startGateway(config(upstream.port, route('pair', { ...attrs, policy: 'redis' }), `  redis: { url: "${redis.url}/0", timeout: 0.5 }`));
    const b = await startGateway(config(upstream.port, route('pair', { ...attrs, ...redisAttrs() })));
    try {
      const rs = await Promise.all([openMany(`${a.ws}/pair/echo`, 10), openMany(`${b.ws}/pair/echo`, 10)]);
      const open = opened(rs.flat());
      assert.equal(open.length, 5);
      assert.equal(await inspect.zcard(redisKey('pair')), 5);
      await closeAll(open);
      assert.ok(await eventually(async () => (await inspect.exists(redisKey('pair'))) === 0));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('policy redis-cluster: a plugin on a real (one-node) Redis Cluster: of 20 concurrent handshakes exactly 5 open; the slots come back', async (t) => {
    const node = await startRedis({ cluster: true });
    t.after(() => node.close());
    const g = await startGateway(config(upstream.port, route('clu', { conn: 5, burst: 0, default_conn_delay: 0.1, policy: 'redis-cluster', redis_cluster_nodes: [`127.0.0.1:${node.port}`] })));
    t.after(() => g.close());
    const rs = await openMany(`${g.ws}/clu/echo`, 20);
    const open = opened(rs);
    assert.equal(open.length, 5);
    for (const r of rs.filter((x) => !x.ws)) assert.equal(r.status, 503);
    const c = node.client();
    const keys = await c.keys('*conn:route:clu:*');
    assert.equal(keys.length, 1, `one slot set in the cluster: ${keys}`);
    assert.equal(await c.zcard(keys[0]), 5);
    await closeAll(open);
    assert.ok(await eventually(async () => (await c.exists(keys[0])) === 0), 'the key is gone once they closed');
    assert.equal(opened(await openMany(`${g.ws}/clu/echo`, 20)).length, 5);
  });

  test('a Redis that requires a password: redis_password (and the password in gateway.redis.url) work; a wrong one is an outage answered at once; no log line carries either', async (t) => {
    const PASS = 'r3dis-pa55-0123456789';
    const WRONG = 'wrong-pa55-9876543210';
    const locked = await startRedis({ password: PASS });
    t.after(() => locked.close());
    const attrs = { conn: 2, burst: 0, default_conn_delay: 0.1, policy: 'redis', redis_host: '127.0.0.1', redis_port: locked.port };
    const good = await startGateway(config(upstream.port, route('pw', { ...attrs, redis_password: PASS }) + route('pwurl', { conn: 2, burst: 0, default_conn_delay: 0.1, policy: 'redis' }), `  redis: { url: "redis://:${PASS}@127.0.0.1:${locked.port}/0", timeout: 0.5 }`));
    const bad = await startGateway(config(upstream.port, route('pw', { ...attrs, redis_password: WRONG, redis_timeout: 500 })));
    t.after(() => Promise.all([good.close(), bad.close()]));
    const inspectLocked = locked.client();
    for (const id of ['pw', 'pwurl']) {
      const rs = await openMany(`${good.ws}/${id}/echo`, 6);
      assert.equal(opened(rs).length, 2, `${id}: exactly conn open`);
      assert.equal(await inspectLocked.zcard(redisKey(id)), 2, `${id}: the slots are in the protected Redis`);
      await closeAll(opened(rs));
    }
    const refused = await openWs(`${bad.ws}/pw/echo`);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['x-portcullis-error'], 'LIMIT_STORE_UNAVAILABLE');
    assert.ok(await eventually(() => /limit store unavailable/.test(bad.log.raw())), 'the outage is logged');
    for (const g of [good, bad]) {
      const log = g.log.raw();
      assert.ok(!log.includes(PASS) && !log.includes(WRONG), 'no password in any log line');
    }
    assert.ok(!refused.body.includes(WRONG), 'nor in the answer');
  });

  test('shutdown releases every slot and closes the gateway\'s Redis connection', async (t) => {
    const storesBefore = openRedisStores();
    const g = await startGateway(config(upstream.port, route('shut', { conn: 4, burst: 0, default_conn_delay: 0.1, ...redisAttrs(), redis_database: 7 })));
    t.after(() => g.close());
    const db7 = redis.client();
    await db7.select(7);
    const open = opened(await openMany(`${g.ws}/shut/echo`, 4));
    assert.equal(open.length, 4);
    assert.equal(await db7.zcard(redisKey('shut')), 4);
    assert.equal(openRedisStores(), storesBefore + 1);
    await g.close(200);
    assert.deepEqual((await Promise.all(open.map((ws) => closed(ws)))).map((c) => c.code), [1001, 1001, 1001, 1001]);
    assert.equal(await db7.exists(redisKey('shut')), 0, 'every slot given back before the connection closed');
    assert.equal(openRedisStores(), storesBefore, 'the Redis client is closed');
  });

  test('Redis down: refused at once (allow_degradation false) or admitted under a local cap (true); open connections untouched; limits resume after a restart; the outage logged once', async () => {
    const attrs = { conn: 3, burst: 0, default_conn_delay: 0.1, ...redisAttrs(), redis_timeout: 300 };
    const g = await startGateway(
      config(upstream.port, route('strict', attrs) + route('lenient', { ...attrs, allow_degradation: true })),
    );
    let all = [];
    try {
      const strict = opened(await openMany(`${g.ws}/strict/echo`, 2));
      const lenient = opened(await openMany(`${g.ws}/lenient/echo`, 2));
      all = [...strict, ...lenient];
      assert.equal(all.length, 4);
      await redis.stop();
      try {
        const refused = await openWs(`${g.ws}/strict/echo`);
        assert.equal(refused.status, 503);
        assert.equal(refused.headers['x-portcullis-error'], 'LIMIT_STORE_UNAVAILABLE');
        assert.match(refused.headers['retry-after'], /^[1-9]\d*$/);
        for (let i = 0; i < 5; i++) assert.equal((await openWs(`${g.ws}/strict/echo`)).status, 503);
        // Degraded: the local cap (conn 3 in this instance) applies.
        const degraded = await openMany(`${g.ws}/lenient/echo`, 5);
        const admitted = opened(degraded);
        assert.equal(admitted.length, 3);
        for (const r of degraded.filter((x) => !x.ws)) assert.equal(r.headers['x-portcullis-error'], 'LIMIT_EXCEEDED');
        all.push(...admitted);
        for (const ws of all) assert.ok(await echoes(ws), 'open connections untouched');
        const outage = g.log.lines.filter((l) => /limit store unavailable/.test(l.msg ?? ''));
        assert.equal(outage.length, 1, 'the outage is logged once, not per request');
        assert.doesNotMatch(JSON.stringify(outage), /password/);
      } finally {
        await redis.start();
      }
      // Back: the leases still held are counted again (2 strict), so one more slot, then refused.
      const back = await eventually(async () => {
        const r = await openWs(`${g.ws}/strict/echo`);
        if (r.ws) return r;
        assert.notEqual(r.headers['x-portcullis-error'], 'LIMIT_EXCEEDED', 'no slot may be lost to the outage');
        return undefined;
      }, { tries: 60, every: 50 });
      assert.ok(back?.ws, 'limits resume when Redis is back');
      all.push(back.ws);
      const over = await openWs(`${g.ws}/strict/echo`);
      assert.equal(over.headers['x-portcullis-error'], 'LIMIT_EXCEEDED');
      assert.equal(await inspect.zcard(redisKey('strict')), 3);
      assert.ok(g.log.lines.some((l) => /limit store available again/.test(l.msg ?? '')));
      await closeAll(all);
      all = [];
      assert.ok(await eventually(async () => (await inspect.keys('portcullis:conn:route:strict:*')).length + (await inspect.keys('portcullis:conn:route:lenient:*')).length === 0));
    } finally {
      await closeAll(all);
      await g.close();
    }
  });
});

describe('two gateway processes sharing Redis', () => {
  const children = [];
  after(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });

  async function spawnGateway(file) {
    const child = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const port = await eventually(() => Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1]), { tries: 250 });
    assert.ok(port, `gateway started: ${stderr}`);
    return { child, ws: `ws://127.0.0.1:${port}` };
  }

  test('of 20 concurrent handshakes exactly 5 open; SIGKILL one process and its slots free within key_ttl', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-limit-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(
      file,
      config(upstream.port, route('cross', { conn: 5, burst: 0, default_conn_delay: 0.1, policy: 'redis', key_ttl: 2 }), `  redis: { url: "${redis.url}" }`).replace(
        'log: { level: debug }',
        'log: { level: warn, access_log: false }',
      ),
    );
    const [a, b] = await Promise.all([spawnGateway(file), spawnGateway(file)]);
    const rs = await Promise.all([openMany(`${a.ws}/cross/echo`, 10), openMany(`${b.ws}/cross/echo`, 10)]);
    const open = opened(rs.flat());
    assert.equal(open.length, 5);
    await closeAll(open);
    assert.ok(await eventually(async () => (await inspect.exists(redisKey('cross'))) === 0));

    // A holds 3, B holds 2; A is killed without a chance to give anything back.
    const onA = opened(await openMany(`${a.ws}/cross/echo`, 3));
    const onB = opened(await openMany(`${b.ws}/cross/echo`, 2));
    assert.equal(onA.length + onB.length, 5);
    assert.equal((await openWs(`${b.ws}/cross/echo`)).status, 503);
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    // Poll B until a slot frees: the dead process's leases expire, nobody gives them back.
    const first = await eventually(async () => {
      const r = await openWs(`${b.ws}/cross/echo`);
      return r.ws;
    }, { tries: 120, every: 25 });
    const took = Date.now() - killedAt;
    assert.ok(first, 'the dead process\'s slots expired');
    assert.ok(took <= 2000 + 300, `within key_ttl (${took} ms)`);
    // B refreshed its own slots all along (2 + the new one), and its connections are fine.
    for (const ws of onB) assert.ok(await echoes(ws));
    const more = opened(await openMany(`${b.ws}/cross/echo`, 4));
    assert.equal(more.length, 2);
    assert.equal(await inspect.zcount(redisKey('cross'), Date.now(), '+inf'), 5);
    await closeAll([...onB, first, ...more]);
    b.child.kill('SIGTERM');
    assert.ok(await eventually(async () => (await inspect.exists(redisKey('cross'))) === 0));
  });
});

describe('config', () => {
  const load = (plugin, extra = '') =>
    loadConfigText(
      `gateway:\n${extra}\nroutes:\n  - id: r\n    uri: /r\n    upstream: { nodes: { "127.0.0.1:1": 1 } }\n    plugins:\n      limit-conn: ${plugin}\n`,
      '<inline>',
      { registry: createRegistry(), env: {} },
    );
  const refused = async (plugin, fragment, extra) => {
    await assert.rejects(load(plugin, extra), (err) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, fragment);
      return true;
    });
  };

  test('refused at load: missing required attributes, unknown variables, redis settings that cannot work', async () => {
    await refused('{ conn: 1, burst: 0 }', /default_conn_delay/);
    await refused('{ conn: 1, burst: 0, default_conn_delay: 1, key: server_name }', /unknown variable "server_name"/);
    await refused('{ conn: 1, burst: 0, default_conn_delay: 1, key_type: var_combination, key: "no vars" }', /names no variable/);
    await refused('{ conn: 1, burst: 0, default_conn_delay: 1, policy: redis }', /redis_host, or gateway.redis.url/);
    await refused('{ conn: 1, burst: 0, default_conn_delay: 1, redis_host: 10.0.0.1 }', /policy is local/);
    await refused('{ conn: 1, burst: 0, default_conn_delay: 1, policy: redis-cluster }', /redis_cluster_nodes/);
    await refused('{ conn: 1, burst: 0, default_conn_delay: 1, policy: redis-cluster, redis_cluster_nodes: [nohost] }', /not host:port/);
    await refused('{ conn: 1, burst: 0, default_conn_delay: 1 }', /gateway\.redis\.url/, '  redis: { url: "http://user:hunter2@redis:6379" }');
    await assert.rejects(load('{ conn: 1, burst: 0, default_conn_delay: 1 }', '  redis: { url: "redis://u:hunter2@h:6379/x" }'), (err) => {
      assert.doesNotMatch(err.message, /hunter2/, 'a Redis URL is never echoed');
      return true;
    });
  });

  test('valid: gateway.redis and redis-cluster load without connecting', async () => {
    const c = await load('{ conn: 2, burst: 1, default_conn_delay: 0.5, policy: redis }', '  redis: { url: "redis://127.0.0.1:1/2", timeout: 0.2 }');
    assert.equal(c.gateway.redis.url, 'redis://127.0.0.1:1/2');
    await load('{ conn: 2, burst: 0, default_conn_delay: 0.5, policy: redis-cluster, redis_cluster_nodes: ["127.0.0.1:1", "[::1]:2"] }');
  });
});
