// Prometheus metrics as a scraper sees them: exact sample values after a scripted
// scenario (3 connections accepted, 2 refused by key-auth, 1 by limit-conn, 4 messages
// dropped by websocket-validator), through Gateway.metrics.render() and through the
// separate metrics listener; tunnel-mode and SSE counts; the consumer label capped at
// max_consumer_labels; removed routes' series pruned after a reload; metrics.enabled
// false; the error-code -> class table covering the whole catalogue (and
// docs/metrics.md agreeing with it); the Grafana dashboard querying only real metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { channel } from 'node:diagnostics_channel';
import { closed, collect, config, eventually, get, httpUpstream, openWs, startGateway, wsUpstream } from './helpers.js';
import { join } from 'node:path';
import { ERRORS, loadConfigText } from '../dist/index.js';
import { freePort } from './redis-helpers.js';
import { CLOSE_CLASSES, REASON_CLASS, REASON_CLASSES, closeClass, reasonClass } from '../dist/observability/reasons.js';

const ALICE = 'alice-metrics-key-0123456789';
const BOB = 'bob-metrics-key-0123456789';
const CAROL = 'carol-metrics-key-0123456789';

/** Parse the Prometheus text format: [{ name, labels, value }]. */
function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels = {};
    if (m[2]) for (const [, k, v] of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the sample with exactly these labels (undefined when absent). */
function sample(samples, name, labels) {
  const want = JSON.stringify(Object.entries(labels).sort());
  const s = samples.find((x) => x.name === name && JSON.stringify(Object.entries(x.labels).sort()) === want);
  return s?.value;
}

async function scrape(gw) {
  const { contentType, body } = await gw.metrics.render();
  assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  return { body, samples: parse(body) };
}

let up;
let sseUp;

before(async () => {
  up = await wsUpstream();
  sseUp = await httpUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: one\n\n');
    // Held open until the client leaves.
  });
});

after(async () => {
  await up.close();
  await sseUp.close();
});

const consumers = `consumers:
  - username: alice
    plugins:
      key-auth: { key: ${ALICE} }
  - username: bob
    plugins:
      key-auth: { key: ${BOB} }
  - username: carol
    plugins:
      key-auth: { key: ${CAROL} }
`;

