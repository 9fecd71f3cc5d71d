// limit-messages as a client sees it: a flood over the rate closed with 1008
// LIMIT_EXCEEDED (or dropped); pings and empty frames count; per-key buckets shared
// by a key's connections, in this process and in a real redis-server; the upstream
// direction. And gateway.max_pending_handshakes_per_ip: handshakes still in progress
// per client address are capped (429), other addresses unaffected, and the count
// returns to zero on every way a handshake ends.
// Routes with on_exceed close (and no bytes_per_second) run in tunnel mode (the frame
// phase), except a per-key limit on Redis; drop and bytes routes, those with a per-key
// limit on Redis, and those built with `frameMode` run in frame mode. The
// two modes side by side, frame by frame: limit-messages-tunnel.test.js.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closed, collect, config, eventually, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';
import { startRedis } from './redis-helpers.js';
import { WebSocket } from 'ws';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A route with limit-messages (attributes as an object). With on_exceed close and no
 * bytes_per_second it is in tunnel mode; `frameMode` forces frame mode (another
 * plugin, websocket-size-limit, declares frameLimits).
 */
function route(id, attrs, frameMode = false) {
  const lm = Object.entries(attrs)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(', ');
  return `  - id: ${id}
    uri: /${id}/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-messages: { ${lm} }
${frameMode ? '      websocket-size-limit: {}\n' : ''}`;
}

/**
 * Send one message at a time until the connection closes (at most `max`): how many
 * were echoed, and the close.
 */
async function sendUntilClosed(ws, max, prefix = 'm') {
  const c = closed(ws);
  let passed = 0;
  for (let i = 0; i < max; i++) {
    ws.send(`${prefix}${i}`);
    const r = await Promise.race([nextMessage(ws), c.then(() => undefined)]);
    if (r === undefined) break;
    passed++;
  }
  return { passed, close: await Promise.race([c, sleep(2000).then(() => undefined)]) };
}

/** Send `n` messages at once; returns how many echoes arrived before `ms` of quiet or the close. */
async function floodAndCount(ws, n, text = 'm', ms = 300) {
  let got = 0;
  const on = () => got++;
  ws.on('message', on);
  for (let i = 0; i < n; i++) ws.send(text);
  await Promise.race([closed(ws), sleep(ms)]);
  ws.off('message', on);
  return got;
}

async function echoes(ws, text = 'ping') {
  ws.send(text);
  return (await nextMessage(ws)) === text;
}

let upstream;
let redis;
/** Messages the upstream received, by URL. */
const seen = new Map();
before(async () => {
  [redis, upstream] = await Promise.all([
    startRedis(),
    wsUpstream({
      onConnection(ws, req) {
        ws.on('message', (data, isBinary) => {
          seen.set(req.url, (seen.get(req.url) ?? 0) + 1);
          const text = data.toString();
          // "flood:N": the upstream sends N messages at once.
          if (!isBinary && text.startsWith('flood:')) {
            for (let i = 0; i < Number(text.slice(6)); i++) ws.send(`u${i}`);
            return;
          }
          ws.send(data, { binary: isBinary });
        });
      },
    }),
  ]);
});
after(async () => {
  await upstream?.close();
  await redis?.close();
});

