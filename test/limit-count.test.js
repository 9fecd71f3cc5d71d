// limit-count as a client sees it: exactly `count` requests, WebSocket handshakes and
// SSE streams per window and key, the next refused with Retry-After and
// X-RateLimit-Remaining 0; the quota headers on a relayed response, an SSE head and a
// 101 (tunnel and frame mode); routes of one group share a counter; fixed and sliding
// windows reset; the same limits through a real redis-server, shared by two gateways;
// a Redis outage answered per allow_degradation; a client rotating X-Forwarded-For
// stays one key.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { config, eventually, get, httpUpstream, startGateway, wsUpstream } from './helpers.js';
import { startRedis } from './redis-helpers.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Open a WebSocket; resolves with { ws, headers } (the 101's) or { status, headers, body }. */
function openWs(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [], { perMessageDeflate: false, headers });
    let upgrade;
    ws.once('upgrade', (res) => (upgrade = res.headers));
    ws.once('open', () => resolve({ ws, headers: upgrade }));
    ws.once('unexpected-response', (_req, res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    ws.once('error', reject);
  });
}

function plugin(attrs) {
  return `limit-count: { ${Object.entries(attrs)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(', ')} }`;
}

/** A WebSocket route and a plain HTTP route. */
function routes(id, attrs, { frame = false, more = '' } = {}) {
  return `  - id: ${id}
    uri: /${id}/*
    enable_websocket: true
    upstream_id: up
    plugins:
      ${plugin(attrs)}
${frame ? '      websocket-size-limit: { client_max_payload: 65536 }\n' : ''}${more}  - id: ${id}-http
    uri: /${id}-http/*
    upstream_id: web
    plugins:
      ${plugin(attrs)}
`;
}

function withWeb(yaml, port) {
  return yaml.replace('routes:\n', `  - id: web\n    nodes: { "127.0.0.1:${port}": 1 }\nroutes:\n`);
}

