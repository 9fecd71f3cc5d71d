// limit-req as a client sees it: a leaky bucket per key on how fast requests, WebSocket
// handshakes and SSE streams are opened. Within the rate: at once; within the burst:
// delayed so requests leave at `rate` (or at once with nodelay); beyond: refused with
// Retry-After, never reaching the upstream. The same through a real redis-server,
// shared by two gateways; a Redis outage answered per allow_degradation; a client
// rotating X-Forwarded-For stays one key.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { config, eventually, get, httpUpstream, openWs, startGateway, wsUpstream } from './helpers.js';
import { startRedis } from './redis-helpers.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function plugin(attrs) {
  return `limit-req: { ${Object.entries(attrs)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(', ')} }`;
}

/** A WebSocket route `<id>` and a plain HTTP route `<id>-http`. */
function routes(id, attrs) {
  return `  - id: ${id}
    uri: /${id}/*
    enable_websocket: true
    upstream_id: up
    plugins:
      ${plugin(attrs)}
  - id: ${id}-http
    uri: /${id}-http/*
    upstream_id: web
    plugins:
      ${plugin(attrs)}
`;
}

function withWeb(yaml, port) {
  return yaml.replace('routes:\n', `  - id: web\n    nodes: { "127.0.0.1:${port}": 1 }\nroutes:\n`);
}

function assertRefused(r, code = 503, error = 'LIMIT_EXCEEDED') {
  assert.equal(r.status, code);
  assert.equal(r.headers['x-portcullis-error'], error);
  assert.match(r.headers['retry-after'], /^[1-9]\d*$/);
}

/** Start `n` requests at once; each resolves with its result and when it was answered (ms after the start). */
async function timed(n, fn) {
  const t0 = Date.now();
  return Promise.all(Array.from({ length: n }, () => fn().then((r) => ({ ...r, ms: Date.now() - t0 }))));
}

let upstream;
let web;
before(async () => {
  [upstream, web] = await Promise.all([
    wsUpstream({ onConnection: (ws) => ws.on('message', (d, b) => ws.send(d, { binary: b })) }),
    httpUpstream((req, res) => {
      if (req.url.includes('/sse')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        return void res.end('data: one\n\n');
      }
      res.end('ok');
    }),
  ]);
});
after(async () => {
  await upstream?.close();
  await web?.close();
});

describe('local policy', () => {
  let gw;
  before(async () => {
    gw = await startGateway(
      withWeb(
        config(
          upstream.port,
          [
            routes('one', { rate: 1, burst: 0 }),
            routes('delay', { rate: 4, burst: 2 }),
            routes('nodelay', { rate: 1, burst: 2, nodelay: true }),
            routes('slow', { rate: 0.25, burst: 0, rejected_code: 429, rejected_msg: 'slow down' }),
            routes('spoof', { rate: 1, burst: 0 }),
            routes('tenant', { rate: 1, burst: 0, key: 'http_x_tenant' }),
          ].join(''),
        ),
        web.port,
      ),
    );
  });
  after(async () => gw?.close());

  test('rate 1, burst 0: the first handshake opens, the next in the same second is refused with Retry-After before any 101', async () => {
    const before = upstream.handshakes.length;
    const a = await openWs(`${gw.ws}/one/echo`);
    const b = await openWs(`${gw.ws}/one/echo`);
    assert.ok(a.ws);
    assertRefused(b);
    assert.equal(JSON.parse(b.body).error.code, 'LIMIT_EXCEEDED');
    assert.equal(upstream.handshakes.length - before, 1, 'the refused handshake never reached the upstream');
    a.ws.close();
    // The bucket drains at 1/s: a second later there is room again.
    await sleep(1050);
    const c = await openWs(`${gw.ws}/one/echo`);
    assert.ok(c.ws, 'admitted again once the bucket drained');
    c.ws.close();
  });

  test('plain HTTP and SSE streams count the same way', async () => {
    const a = await get(`${gw.http}/one-http/sse`, { accept: 'text/event-stream' });
    assert.equal(a.status, 200);
    assert.match(a.body, /data: one/);
    assertRefused(await get(`${gw.http}/one-http/x`));
  });

  test('burst without nodelay: requests over the rate are delayed to leave at `rate`, beyond rate + burst refused at once', async () => {
    // rate 4/s, burst 2: of 4 at once, one passes at once, two wait 250 and 500 ms, one is refused.
    const rs = await timed(4, () => get(`${gw.http}/delay-http/x`));
    const ok = rs.filter((r) => r.status === 200).sort((x, y) => x.ms - y.ms);
    const refused = rs.filter((r) => r.status !== 200);
    assert.equal(ok.length, 3);
    assert.equal(refused.length, 1);
    assertRefused(refused[0]);
    // Order, and the delays the leaky bucket owes (lower bounds only: no speed is asserted).
    assert.ok(refused[0].ms <= ok[1].ms, 'the refusal is answered before the delayed requests');
    assert.ok(ok[0].ms <= ok[1].ms && ok[1].ms <= ok[2].ms);
    assert.ok(ok[1].ms >= 200, `second delayed ~250 ms (${ok[1].ms})`);
    assert.ok(ok[2].ms >= 450, `third delayed ~500 ms (${ok[2].ms})`);
  });

  test('WebSocket handshakes in the burst are delayed too', async () => {
    await sleep(1000);
    const rs = await timed(3, () => openWs(`${gw.ws}/delay/echo`));
    const ms = rs.filter((r) => r.ws).map((r) => r.ms).sort((a, b) => a - b);
    assert.equal(ms.length, 3);
    assert.ok(ms[2] >= 450, `the last waited ~500 ms (${ms.join(', ')})`);
    for (const r of rs) r.ws.close();
  });

  test('nodelay: the burst is admitted at once, beyond it refused', async () => {
    await sleep(1000);
    // Beside a burst on the delaying route (whose third request must wait ~500 ms), every
    // nodelay request is answered first: the burst was not held back.
    const [rs, delayed] = await Promise.all([
      timed(4, () => get(`${gw.http}/nodelay-http/x`)),
      timed(3, () => get(`${gw.http}/delay-http/x`)),
    ]);
    const ok = rs.filter((r) => r.status === 200);
    assert.equal(ok.length, 3);
    const lastDelayed = Math.max(...delayed.filter((r) => r.status === 200).map((r) => r.ms));
    for (const r of ok) assert.ok(r.ms < lastDelayed, `admitted before the delayed burst finished (${r.ms} vs ${lastDelayed})`);
    assertRefused(rs.find((r) => r.status !== 200));
  });

  test('Retry-After covers the time until the bucket has room; rejected_code and rejected_msg apply', async () => {
    assert.equal((await get(`${gw.http}/slow-http/x`)).status, 200);
    const r = await get(`${gw.http}/slow-http/x`);
    assertRefused(r, 429);
    assert.equal(r.headers['retry-after'], '4', 'one request drains in 4 s at 0.25/s');
    assert.equal(JSON.parse(r.body).error.message, 'slow down');
  });

  test('an untrusted client rotating X-Forwarded-For stays one key; a header key counts per value', async () => {
    const rs = [];
    for (let i = 0; i < 4; i++) rs.push(await openWs(`${gw.ws}/spoof/echo`, { headers: { 'x-forwarded-for': `203.0.113.${i + 1}`, 'x-real-ip': `198.51.100.${i}` } }));
    assert.equal(rs.filter((r) => r.ws).length, 1);
    for (const r of rs.filter((x) => !x.ws)) assertRefused(r);
    for (const r of rs) r.ws?.close();
    assert.equal((await get(`${gw.http}/tenant-http/x`, { 'x-tenant': 'a' })).status, 200);
    assert.equal((await get(`${gw.http}/tenant-http/x`, { 'x-tenant': 'b' })).status, 200);
    assertRefused(await get(`${gw.http}/tenant-http/x`, { 'x-tenant': 'a' }));
  });

  test('config errors are refused at load', async () => {
    await assert.rejects(startGateway(config(upstream.port, routes('bad', { rate: 1, burst: 0, key: 'nope' }))), /unknown variable/);
    await assert.rejects(startGateway(config(upstream.port, routes('bad', { rate: 0, burst: 0 }))));
    await assert.rejects(startGateway(config(upstream.port, routes('bad', { rate: 1 }))));
  });
});