describe('limit-messages', () => {
  let gw;
  before(async () => {
    const redisAttrs = { policy: 'redis', redis_host: '127.0.0.1', redis_port: redis.port };
    gw = await startGateway(
      config(
        upstream.port,
        [
          route('close', { rate: 1, burst: 4 }),
          route('drop', { rate: 1, burst: 2, on_exceed: 'drop' }),
          route('control', { rate: 1, burst: 2 }),
          route('bytes', { rate: 100, bytes_per_second: 10, bytes_burst: 0 }),
          route('key', { rate: 1, burst: 4, scope: 'key' }),
          route('tenant', { rate: 1, burst: 2, scope: 'key', key: 'http_x_tenant' }),
          route('up', { rate: 1, burst: 2, direction: 'upstream' }),
          route('both', { rate: 1, burst: 3, direction: 'both' }),
          `  - id: validated
    uri: /validated/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-messages: { rate: 1, burst: 2 }
      websocket-validator: { client: { schema: { type: object } }, on_invalid: drop, error_message: invalid }
`,
          route('rkey', { rate: 1, burst: 4, scope: 'both', ...redisAttrs }, true),
          route('rkeyt', { rate: 1, burst: 4, scope: 'key', key: 'http_x_k', ...redisAttrs }),
          route('rfast', { rate: 1000, burst: 0, scope: 'key', ...redisAttrs }),
          route('rdeg', { rate: 1, burst: 9, scope: 'key', allow_degradation: true, ...redisAttrs }),
          route('rnodeg', { rate: 1, burst: 9, scope: 'key', ...redisAttrs }, true),
        ].join(''),
      ),
    );
  });
  after(async () => {
    await gw?.close();
  });

  test('a flood over rate + burst is closed with 1008 LIMIT_EXCEEDED; at most rate + burst reach the upstream', async () => {
    const { ws } = await openWs(`${gw.ws}/close/flood`);
    const c = closed(ws);
    for (let i = 0; i < 20; i++) ws.send(`m${i}`);
    const { code, reason } = await c;
    assert.equal(code, 1008);
    assert.equal(reason, 'LIMIT_EXCEEDED');
    assert.ok(await eventually(() => (seen.get('/close/flood') ?? 0) >= 5), 'the first rate + burst messages passed');
    await sleep(50);
    assert.equal(seen.get('/close/flood'), 5, 'no more than rate + burst messages reached the upstream');
  });

  test('scope connection: each connection has its own bucket', async () => {
    const a = (await openWs(`${gw.ws}/close/a`)).ws;
    const b = (await openWs(`${gw.ws}/close/b`)).ws;
    for (let i = 0; i < 4; i++) {
      assert.ok(await echoes(a, `a${i}`));
      assert.ok(await echoes(b, `b${i}`));
    }
    a.close();
    b.close();
    await Promise.all([closed(a), closed(b)]);
  });

  test('on_exceed drop: the excess is discarded, the connection stays open and refills at the rate', async () => {
    const { ws } = await openWs(`${gw.ws}/drop/x`);
    const got = await floodAndCount(ws, 10);
    assert.equal(got, 3);
    assert.equal(ws.readyState, ws.OPEN);
    await sleep(1100);
    assert.ok(await echoes(ws, 'later'));
    ws.close();
    await closed(ws);
  });

  test('pings count: rate 1 burst 2, three pings then a message closes with 1008', async () => {
    const { ws } = await openWs(`${gw.ws}/control/x`);
    const c = closed(ws);
    ws.ping();
    ws.ping();
    ws.ping();
    ws.send('after pings');
    const { code, reason } = await c;
    assert.equal(code, 1008);
    assert.equal(reason, 'LIMIT_EXCEEDED');
  });

  test('a ping flood alone is closed with 1008', async () => {
    const { ws } = await openWs(`${gw.ws}/control/x`);
    const c = closed(ws);
    for (let i = 0; i < 10; i++) ws.ping();
    assert.equal((await c).code, 1008);
  });

  test('empty messages count', async () => {
    const { ws } = await openWs(`${gw.ws}/control/x`);
    const c = closed(ws);
    const echoed = collect(ws, 3);
    ws.send('');
    ws.send('');
    ws.send('');
    assert.deepEqual(await echoed, ['', '', '']);
    ws.send('');
    assert.equal((await c).code, 1008);
  });

  test('bytes_per_second: a message over the byte budget closes', async () => {
    const { ws } = await openWs(`${gw.ws}/bytes/x`);
    const c = closed(ws);
    assert.ok(await echoes(ws, '12345'));
    ws.send('1234567890');
    assert.equal((await c).code, 1008);
  });

  test('scope key (local): two connections of one key share one bucket', async () => {
    const a = (await openWs(`${gw.ws}/key/a`)).ws;
    const b = (await openWs(`${gw.ws}/key/b`)).ws;
    for (let i = 0; i < 3; i++) assert.ok(await echoes(a, `a${i}`));
    const cb = closed(b);
    assert.ok(await echoes(b, 'b0'));
    assert.ok(await echoes(b, 'b1'));
    b.send('b2');
    assert.equal((await cb).code, 1008);
    // Another key has its own bucket.
    const t1 = (await openWs(`${gw.ws}/tenant/x`, { headers: { 'x-tenant': 'one' } })).ws;
    const t2 = (await openWs(`${gw.ws}/tenant/x`, { headers: { 'x-tenant': 'two' } })).ws;
    for (let i = 0; i < 3; i++) assert.ok(await echoes(t1, `t${i}`));
    for (let i = 0; i < 3; i++) assert.ok(await echoes(t2, `t${i}`));
    for (const ws of [a, t1, t2]) ws.close();
    await Promise.all([closed(a), closed(t1), closed(t2)]);
  });

  test('direction upstream: an upstream flood is closed with 1008, the client gets 1001; client messages do not count', async () => {
    // "flood:0" gets no answer: ten client messages that would be over rate + burst on the client side.
    const quiet = (await openWs(`${gw.ws}/up/quiet`)).ws;
    for (let i = 0; i < 10; i++) quiet.send('flood:0');
    assert.ok(await eventually(() => (seen.get('/up/quiet') ?? 0) === 10), 'all ten client messages reached the upstream');
    assert.ok(await echoes(quiet, 'still open'), 'client messages were not counted');
    quiet.close();
    await closed(quiet);

    const { ws } = await openWs(`${gw.ws}/up/x`);
    const c = closed(ws);
    const got = [];
    ws.on('message', (d) => got.push(d.toString()));
    ws.send('flood:10');
    assert.equal((await c).code, 1001);
    assert.ok(got.length <= 3, `${got.length} upstream messages reached the client`);
  });

  test('direction both: each direction has its own bucket; a client flood closes the client (1008), an upstream flood the upstream (client gets 1001)', async () => {
    const a = (await openWs(`${gw.ws}/both/a`)).ws;
    const ca = closed(a);
    for (let i = 0; i < 4; i++) assert.ok(await echoes(a, `a${i}`), 'rate + burst round trips pass both buckets');
    a.send('a4');
    assert.deepEqual(await ca, { code: 1008, reason: 'LIMIT_EXCEEDED' });

    const b = (await openWs(`${gw.ws}/both/b`)).ws;
    const cb = closed(b);
    const got = [];
    b.on('message', (d) => got.push(d.toString()));
    b.send('flood:10');
    assert.equal((await cb).code, 1001, 'the upstream side was over its bucket');
    assert.equal(got.length, 4, 'rate + burst upstream messages reached the client');
  });

  test('messages a later plugin rejects count too: three refused by websocket-validator use up the bucket of the fourth', async () => {
    const { ws } = await openWs(`${gw.ws}/validated/x`);
    const c = closed(ws);
    const replies = collect(ws, 3);
    for (let i = 0; i < 3; i++) ws.send('not json');
    assert.deepEqual(await replies, ['invalid', 'invalid', 'invalid'], 'each dropped by the validator');
    ws.send('{}');
    assert.deepEqual(await c, { code: 1008, reason: 'LIMIT_EXCEEDED' }, 'a valid message finds the bucket empty');
    assert.equal(seen.get('/validated/x'), undefined, 'nothing reached the upstream');
  });

  test('frame mode, scope both with policy redis: two connections of one key share one bucket in Redis', async () => {
    const inspect = redis.client();
    try {
      const a = (await openWs(`${gw.ws}/rkey/a`)).ws;
      const b = (await openWs(`${gw.ws}/rkey/b`)).ws;
      for (let i = 0; i < 3; i++) assert.ok(await echoes(a, `a${i}`));
      const keys = await inspect.keys('portcullis:msg:route:rkey:*');
      assert.ok(keys.length >= 1, `Redis holds the bucket (${keys.join(', ')})`);
      const cb = closed(b);
      assert.ok(await echoes(b, 'b0'));
      assert.ok(await echoes(b, 'b1'));
      b.send('b2');
      assert.equal((await cb).code, 1008);
      a.close();
      await closed(a);
    } finally {
      inspect.disconnect();
    }
  });

  // A per-key limit on Redis cannot run in the tunnel (it would have to forward frames before
  // the store answered), so these routes are in frame mode: each message that needs the store
  // waits for its answer, and the limit is exact.
  test('scope key with policy redis: two connections of one key share its bucket exactly; the one that finds it empty is closed 1008', async () => {
    const k = { headers: { 'x-k': 'slow' } };
    const a = (await openWs(`${gw.ws}/rkeyt/a`, k)).ws;
    const b = (await openWs(`${gw.ws}/rkeyt/b`, k)).ws;
    for (let i = 0; i < 3; i++) assert.ok(await echoes(a, `a${i}`));
    // 5 tokens for the key (rate 1, burst 4), 3 taken by a: b gets the other 2 (plus at most the
    // one token that refills while it sends, a second's worth at rate 1).
    const { passed, close } = await sendUntilClosed(b, 20, 'b');
    assert.equal(close?.code, 1008);
    assert.equal(close?.reason, 'LIMIT_EXCEEDED');
    assert.ok(passed === 2 || passed === 3, `${passed} of b's messages passed (2 left in the bucket, 1 more if a second passed)`);
    a.close();
    await closed(a);
  });

  test('scope key with policy redis: a flood in one chunk passes exactly the bucket, then 1008', async () => {
    const before = seen.get('/rkeyt/flood') ?? 0;
    const { ws } = await openWs(`${gw.ws}/rkeyt/flood`, { headers: { 'x-k': 'flood' } });
    const c = closed(ws);
    for (let i = 0; i < 50; i++) ws.send(`f${i}`);
    assert.equal((await c).code, 1008);
    await sleep(50);
    const got = (seen.get('/rkeyt/flood') ?? 0) - before;
    assert.ok(got === 5 || got === 6, `${got} reached the upstream (5 in the bucket, 1 more if a second passed)`);
  });

  test('policy redis with a high rate: batched, every message passes', async () => {
    const { ws } = await openWs(`${gw.ws}/rfast/x`);
    const n = 200;
    const all = collect(ws, n);
    for (let i = 0; i < n; i++) ws.send(`m${i}`);
    const got = await all;
    assert.equal(got.length, n);
    assert.equal(got[n - 1], `m${n - 1}`);
    ws.close();
    await closed(ws);
  });

  // Last in this suite: stops and restarts the shared redis-server.
  test('Redis down: open connections are untouched and limited by a local bucket; a new handshake is answered by allow_degradation (503 without); limits resume', async () => {
    const deg = (await openWs(`${gw.ws}/rdeg/x`)).ws;
    const nodeg = (await openWs(`${gw.ws}/rnodeg/x`)).ws;
    assert.ok(await echoes(deg, 'before'));
    assert.ok(await echoes(nodeg, 'before'));
    await redis.stop();
    try {
      assert.ok(await echoes(deg, 'during'), 'allow_degradation: passes under the local bucket');
      assert.ok(await echoes(nodeg, 'during'), 'without allow_degradation too: an open connection is never closed for an outage');
      // Still limited while Redis is away: rate 1, burst 9, so a flood is closed with 1008.
      const flood = await sendUntilClosed(nodeg, 30, 'flood');
      assert.equal(flood.close?.code, 1008);
      assert.equal(flood.close?.reason, 'LIMIT_EXCEEDED');
      assert.ok(flood.passed < 12, `${flood.passed} passed under the local bucket`);
      // New connections: refused at once without allow_degradation, admitted with it.
      const refused = await openWs(`${gw.ws}/rnodeg/new`);
      assert.equal(refused.status, 503);
      assert.equal(JSON.parse(refused.body).error.code, 'LIMIT_STORE_UNAVAILABLE');
      assert.ok(Number(refused.headers['retry-after']) >= 1, 'with Retry-After');
      const admitted = await openWs(`${gw.ws}/rdeg/new`);
      assert.ok(admitted.ws, 'allow_degradation admits');
      admitted.ws.close();
      await closed(admitted.ws);
    } finally {
      await redis.start();
    }
    // Once the store has reconnected, handshakes are admitted and messages pass again.
    let fresh;
    const resumed = await eventually(
      async () => {
        const r = await openWs(`${gw.ws}/rnodeg/y`);
        if (!r.ws) return false;
        fresh = r.ws;
        fresh.send('after');
        const m = await Promise.race([nextMessage(fresh), closed(fresh).then(() => undefined)]);
        if (m === 'after') return true;
        fresh.terminate();
        return false;
      },
      { tries: 50, every: 100 },
    );
    assert.ok(resumed, 'limits resume when Redis is back');
    deg.close();
    fresh.close();
    await Promise.all([closed(deg), closed(fresh)]);
  });

  test('config: rate is required, scope key with policy redis needs a Redis', async () => {
    const bad = async (attrs) =>
      loadConfigText(config(upstream.port, route('bad', attrs)), '/tmp/x.yaml', { registry: createRegistry(), env: {} });
    await assert.rejects(bad({ burst: 1 }), ConfigError);
    await assert.rejects(bad({ rate: 1, scope: 'key', policy: 'redis' }), ConfigError);
  });
});