function assertRefused(r, { limit, code = 503 } = {}) {
  assert.equal(r.status, code);
  assert.equal(r.headers['x-portcullis-error'], 'LIMIT_EXCEEDED');
  assert.match(r.headers['retry-after'], /^[1-9]\d*$/);
  if (limit !== undefined) {
    assert.equal(r.headers['x-ratelimit-limit'], String(limit));
    assert.equal(r.headers['x-ratelimit-remaining'], '0');
    assert.match(r.headers['x-ratelimit-reset'], /^\d+$/);
  }
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
      res.setHeader('x-ratelimit-limit', 'upstream');
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
            routes('three', { count: 3, time_window: 60 }),
            routes('frame', { count: 2, time_window: 60 }, { frame: true }),
            routes('short', { count: 2, time_window: 1, rejected_code: 429, rejected_msg: 'slow down' }),
            routes('slide', { count: 2, time_window: 1, window_type: 'sliding' }),
            routes('quiet', { count: 1, time_window: 60, show_limit_quota_header: false }),
            routes('ga', { count: 3, time_window: 60, group: 'shared' }),
            routes('gb', { count: 3, time_window: 60, group: 'shared' }),
            routes('tenant', { count: 1, time_window: 60, key: 'http_x_tenant' }),
            routes('everyone', { count: 2, time_window: 60, key_type: 'constant', key: 'all' }),
          ].join(''),
        ),
        web.port,
      ),
    );
  });
  after(async () => gw?.close());

  test('count 3: 3 handshakes open with X-RateLimit-* on the 101 (tunnel), the 4th is refused with Retry-After and Remaining 0', async () => {
    const before = upstream.handshakes.length;
    const rs = [];
    for (let i = 0; i < 4; i++) rs.push(await openWs(`${gw.ws}/three/echo`));
    assert.deepEqual(
      rs.slice(0, 3).map((r) => [!!r.ws, r.headers['x-ratelimit-limit'], r.headers['x-ratelimit-remaining']]),
      [
        [true, '3', '2'],
        [true, '3', '1'],
        [true, '3', '0'],
      ],
    );
    for (const r of rs.slice(0, 3)) {
      const reset = Number(r.headers['x-ratelimit-reset']);
      assert.ok(reset > 0 && reset <= 60, `reset ${reset}`);
    }
    assertRefused(rs[3], { limit: 3 });
    assert.ok(Number(rs[3].headers['retry-after']) <= 60);
    assert.equal(upstream.handshakes.length - before, 3, 'the refused handshake never reached the upstream');
    for (const r of rs) r.ws?.close();
  });

  test('frame mode: the quota headers are on the 101 written by the terminating server', async () => {
    const a = await openWs(`${gw.ws}/frame/echo`);
    const b = await openWs(`${gw.ws}/frame/echo`);
    const c = await openWs(`${gw.ws}/frame/echo`);
    assert.equal(a.headers['x-ratelimit-remaining'], '1');
    assert.equal(b.headers['x-ratelimit-remaining'], '0');
    assert.equal(b.headers['x-ratelimit-limit'], '2');
    assertRefused(c, { limit: 2 });
    a.ws.send('hi');
    const [msg] = await new Promise((r) => a.ws.once('message', (...m) => r(m)));
    assert.equal(msg.toString(), 'hi');
    a.ws.close();
    b.ws.close();
  });

  test('plain HTTP: exact count, the quota headers replace the upstream\'s, rejected_code and rejected_msg apply; the window resets', async () => {
    const rs = [];
    for (let i = 0; i < 3; i++) rs.push(await get(`${gw.http}/short-http/x`));
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 429]);
    assert.equal(rs[0].headers['x-ratelimit-limit'], '2');
    assert.equal(rs[0].headers['x-ratelimit-remaining'], '1');
    assert.equal(rs[1].headers['x-ratelimit-remaining'], '0');
    assertRefused(rs[2], { limit: 2, code: 429 });
    assert.equal(JSON.parse(rs[2].body).error.message, 'slow down');
    await sleep(Number(rs[2].headers['x-ratelimit-reset']) * 1000 + 50);
    const again = await get(`${gw.http}/short-http/x`);
    assert.equal(again.status, 200);
    assert.equal(again.headers['x-ratelimit-remaining'], '1');
  });

  test('an SSE stream counts once and carries the quota headers on its head', async () => {
    const a = await get(`${gw.http}/three-http/sse`, { accept: 'text/event-stream' });
    assert.equal(a.status, 200);
    assert.match(a.headers['content-type'], /text\/event-stream/);
    assert.equal(a.headers['x-ratelimit-remaining'], '2');
    assert.match(a.body, /data: one/);
  });

  test('sliding window: 2 per second, refused, then admitted again once the estimate has slid', async () => {
    const rs = [];
    for (let i = 0; i < 3; i++) rs.push(await get(`${gw.http}/slide-http/x`));
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 503]);
    assertRefused(rs[2], { limit: 2 });
    const ok = await eventually(async () => (await get(`${gw.http}/slide-http/x`)).status === 200, { tries: 40, every: 100 });
    assert.ok(ok, 'admitted again within the sliding window');
  });

  test('show_limit_quota_header false: no X-RateLimit-* headers, Retry-After still on the refusal', async () => {
    const a = await get(`${gw.http}/quiet-http/x`);
    assert.equal(a.status, 200);
    assert.equal(a.headers['x-ratelimit-limit'], 'upstream', 'the upstream\'s own header untouched');
    assert.equal(a.headers['x-ratelimit-remaining'], undefined);
    const b = await get(`${gw.http}/quiet-http/x`);
    assertRefused(b);
    assert.equal(b.headers['x-ratelimit-remaining'], undefined);
  });

  test('group: routes in one group share the counter; a route is otherwise its own scope', async () => {
    const a1 = await openWs(`${gw.ws}/ga/echo`);
    const b1 = await get(`${gw.http}/gb-http/x`);
    const a2 = await get(`${gw.http}/ga-http/x`);
    const b2 = await openWs(`${gw.ws}/gb/echo`);
    assert.ok(a1.ws);
    assert.equal(a1.headers['x-ratelimit-remaining'], '2');
    assert.equal(b1.headers['x-ratelimit-remaining'], '1');
    assert.equal(a2.headers['x-ratelimit-remaining'], '0');
    assertRefused(b2, { limit: 3 });
    a1.ws.close();
    // A route outside the group has its own counter.
    assert.equal((await get(`${gw.http}/three-http/x`)).status, 200);
  });

  test('an untrusted client rotating X-Forwarded-For stays one key; a header key counts per value', async () => {
    const rs = [];
    for (let i = 0; i < 4; i++) {
      rs.push(await get(`${gw.http}/tenant-http/x`, { 'x-forwarded-for': `203.0.113.${i + 1}`, 'x-real-ip': `198.51.100.${i}` }));
    }
    // key http_x_tenant is empty: falls back to remote_addr, the socket address.
    assert.deepEqual(rs.map((r) => r.status), [200, 503, 503, 503]);
    assert.equal((await get(`${gw.http}/tenant-http/x`, { 'x-tenant': 'a' })).status, 200);
    assert.equal((await get(`${gw.http}/tenant-http/x`, { 'x-tenant': 'b' })).status, 200);
    assert.equal((await get(`${gw.http}/tenant-http/x`, { 'x-tenant': 'a' })).status, 503);
  });

  test('key_type constant: one counter for every client', async () => {
    const rs = [];
    for (const t of ['a', 'b', 'c']) rs.push(await get(`${gw.http}/everyone-http/x`, { 'x-tenant': t }));
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 503]);
  });

  test('config errors are refused at load', async () => {
    await assert.rejects(startGateway(config(upstream.port, routes('bad', { count: 1, time_window: 60, key: 'nope' }))), /unknown variable/);
    await assert.rejects(startGateway(config(upstream.port, routes('bad', { count: 1, time_window: 60, window_type: 'rolling' }))));
    await assert.rejects(startGateway(config(upstream.port, routes('bad', { count: 1, time_window: 60, redis_host: '127.0.0.1' }))), /policy is local/);
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

  const attrs = (more = {}) => ({ count: 3, time_window: 60, policy: 'redis', redis_host: '127.0.0.1', redis_port: redis.port, redis_timeout: 300, ...more });

  test('two gateways sharing Redis enforce one count: 3 admitted across both, the 4th refused with Remaining 0; groups share', async () => {
    const yaml = withWeb(config(upstream.port, routes('shared', attrs()) + routes('g1', attrs({ group: 'g' })) + routes('g2', attrs({ group: 'g' }))), web.port);
    const [g1, g2] = await Promise.all([startGateway(yaml), startGateway(yaml)]);
    try {
      const a = await openWs(`${g1.ws}/shared/echo`);
      const b = await openWs(`${g2.ws}/shared/echo`);
      const c = await get(`${g1.http}/shared-http/x`);
      assert.equal(c.status, 200, 'the HTTP route is a different route: its own counter');
      const d = await openWs(`${g1.ws}/shared/echo`);
      const e = await openWs(`${g2.ws}/shared/echo`);
      assert.deepEqual([a, b, d].map((r) => r.headers['x-ratelimit-remaining']), ['2', '1', '0']);
      assertRefused(e, { limit: 3 });
      const keys = await inspect.keys('portcullis:count:*');
      assert.ok(keys.some((k) => k.includes('route:shared:127.0.0.1')), keys.join(' '));
      for (const r of [a, b, d]) r.ws.close();

      const gs = [await get(`${g1.http}/g1-http/x`), await openWs(`${g2.ws}/g2/echo`), await get(`${g2.http}/g2-http/x`), await get(`${g1.http}/g1-http/x`)];
      assert.deepEqual(gs.map((r) => r.status ?? 101), [200, 101, 200, 503]);
      assertRefused(gs[3], { limit: 3 });
      gs[1].ws.close();
      assert.ok((await inspect.keys('portcullis:count:*')).some((k) => k.includes('group:g:127.0.0.1')));
    } finally {
      await Promise.all([g1.close(), g2.close()]);
    }
  });

  test('Redis down: 503 LIMIT_STORE_UNAVAILABLE with Retry-After at once, or a local counter with allow_degradation; limits resume', async () => {
    const g = await startGateway(withWeb(config(upstream.port, routes('strict', attrs()) + routes('lenient', attrs({ allow_degradation: true }))), web.port));
    try {
      assert.equal((await get(`${g.http}/strict-http/x`)).status, 200);
      await redis.stop();
      try {
        const r = await get(`${g.http}/strict-http/x`);
        assert.equal(r.status, 503);
        assert.equal(r.headers['x-portcullis-error'], 'LIMIT_STORE_UNAVAILABLE');
        assert.match(r.headers['retry-after'], /^[1-9]\d*$/);
        const ws = await openWs(`${g.ws}/strict/echo`);
        assert.equal(ws.headers['x-portcullis-error'], 'LIMIT_STORE_UNAVAILABLE');
        const degraded = [];
        for (let i = 0; i < 4; i++) degraded.push(await get(`${g.http}/lenient-http/x`));
        assert.deepEqual(degraded.map((x) => x.status), [200, 200, 200, 503]);
        assertRefused(degraded[3], { limit: 3 });
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