describe('redis policy', () => {
  let redis;
  let inspect;
  before(async () => {
    redis = await startRedis();
    inspect = redis.client();
  });
  after(async () => redis?.close());

  const attrs = (more = {}) => ({ rate: 1, burst: 1, nodelay: true, policy: 'redis', redis_host: '127.0.0.1', redis_port: redis.port, redis_timeout: 300, ...more });

  test('two gateways sharing Redis share one bucket: rate + burst admitted across both, the next refused', async () => {
    const yaml = withWeb(config(upstream.port, routes('shared', attrs())), web.port);
    const [g1, g2] = await Promise.all([startGateway(yaml), startGateway(yaml)]);
    try {
      const a = await openWs(`${g1.ws}/shared/echo`);
      const b = await openWs(`${g2.ws}/shared/echo`);
      const c = await openWs(`${g1.ws}/shared/echo`);
      assert.ok(a.ws && b.ws);
      assertRefused(c);
      assert.ok((await inspect.keys('portcullis:req:*')).some((k) => k.includes('route:shared:127.0.0.1')));
      a.ws.close();
      b.ws.close();
    } finally {
      await Promise.all([g1.close(), g2.close()]);
    }
  });

  test('burst without nodelay is delayed through Redis too', async () => {
    const g = await startGateway(withWeb(config(upstream.port, routes('rdelay', attrs({ rate: 4, burst: 1, nodelay: false }))), web.port));
    try {
      const rs = await timed(3, () => get(`${g.http}/rdelay-http/x`));
      const ok = rs.filter((r) => r.status === 200).map((r) => r.ms).sort((x, y) => x - y);
      assert.equal(ok.length, 2);
      assert.ok(ok[1] >= 200, `the second waited ~250 ms (${ok.join(', ')})`);
      assertRefused(rs.find((r) => r.status !== 200));
    } finally {
      await g.close();
    }
  });

  test('Redis down: 503 LIMIT_STORE_UNAVAILABLE with Retry-After at once, or a local bucket with allow_degradation; limits resume', async () => {
    const g = await startGateway(withWeb(config(upstream.port, routes('strict', attrs()) + routes('lenient', attrs({ allow_degradation: true }))), web.port));
    try {
      assert.equal((await get(`${g.http}/strict-http/x`)).status, 200);
      await redis.stop();
      try {
        const r = await get(`${g.http}/strict-http/x`);
        assertRefused(r, 503, 'LIMIT_STORE_UNAVAILABLE');
        assertRefused(await openWs(`${g.ws}/strict/echo`), 503, 'LIMIT_STORE_UNAVAILABLE');
        const degraded = [];
        for (let i = 0; i < 3; i++) degraded.push(await get(`${g.http}/lenient-http/x`));
        assert.deepEqual(degraded.map((x) => x.status), [200, 200, 503]);
        assertRefused(degraded[2]);
      } finally {
        await redis.start();
      }
      const back = await eventually(async () => (await get(`${g.http}/strict-http/x`)).status === 200, { tries: 60, every: 50 });
      assert.ok(back, 'limits resume when Redis is back');
    } finally {
      await g.close();
    }
  });
});