describe('gateway.max_pending_handshakes_per_ip', () => {
  let slow;
  let gw;
  before(async () => {
    // The upstream answers its handshakes after 400 ms (/500: then refuses with a 500).
    slow = await wsUpstream({
      verifyClient: (info, cb) => setTimeout(() => (info.req.url.includes('/500') ? cb(false, 500) : cb(true)), 400),
    });
    gw = await startGateway(
      config(
        slow.port,
        `  - id: ws
    uri: /*
    enable_websocket: true
    upstream_id: up
`,
        '  max_pending_handshakes_per_ip: 2',
      ),
    );
  });
  after(async () => {
    await gw?.close();
    await slow?.close();
  });

  test('a third concurrent handshake from one address gets 429 with Retry-After; another address passes; the count returns to 0', async () => {
    const p1 = openWs(`${gw.ws}/one`);
    const p2 = openWs(`${gw.ws}/two`);
    assert.ok(await eventually(() => gw.gw.pendingHandshakes('127.0.0.1') === 2));
    const third = await openWs(`${gw.ws}/three`);
    assert.equal(third.status, 429);
    assert.equal(third.headers['x-portcullis-error'], 'TOO_MANY_PENDING_HANDSHAKES');
    assert.match(third.headers['retry-after'], /^[1-9]\d*$/);
    assert.equal(JSON.parse(third.body).error.code, 'TOO_MANY_PENDING_HANDSHAKES');
    const other = await openWs(`${gw.ws}/other`, { localAddress: '127.0.0.2' });
    assert.ok(other.ws, 'a handshake from 127.0.0.2 is not affected');
    const [r1, r2] = await Promise.all([p1, p2]);
    assert.ok(r1.ws && r2.ws);
    assert.equal(gw.gw.pendingHandshakes(), 0);
    // Refused by the upstream, or abandoned by the client: the count still returns to 0.
    const refused = await Promise.all([openWs(`${gw.ws}/500`), openWs(`${gw.ws}/500`)]);
    for (const r of refused) assert.ok(r.status >= 400, `refused with ${r.status}`);
    assert.ok(await eventually(() => gw.gw.pendingHandshakes() === 0));
    const gone = new WebSocket(`${gw.ws}/gone`);
    gone.on('error', () => {});
    assert.ok(await eventually(() => gw.gw.pendingHandshakes('127.0.0.1') === 1));
    gone.terminate();
    assert.ok(await eventually(() => gw.gw.pendingHandshakes() === 0, { tries: 100, every: 20 }));
    const again = await Promise.all([openWs(`${gw.ws}/again1`), openWs(`${gw.ws}/again2`)]);
    assert.ok(again[0].ws && again[1].ws, 'fresh handshakes succeed');
    for (const ws of [r1.ws, r2.ws, other.ws, again[0].ws, again[1].ws]) ws.close();
  });

  test('0 turns the cap off', async () => {
    const c = await loadConfigText(config(slow.port, `  - id: ws\n    uri: /*\n    enable_websocket: true\n    upstream_id: up\n`, '  max_pending_handshakes_per_ip: 0'), '/tmp/x.yaml', {
      registry: createRegistry(),
      env: {},
    });
    assert.equal(c.gateway.max_pending_handshakes_per_ip, 0);
    const d = await loadConfigText(config(slow.port, `  - id: ws\n    uri: /*\n    enable_websocket: true\n    upstream_id: up\n`), '/tmp/x.yaml', {
      registry: createRegistry(),
      env: {},
    });
    assert.equal(d.gateway.max_pending_handshakes_per_ip, 32);
  });
});