test('scripted scenario: 3 accepted, 2 refused by auth, 1 by limit, 4 messages dropped; exact samples, render() and the listener', async () => {
  const routes = `  - id: chat
    uri: /chat
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
      limit-conn: { conn: 3, burst: 0, default_conn_delay: 0.1 }
      websocket-validator:
        on_invalid: drop
        error_message: invalid
        client:
          schema: { type: object, required: [type] }
`;
  const g = await startGateway(
    config(up.port, routes, '').replace('routes:', `${consumers}metrics:\n  listen: { host: 127.0.0.1, port: 0 }\nroutes:`),
  );
  const conns = [];
  const metricsPort = g.gw.metrics.address().port;
  try {
    const url = `${g.ws}/chat`;
    for (let i = 0; i < 3; i++) {
      const r = await openWs(url, { headers: { apikey: ALICE } });
      assert.ok(r.ws, `connection ${i} accepted`);
      conns.push(r.ws);
    }
    assert.equal((await openWs(url)).status, 401);
    assert.equal((await openWs(url, { headers: { apikey: 'not-a-key-0123456789' } })).status, 401);
    assert.equal((await openWs(url, { headers: { apikey: ALICE } })).status, 503);

    // Four invalid messages dropped (each answered with the error message), two valid ones echoed.
    const ws = conns[0];
    const replies = collect(ws, 6);
    for (const m of ['nope', 'bad{', '[1]', '{"x":1}']) ws.send(m);
    ws.send('{"type":"a"}');
    ws.send('{"type":"bb"}');
    const got = await replies;
    assert.deepEqual(got.filter((m) => m === 'invalid').length, 4);
    assert.deepEqual(got.filter((m) => m !== 'invalid'), ['{"type":"a"}', '{"type":"bb"}']);

    const { samples, body } = await scrape(g.gw);
    const route = 'chat';
    assert.equal(sample(samples, 'portcullis_connections_active', { route, protocol: 'websocket' }), 3);
    assert.equal(sample(samples, 'portcullis_connections_active', { route, protocol: 'sse' }), 0);
    assert.equal(sample(samples, 'portcullis_connections_opened_total', { route, protocol: 'websocket' }), 3);
    assert.equal(sample(samples, 'portcullis_handshakes_total', { route, protocol: 'websocket', outcome: 'accepted', reason: 'none' }), 3);
    assert.equal(sample(samples, 'portcullis_handshakes_total', { route, protocol: 'websocket', outcome: 'rejected', reason: 'auth' }), 2);
    assert.equal(sample(samples, 'portcullis_handshakes_total', { route, protocol: 'websocket', outcome: 'rejected', reason: 'limit' }), 1);
    assert.equal(sample(samples, 'portcullis_limit_rejections_total', { route, plugin: 'limit-conn', code: 'LIMIT_EXCEEDED' }), 1);
    const rejected = samples.filter((s) => s.name === 'portcullis_message_rejections_total');
    assert.equal(rejected.reduce((n, s) => n + s.value, 0), 4);
    for (const s of rejected) {
      assert.equal(s.labels.route, route);
      assert.equal(s.labels.plugin, 'websocket-validator');
      assert.equal(s.labels.direction, 'client');
    }
    assert.equal(sample(samples, 'portcullis_message_rejections_total', { route, plugin: 'websocket-validator', direction: 'client', reason: 'json' }), 2);
    assert.equal(sample(samples, 'portcullis_message_rejections_total', { route, plugin: 'websocket-validator', direction: 'client', reason: 'schema' }), 2);
    // Received from the client: all six; forwarded: the two valid ones (frame mode counts payload bytes).
    assert.equal(sample(samples, 'portcullis_messages_total', { route, direction: 'client' }), 6);
    assert.equal(sample(samples, 'portcullis_messages_total', { route, direction: 'upstream' }), 2);
    const valid = Buffer.byteLength('{"type":"a"}{"type":"bb"}');
    assert.equal(sample(samples, 'portcullis_bytes_total', { route, protocol: 'websocket', direction: 'client' }), valid);
    assert.equal(sample(samples, 'portcullis_bytes_total', { route, protocol: 'websocket', direction: 'upstream' }), valid);
    assert.equal(sample(samples, 'portcullis_upstream_connect_seconds_count', { route, protocol: 'websocket' }), 3);
    assert.equal(sample(samples, 'portcullis_upstream_handshake_seconds_count', { route }), 3);
    assert.equal(sample(samples, 'portcullis_upstream_handshake_seconds_bucket', { route, le: '+Inf' }), 3);
    // The client's view of the handshake: 3 accepted, 3 refused (2 auth, 1 limit), each observed once.
    assert.equal(sample(samples, 'portcullis_handshake_seconds_count', { route, protocol: 'websocket', outcome: 'accepted' }), 3);
    assert.equal(sample(samples, 'portcullis_handshake_seconds_bucket', { route, protocol: 'websocket', outcome: 'accepted', le: '+Inf' }), 3);
    assert.equal(sample(samples, 'portcullis_handshake_seconds_count', { route, protocol: 'websocket', outcome: 'rejected' }), 3);
    // A client handshake includes the upstream's: its time is at least the upstream handshake's.
    assert.ok(
      sample(samples, 'portcullis_handshake_seconds_sum', { route, protocol: 'websocket', outcome: 'accepted' }) >=
        sample(samples, 'portcullis_upstream_handshake_seconds_sum', { route }),
    );
    // Node's process metrics, and no credential or client address anywhere.
    assert.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'));
    assert.ok(samples.some((s) => s.name === 'nodejs_heap_size_used_bytes'));
    assert.ok(sample(samples, 'portcullis_build_info', { version: JSON.parse(readFileSync(new URL('../package.json', import.meta.url))).version }) === 1);
    for (const secret of [ALICE, 'not-a-key-0123456789', '127.0.0.1']) assert.ok(!body.includes(secret), `${secret} in the metrics`);

    // The separate listener serves the same, and only GET /metrics.
    const addr = g.gw.metrics.address();
    assert.ok(addr && addr.port > 0);
    const res = await get(`http://127.0.0.1:${addr.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/plain/);
    const viaListener = parse(res.body);
    assert.equal(sample(viaListener, 'portcullis_connections_active', { route, protocol: 'websocket' }), 3);
    assert.equal(sample(viaListener, 'portcullis_handshakes_total', { route, protocol: 'websocket', outcome: 'rejected', reason: 'auth' }), 2);
    assert.equal(sample(viaListener, 'portcullis_messages_total', { route, direction: 'client' }), 6);
    for (const path of ['/', '/metrics/x', '/admin/status', '/metrics/../metrics2']) {
      const r = await get(`http://127.0.0.1:${addr.port}${path}`);
      assert.equal(r.status, 404, path);
      assert.equal(JSON.parse(r.body).error.code, 'ROUTE_NOT_FOUND');
    }
    const post = await fetch(`http://127.0.0.1:${addr.port}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 404);
    await post.text();

    // The three end (client close 1000): counted as closed, their messages kept in the totals.
    for (const c of conns) c.close(1000, 'bye');
    await Promise.all(conns.map((c) => closed(c)));
    await eventually(() => g.gw.connections.size === 0);
    const after = (await scrape(g.gw)).samples;
    assert.equal(sample(after, 'portcullis_connections_active', { route, protocol: 'websocket' }), 0);
    assert.equal(sample(after, 'portcullis_connections_closed_total', { route, protocol: 'websocket', close_class: 'normal', closed_by: 'client' }), 3);
    assert.equal(sample(after, 'portcullis_messages_total', { route, direction: 'client' }), 6);
    assert.equal(sample(after, 'portcullis_messages_total', { route, direction: 'upstream' }), 2);
    assert.equal(sample(after, 'portcullis_bytes_total', { route, protocol: 'websocket', direction: 'client' }), valid);

    // The access log has a line for each of the six handshakes.
    const access = g.log.access().filter((l) => l.route === route);
    assert.equal(access.length, 6);
    const ok = access.filter((l) => l.status === 101);
    assert.equal(ok.length, 3);
    for (const l of ok) {
      assert.equal(l.consumer, 'alice');
      assert.equal(l.close_code, 1000);
      assert.equal(l.closed_by, 'client');
      assert.equal(l.error, null);
      assert.equal(l.reason, null);
    }
    assert.deepEqual(ok.map((l) => l.messages_in).sort(), [0, 0, 6]);
    const auth = access.filter((l) => l.status === 401);
    assert.deepEqual(auth.map((l) => l.error).sort(), ['AUTH_INVALID', 'AUTH_MISSING']);
    for (const l of auth) {
      assert.equal(l.reason, 'auth');
      assert.equal(l.rejected_by, 'key-auth');
      assert.equal(l.consumer, null);
    }
    const limit = access.find((l) => l.status === 503);
    assert.equal(limit.error, 'LIMIT_EXCEEDED');
    assert.equal(limit.reason, 'limit');
    assert.equal(limit.rejected_by, 'limit-conn');
    assert.equal(limit.consumer, 'alice');
    for (const secret of [ALICE, 'not-a-key-0123456789']) assert.ok(!g.log.raw().includes(secret), 'no key in the log');
  } finally {
    for (const c of conns) c.terminate();
    await g.close();
  }
  // Closed with the gateway: the listener is gone.
  await assert.rejects(get(`http://127.0.0.1:${metricsPort}/metrics`), { code: 'ECONNREFUSED' });
});

test('handshake rejections by class from real traffic (authz, origin, upstream, limit by an unreachable store) and store errors counted', async () => {
  const dead = await freePort();
  const routes = `  - id: staff
    uri: /staff
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
      consumer-restriction: { whitelist: [alice] }
  - id: pages
    uri: /pages
    enable_websocket: true
    upstream_id: up
    plugins:
      origin-restriction: { allow_origins: ["https://app.example"] }
  - id: gone
    uri: /gone
    enable_websocket: true
    upstream_id: dead
  - id: stored
    uri: /stored
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-conn: { conn: 5, burst: 0, default_conn_delay: 0.1, policy: redis, redis_host: 127.0.0.1, redis_port: ${dead}, redis_timeout: 300 }
`;
  const g = await startGateway(
    config(up.port, routes, '').replace('routes:', `${consumers}routes:`).replace('upstreams:\n', `upstreams:\n  - id: dead\n    nodes: { "127.0.0.1:${dead}": 1 }\n`),
  );
  try {
    assert.equal((await openWs(`${g.ws}/staff`, { headers: { apikey: BOB } })).status, 403);
    assert.ok((await openWs(`${g.ws}/staff`, { headers: { apikey: ALICE } })).ws, 'alice is staff');
    assert.equal((await openWs(`${g.ws}/pages`, { headers: { origin: 'https://evil.example' } })).status, 403);
    assert.equal((await openWs(`${g.ws}/gone`)).status, 502);
    assert.equal((await openWs(`${g.ws}/stored`)).status, 503);
    assert.equal((await openWs(`${g.ws}/stored`)).status, 503);
    const { samples } = await scrape(g.gw);
    const rejected = (route, reason) => sample(samples, 'portcullis_handshakes_total', { route, protocol: 'websocket', outcome: 'rejected', reason });
    assert.equal(rejected('staff', 'authz'), 1);
    assert.equal(sample(samples, 'portcullis_handshakes_total', { route: 'staff', protocol: 'websocket', outcome: 'accepted', reason: 'none' }), 1);
    assert.equal(rejected('pages', 'origin'), 1);
    assert.equal(rejected('gone', 'upstream'), 1);
    assert.equal(rejected('stored', 'limit'), 2);
    assert.equal(sample(samples, 'portcullis_limit_rejections_total', { route: 'stored', plugin: 'limit-conn', code: 'LIMIT_STORE_UNAVAILABLE' }), 2);
    const errors = samples.filter((x) => x.name === 'portcullis_store_errors_total' && x.labels.address === `127.0.0.1:${dead}`);
    assert.ok(errors.length > 0, 'the unreachable Redis is counted');
    for (const e of errors) assert.equal(e.labels.store, 'redis');
    assert.ok(errors.reduce((n, e) => n + e.value, 0) >= 2, 'one error at least per refused handshake');
  } finally {
    await g.close();
  }
});

test('tunnel mode counts messages and frame bytes in both directions while live; SSE streams are counted too', async () => {
  const routes = `  - id: tunnel
    uri: /t
    enable_websocket: true
    upstream_id: up
  - id: events
    uri: /events
    upstream: { nodes: { "127.0.0.1:${sseUp.port}": 1 } }
`;
  const g = await startGateway(config(up.port, routes));
  try {
    const { ws } = await openWs(`${g.ws}/t`);
    const echoes = collect(ws, 3);
    for (let i = 0; i < 3; i++) ws.send('hello');
    await echoes;
    // Live: masked client frames (2 + 4 + 5 bytes), unmasked upstream frames (2 + 5 bytes).
    let s = (await scrape(g.gw)).samples;
    assert.equal(sample(s, 'portcullis_connections_active', { route: 'tunnel', protocol: 'websocket' }), 1);
    assert.equal(sample(s, 'portcullis_messages_total', { route: 'tunnel', direction: 'client' }), 3);
    assert.equal(sample(s, 'portcullis_messages_total', { route: 'tunnel', direction: 'upstream' }), 3);
    assert.equal(sample(s, 'portcullis_bytes_total', { route: 'tunnel', protocol: 'websocket', direction: 'client' }), 3 * 11);
    assert.equal(sample(s, 'portcullis_bytes_total', { route: 'tunnel', protocol: 'websocket', direction: 'upstream' }), 3 * 7);

    // An SSE stream: active while open, then closed by the client (no close code: class none).
    const ac = new AbortController();
    const res = await fetch(`${g.http}/events`, { headers: { accept: 'text/event-stream' }, signal: ac.signal });
    const reader = res.body.getReader();
    await reader.read();
    s = (await scrape(g.gw)).samples;
    assert.equal(sample(s, 'portcullis_connections_active', { route: 'events', protocol: 'sse' }), 1);
    assert.equal(sample(s, 'portcullis_handshakes_total', { route: 'events', protocol: 'sse', outcome: 'accepted', reason: 'none' }), 1);
    assert.equal(sample(s, 'portcullis_bytes_total', { route: 'events', protocol: 'sse', direction: 'upstream' }), Buffer.byteLength('data: one\n\n'));
    ac.abort();
    await reader.read().catch(() => {});

    ws.close(1000);
    await closed(ws);
    await eventually(() => g.gw.connections.size === 0);
    s = (await scrape(g.gw)).samples;
    assert.equal(sample(s, 'portcullis_connections_closed_total', { route: 'tunnel', protocol: 'websocket', close_class: 'normal', closed_by: 'client' }), 1);
    assert.equal(sample(s, 'portcullis_connections_closed_total', { route: 'events', protocol: 'sse', close_class: 'none', closed_by: 'client' }), 1);
    assert.equal(sample(s, 'portcullis_messages_total', { route: 'tunnel', direction: 'client' }), 3);
    // The close frames went through too: 2 + 4 + 2 (code) from the client, 2 + 2 back.
    assert.equal(sample(s, 'portcullis_bytes_total', { route: 'tunnel', protocol: 'websocket', direction: 'client' }), 3 * 11 + 8);
    assert.equal(sample(s, 'portcullis_bytes_total', { route: 'tunnel', protocol: 'websocket', direction: 'upstream' }), 3 * 7 + 4);
    assert.equal(sample(s, 'portcullis_connections_active', { route: 'tunnel', protocol: 'websocket' }), 0);
    // Requests before any route: route "" and a reason class, never the path.
    await get(`${g.http}/no/such/path?apikey=${ALICE}`);
    const { samples, body } = await scrape(g.gw);
    assert.equal(sample(samples, 'portcullis_handshakes_total', { route: '', protocol: 'http', outcome: 'rejected', reason: 'validation' }), 1);
    assert.ok(!body.includes('/no/such/path') && !body.includes(ALICE));
  } finally {
    await g.close();
  }
});

test('the consumer label is off by default, and capped at max_consumer_labels (the rest: other)', async () => {
  const routes = `  - id: keyed
    uri: /k
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
  - id: open
    uri: /o
    enable_websocket: true
    upstream_id: up
`;
  const base = config(up.port, routes).replace('routes:', `${consumers}routes:`);
  const plain = await startGateway(base);
  try {
    const { ws } = await openWs(`${plain.ws}/k`, { headers: { apikey: ALICE } });
    const { samples } = await scrape(plain.gw);
    assert.equal(sample(samples, 'portcullis_connections_active', { route: 'keyed', protocol: 'websocket' }), 1);
    assert.ok(!samples.some((s) => 'consumer' in s.labels));
    ws.terminate();
  } finally {
    await plain.close();
  }

  const g = await startGateway(base.replace('routes:', 'metrics: { consumer_label: true, max_consumer_labels: 2 }\nroutes:'));
  const conns = [];
  try {
    for (const key of [ALICE, BOB, CAROL, CAROL]) conns.push((await openWs(`${g.ws}/k`, { headers: { apikey: key } })).ws);
    conns.push((await openWs(`${g.ws}/o`)).ws);
    const { samples, body } = await scrape(g.gw);
    const active = (consumer, route = 'keyed') => sample(samples, 'portcullis_connections_active', { route, protocol: 'websocket', consumer });
    assert.equal(active('alice'), 1);
    assert.equal(active('bob'), 1);
    assert.equal(active('other'), 2);
    assert.equal(active('', 'open'), 1);
    assert.ok(!body.includes('carol'));
    assert.equal(sample(samples, 'portcullis_connections_opened_total', { route: 'keyed', protocol: 'websocket', consumer: 'other' }), 2);
    const consumersSeen = new Set(samples.filter((s) => 'consumer' in s.labels).map((s) => s.labels.consumer));
    assert.deepEqual([...consumersSeen].sort(), ['', 'alice', 'bob', 'other']);
  } finally {
    for (const c of conns) c.terminate();
    await g.close();
  }
});

test('after a reload, the series of a removed route go away (also when its last connection ends later)', async () => {
  const route = (id) => `  - id: ${id}\n    uri: /${id}\n    enable_websocket: true\n    upstream_id: up\n`;
  const g = await startGateway(config(up.port, route('kept') + route('gone')));
  try {
    await get(`${g.http}/gone`);
    const { ws } = await openWs(`${g.ws}/gone`);
    let { body } = await scrape(g.gw);
    assert.ok(body.includes('route="gone"'));
    const next = await loadConfigText(config(up.port, route('kept')), join(g.dir, 'config.yaml'), {
      registry: g.gw.registry,
      env: process.env,
      previous: g.gw.config,
    });
    await g.gw.reload(next);
    // The reload closes the removed route's connection (1012); whenever it finishes, its series go.
    assert.equal((await closed(ws)).code, 1012);
    await eventually(() => g.gw.connections.size === 0);
    ({ body } = await scrape(g.gw));
    assert.ok(!body.includes('route="gone"'), body.split('\n').filter((l) => l.includes('route="gone"')).join('\n'));
    assert.ok(body.includes('portcullis_connections_active{route="kept",protocol="websocket"} 0'));
  } finally {
    await g.close();
  }
});

test('metrics.enabled false: no metrics object, no listener, nobody subscribed', async () => {
  const g = await startGateway(config(up.port, `  - id: r\n    uri: /r\n    enable_websocket: true\n    upstream_id: up\n`).replace('routes:', 'metrics: { enabled: false, listen: { host: 127.0.0.1, port: 0 } }\nroutes:'));
  try {
    assert.equal(g.gw.metrics, undefined);
    // Only metrics listen to upstream connections: publishing stays free.
    assert.equal(channel('portcullis:upstream:connected').hasSubscribers, false);
    const { ws } = await openWs(`${g.ws}/r`);
    ws.terminate();
  } finally {
    await g.close();
  }
});

test('every catalogue code maps to a rejection class, and docs/metrics.md shows the same table', () => {
  const doc = readFileSync(new URL('../docs/metrics.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('### Rejection classes'), doc.indexOf('### Close classes'));
  const classRows = section.split('\n').filter((l) => REASON_CLASSES.some((c) => l.startsWith(`| \`${c}\` |`)));
  assert.equal(classRows.length, REASON_CLASSES.length, 'one row per class in docs/metrics.md');
  for (const code of Object.keys(ERRORS)) {
    assert.ok(Object.hasOwn(REASON_CLASS, code), `${code} has no class in src/observability/reasons.ts`);
    const cls = REASON_CLASS[code];
    assert.ok(REASON_CLASSES.includes(cls), `${code}: ${cls}`);
    assert.equal(reasonClass(code), cls);
    const rows = classRows.filter((l) => l.includes(`\`${code}\``));
    assert.equal(rows.length, 1, `${code} must be in exactly one row of the class table in docs/metrics.md`);
    const row = rows[0];
    assert.ok(row.startsWith(`| \`${cls}\` |`), `${code} is under ${row.split('|')[1].trim()} in docs/metrics.md, ${cls} in the code`);
  }
  for (const code of Object.keys(REASON_CLASS)) assert.ok(Object.hasOwn(ERRORS, code), `${code} is not in the catalogue`);
  assert.equal(reasonClass('SOMETHING_A_PLUGIN_MADE_UP'), 'other');
  const closes = { 1000: 'normal', 1001: 'going_away', 1002: 'protocol', 1006: 'abnormal', 1008: 'policy', 1011: 'error', 1014: 'error', 4001: 'application', 1005: 'other', [undefined]: 'other' };
  for (const [code, cls] of Object.entries(closes)) assert.equal(closeClass(code === 'undefined' ? undefined : Number(code)), cls);
  for (const cls of CLOSE_CLASSES) assert.ok(doc.includes(`\`${cls}\``), `close class ${cls} documented`);
});

test('docs/grafana-dashboard.json queries only metrics the gateway exposes', async () => {
  const dash = JSON.parse(readFileSync(new URL('../docs/grafana-dashboard.json', import.meta.url), 'utf8'));
  const exprs = [];
  const walk = (panels) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) exprs.push(t.expr);
      if (p.panels) walk(p.panels);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating.list) if (v.type === 'query') exprs.push(v.query.query ?? v.query);
  assert.ok(exprs.length >= 20);
  const g = await startGateway(config(up.port, `  - id: r\n    uri: /r\n    upstream_id: up\n`));
  try {
    const { body } = await g.gw.metrics.render();
    const exposed = new Set([...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) =>
      type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name]));
    for (const expr of exprs) {
      for (const [name] of expr.matchAll(/\b(?:portcullis|process|nodejs)_[a-z0-9_]+/g)) assert.ok(exposed.has(name), `${name} (in ${expr}) is not exposed`);
    }
  } finally {
    await g.close();
  }
});
