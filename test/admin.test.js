// The admin API as an operator observes it: X-API-KEY on every call (none or a
// wrong one: 401, and the key never logged), each endpoint, the live connection
// list and its filters, live disconnect by consumer, route and id (WebSocket 1008
// `revoked`, SSE stream ended, other connections untouched), the config without
// secrets, config replacement and reload, bad requests, the loopback-without-key
// rule at start, and the relay across `gateway.workers`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { closed, collect, eventually, httpUpstream, openWs, startGateway, wsUpstream } from './helpers.js';
import { freePort } from './redis-helpers.js';
import { adminCall, chatConfig, startCli } from './admin-helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const ADMIN_KEY = 'adm-0123456789abcdef-secret';
const ALICE = 'alice-key-0123456789';
const BOB = 'bob-key-0123456789';
const JWT_SECRET = 'a-jwt-secret-that-is-long-enough-0123';

let ws;
let sse;
/** SSE requests the upstream holds open now. */
const sseOpen = new Set();
let g;
let adminPort;
const call = (method, path, opts = {}) => adminCall(adminPort, method, path, { key: ADMIN_KEY, ...opts });

function gatewayYaml(extraRoutes = '') {
  return `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  log: { level: debug }
  max_pending_handshakes_per_ip: 0
upstreams:
  - id: up
    nodes: { "127.0.0.1:${ws.port}": 1 }
  - id: sse
    nodes: { "127.0.0.1:${sse.port}": 1 }
    timeout: { connect: 2, send: 5, read: 5 }
routes:
  - id: chat
    uri: /chat
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
  - id: feed
    uri: /feed
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
      websocket-size-limit: { client_max_payload: 65536 }
  - id: events
    uri: /events
    upstream_id: sse
    plugins:
      key-auth: {}
  - id: tokens
    uri: /tokens
    enable_websocket: true
    upstream_id: up
    plugins:
      jwt-auth: {}
${extraRoutes}consumers:
  - username: alice
    plugins:
      key-auth: { key: ${ALICE} }
  - username: bob
    plugins:
      key-auth: { key: ${BOB} }
  - username: jwtuser
    plugins:
      jwt-auth: { key: jwtuser, secret: ${JWT_SECRET} }
admin:
  listen: { host: 127.0.0.1, port: 0 }
  key: ${ADMIN_KEY}
`;
}

before(async () => {
  ws = await wsUpstream();
  sse = await httpUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: hello\n\n');
    // kept open until the gateway ends it
    sseOpen.add(req);
    req.socket.once('close', () => sseOpen.delete(req));
  });
  g = await startGateway(gatewayYaml());
  adminPort = g.gw.adminAddress().port;
});

after(async () => {
  await g.close();
  await ws.close();
  await sse.close();
});

/** Open a WebSocket as `key`'s consumer and check it echoes. */
async function connect(path, apikey) {
  const r = await openWs(`${g.ws}${path}`, { headers: { apikey } });
  assert.ok(r.ws, `opened ${path}: ${r.status} ${r.body}`);
  await assertEchoes(r.ws);
  return r.ws;
}

async function assertEchoes(socket, text = 'ping') {
  const got = collect(socket, 1);
  socket.send(text);
  assert.deepEqual(await got, [text]);
}

/** Open an SSE stream; resolves once the first event arrived. */
function openSse(path, apikey) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: g.port, path, agent: false, headers: { apikey, accept: 'text/event-stream' } }, (res) => {
      const s = { status: res.statusCode, text: '', ended: false, res };
      res.setEncoding('utf8');
      res.on('data', (c) => {
        s.text += c;
        if (s.text.includes('hello')) resolve(s);
      });
      const end = () => {
        s.ended = true;
        resolve(s);
      };
      res.on('end', end);
      res.on('close', end);
      res.on('error', () => {});
    });
    req.on('error', reject);
  });
}

async function closeAll(...sockets) {
  for (const s of sockets) {
    if (s.readyState === s.OPEN) s.close();
    await closed(s);
  }
  await eventually(() => g.gw.connections.size === 0);
}

test('no key and a wrong key are 401 ADMIN_UNAUTHORIZED on every endpoint; the refusal is logged without the key', async () => {
  const WRONG = 'not-the-admin-key-at-all';
  const calls = [
    ['GET', '/admin/status'],
    ['GET', '/admin/connections'],
    ['DELETE', '/admin/connections?consumer=alice'],
    ['GET', '/admin/config'],
    ['PUT', '/admin/config', 'gateway: {}'],
    ['POST', '/admin/reload'],
    ['GET', '/metrics'],
    ['GET', '/admin/nowhere'],
  ];
  for (const [method, path, body] of calls) {
    for (const key of [undefined, WRONG, '']) {
      const r = await adminCall(adminPort, method, path, { key, body });
      assert.equal(r.status, 401, `${method} ${path} with ${key === undefined ? 'no key' : 'a wrong key'}`);
      assert.deepEqual(r.json, { error: { code: 'ADMIN_UNAUTHORIZED', message: 'Missing or invalid admin API key' } });
    }
  }
  const refused = g.log.lines.filter((l) => l.msg === 'admin call refused');
  assert.ok(refused.some((l) => l.reason === 'missing key' && l.path === '/admin/status'));
  assert.ok(refused.some((l) => l.reason === 'wrong key' && l.path === '/admin/config'));
  const raw = g.log.raw();
  assert.ok(!raw.includes(WRONG), 'the wrong key is not logged');
  assert.ok(!raw.includes(ADMIN_KEY), 'the admin key is not logged');
  // The refused DELETE did nothing.
  assert.ok(!g.log.lines.some((l) => l.msg === 'admin: connections revoked'));
});

test('the right key: status, connections, delete, config, reload and metrics answer', async () => {
  const s = await call('GET', '/admin/status');
  assert.equal(s.status, 200);
  assert.equal(s.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(s.json.pid, process.pid);
  assert.equal(typeof s.json.version, 'string');
  assert.equal(typeof s.json.uptime_s, 'number');
  assert.equal(s.json.workers, 1);
  assert.deepEqual(s.json.connections, { websocket: 0, sse: 0, total: 0, pending_handshakes: 0 });
  assert.deepEqual(s.json.stores, []);
  assert.equal(s.json.config.routes, 4);

  const l = await call('GET', '/admin/connections');
  assert.equal(l.status, 200);
  assert.deepEqual(l.json, { total: 0, truncated: false, connections: [] });

  const d = await call('DELETE', '/admin/connections?consumer=nobody');
  assert.equal(d.status, 200);
  assert.deepEqual(d.json, { closed: 0 }, 'no Redis: no broadcast field');

  const c = await call('GET', '/admin/config');
  assert.equal(c.status, 200);
  assert.equal(c.json.routes.length, 4);

  const p = await call('PUT', '/admin/config', { body: gatewayYaml(), headers: { 'content-type': 'application/yaml' } });
  assert.equal(p.status, 200, p.body);
  assert.equal(typeof p.json.routes, 'object');

  const r = await call('POST', '/admin/reload');
  assert.equal(r.status, 200, r.body);

  // Metrics are on by default: the admin listener serves them too.
  const m = await call('GET', '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  assert.match(m.body, /^portcullis_connections_active\{route="chat",protocol="websocket"\} \d+$/m);
});

test('unknown path 404, wrong method 405 with Allow, bad query or JSON 400, oversized body 413: JSON errors, never a stack', async () => {
  const nf = await call('GET', '/admin/nope');
  assert.equal(nf.status, 404);
  assert.equal(nf.json.error.code, 'ADMIN_NOT_FOUND');

  const m1 = await call('POST', '/admin/status');
  assert.equal(m1.status, 405);
  assert.equal(m1.headers.allow, 'GET');
  assert.equal(m1.json.error.code, 'ADMIN_METHOD_NOT_ALLOWED');
  const m2 = await call('PATCH', '/admin/connections');
  assert.equal(m2.status, 405);
  assert.equal(m2.headers.allow, 'GET, DELETE');
  const m3 = await call('GET', '/admin/reload');
  assert.equal(m3.headers.allow, 'POST');

  const badJson = await call('DELETE', '/admin/connections', { body: '{"consumer": ', headers: { 'content-type': 'application/json' } });
  assert.equal(badJson.status, 400);
  assert.deepEqual(badJson.json, { error: { code: 'ADMIN_BAD_REQUEST', message: 'the body is not valid JSON' } });

  const unknownParam = await call('GET', '/admin/connections?user=alice');
  assert.equal(unknownParam.status, 400);
  assert.equal(unknownParam.json.error.code, 'ADMIN_BAD_REQUEST');
  const badLimit = await call('GET', '/admin/connections?limit=0');
  assert.equal(badLimit.status, 400);

  const big = await call('PUT', '/admin/config', { body: `# ${'x'.repeat(4 * 1024 * 1024)}\n` });
  assert.equal(big.status, 413);
  assert.equal(big.json.error.code, 'ADMIN_BODY_TOO_LARGE');
  const bigDelete = await call('DELETE', '/admin/connections', { body: JSON.stringify({ consumer: 'x'.repeat(70 * 1024) }) });
  assert.equal(bigDelete.status, 413);

  const empty = await call('PUT', '/admin/config');
  assert.equal(empty.status, 400, 'an empty body is not a config');
  assert.equal(empty.json.error.code, 'ADMIN_BAD_REQUEST');

  for (const r of [nf, m1, badJson, unknownParam, big]) assert.ok(!/\bat .*\.js:\d+/.test(r.body), 'no stack trace');
});

test('GET /admin/connections lists live connections with route, protocol, mode, consumer, address, time and counters; filters by route and consumer', async () => {
  const a1 = await connect('/chat', ALICE);
  const a2 = await connect('/feed', ALICE);
  const b1 = await connect('/chat', BOB);
  const s = await openSse('/events', BOB);
  assert.equal(s.status, 200);
  try {
    const all = await call('GET', '/admin/connections');
    assert.equal(all.status, 200);
    assert.equal(all.json.total, 4);
    const byKey = (c) => `${c.route}/${c.consumer}`;
    assert.deepEqual(all.json.connections.map(byKey).sort(), ['chat/alice', 'chat/bob', 'events/bob', 'feed/alice']);
    const chatAlice = all.json.connections.find((c) => byKey(c) === 'chat/alice');
    assert.equal(chatAlice.protocol, 'websocket');
    assert.equal(chatAlice.mode, 'tunnel');
    assert.equal(chatAlice.client_ip, '127.0.0.1');
    assert.ok(!Number.isNaN(Date.parse(chatAlice.opened_at)));
    assert.match(chatAlice.id, /^[0-9a-f-]{36}$/);
    // The live counters: the echo of connect() went through it.
    assert.ok(chatAlice.bytes_in > 0 && chatAlice.bytes_out > 0, JSON.stringify(chatAlice));
    assert.equal(chatAlice.messages_in, 1);
    assert.equal(chatAlice.messages_out, 1);
    assert.equal(all.json.connections.find((c) => byKey(c) === 'feed/alice').mode, 'frame');
    const ev = all.json.connections.find((c) => c.route === 'events');
    assert.equal(ev.protocol, 'sse');
    assert.equal(ev.mode, undefined);

    const chat = await call('GET', '/admin/connections?route=chat');
    assert.deepEqual(chat.json.connections.map(byKey).sort(), ['chat/alice', 'chat/bob']);
    const bob = await call('GET', '/admin/connections?consumer=bob');
    assert.deepEqual(bob.json.connections.map(byKey).sort(), ['chat/bob', 'events/bob']);
    const both = await call('GET', '/admin/connections?consumer=alice&route=feed');
    assert.deepEqual(both.json.connections.map(byKey), ['feed/alice']);
    const one = await call('GET', '/admin/connections?limit=1');
    assert.equal(one.json.total, 4);
    assert.equal(one.json.connections.length, 1);
    assert.equal(one.json.truncated, true);

    const st = await call('GET', '/admin/status');
    assert.deepEqual(st.json.connections, { websocket: 3, sse: 1, total: 4, pending_handshakes: 0 });
  } finally {
    s.res.destroy();
    await closeAll(a1, a2, b1);
  }
});

test('DELETE ?consumer= closes exactly that consumer\'s connections with 1008 revoked; the others keep echoing; the consumer may reconnect', async () => {
  const a1 = await connect('/chat', ALICE);
  const a2 = await connect('/feed', ALICE);
  const b1 = await connect('/chat', BOB);
  const aliceClosed = [closed(a1), closed(a2)];
  const d = await call('DELETE', '/admin/connections?consumer=alice');
  assert.equal(d.status, 200);
  assert.deepEqual(d.json, { closed: 2 });
  for (const c of await Promise.all(aliceClosed)) assert.deepEqual(c, { code: 1008, reason: 'revoked' });
  await assertEchoes(b1, 'still here');
  // The upstream side was closed too.
  await eventually(() => ws.wss.clients.size === 1);
  assert.equal(ws.wss.clients.size, 1);
  // The access log says who cut it and why.
  const lines = await eventually(() => {
    const ls = g.log.access().filter((l) => l.error === 'REVOKED');
    return ls.length === 2 ? ls : undefined;
  });
  assert.ok(lines, 'two access lines with REVOKED');
  assert.ok(g.log.lines.some((l) => l.msg === 'admin: connections revoked' && l.filter.consumer === 'alice' && l.closed === 2));
  // A one-shot cut: alice is still in the config and may come back.
  const again = await connect('/chat', ALICE);
  await closeAll(again, b1);
});

test('DELETE ?consumer=&block=: closed now and refused until the block ends or is lifted (403 REVOKED, Retry-After); others unaffected; kept across a reload', async () => {
  const a1 = await connect('/chat', ALICE);
  const b1 = await connect('/chat', BOB);
  const aliceClosed = closed(a1);
  const d = await call('DELETE', '/admin/connections?consumer=alice&block=600');
  assert.equal(d.status, 200, d.body);
  assert.equal(d.json.closed, 1);
  assert.ok(Date.parse(d.json.blocked_until) > Date.now() + 590_000, d.json.blocked_until);
  assert.deepEqual(await aliceClosed, { code: 1008, reason: 'revoked' });
  // Refused before any 101, on every route and for SSE too; the answer says how long.
  const ws1 = await openWs(`${g.ws}/chat`, { headers: { apikey: ALICE } });
  assert.equal(ws1.status, 403);
  assert.equal(JSON.parse(ws1.body).error.code, 'REVOKED');
  const retry = Number(ws1.headers['retry-after']);
  assert.ok(retry > 590 && retry <= 600, ws1.headers['retry-after']);
  const sse1 = await new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port: g.port, path: '/events', agent: false, headers: { apikey: ALICE, accept: 'text/event-stream' } }, resolve);
  });
  sse1.resume();
  assert.equal(sse1.statusCode, 403);
  await assertEchoes(b1, 'bob is not blocked');
  const bob2 = await connect('/feed', BOB);
  // Listed; kept across a reload (a block is not config).
  const list = await call('GET', '/admin/blocks');
  assert.equal(list.status, 200);
  assert.equal(list.json.blocks.length, 1);
  assert.equal(list.json.blocks[0].consumer, 'alice');
  assert.ok(list.json.blocks[0].remaining_s > 590);
  assert.equal((await call('POST', '/admin/reload')).status, 200);
  assert.equal((await openWs(`${g.ws}/chat`, { headers: { apikey: ALICE } })).status, 403, 'still blocked after a reload');
  assert.ok(g.log.access().some((l) => l.error === 'REVOKED' && l.status === 403 && l.consumer === 'alice'));
  // Lifted: alice connects again; lifting twice says so.
  const lift = await call('DELETE', '/admin/blocks?consumer=alice');
  assert.deepEqual(lift.json, { lifted: true });
  assert.deepEqual((await call('DELETE', '/admin/blocks?consumer=alice')).json, { lifted: false });
  assert.deepEqual((await call('GET', '/admin/blocks')).json, { blocks: [] });
  const back = await connect('/chat', ALICE);
  await closeAll(back, b1, bob2);
});

test('a block ends by itself', async () => {
  const d = await call('DELETE', '/admin/connections?consumer=bob&block=1');
  assert.equal(d.status, 200);
  assert.equal((await openWs(`${g.ws}/chat`, { headers: { apikey: BOB } })).status, 403);
  const r = await eventually(async () => (await openWs(`${g.ws}/chat`, { headers: { apikey: BOB } })).ws, { tries: 60, every: 50 });
  assert.ok(r, 'bob connects again once the block is over');
  await closeAll(r);
});

test('block: only with consumer, whole seconds from 1 to 7 days, in the query or the JSON body', async () => {
  for (const q of ['route=chat&block=10', 'id=x&block=10', 'consumer=alice&block=0', 'consumer=alice&block=1.5', 'consumer=alice&block=abc', 'consumer=alice&block=604801', 'block=10']) {
    const r = await call('DELETE', `/admin/connections?${q}`);
    assert.equal(r.status, 400, q);
    assert.equal(r.json.error.code, 'ADMIN_BAD_REQUEST', q);
  }
  assert.deepEqual((await call('GET', '/admin/blocks')).json, { blocks: [] }, 'nothing was blocked by a refused call');
  const body = await call('DELETE', '/admin/connections', { body: JSON.stringify({ consumer: 'nobody', block: 30 }) });
  assert.equal(body.status, 200, body.body);
  assert.equal(body.json.closed, 0);
  assert.equal((await call('GET', '/admin/blocks')).json.blocks[0].consumer, 'nobody');
  assert.equal((await call('DELETE', '/admin/blocks')).status, 400, 'consumer is required');
  assert.equal((await call('DELETE', '/admin/blocks?consumer=nobody')).json.lifted, true);
});

test('DELETE ?route= ends that route\'s SSE streams and leaves other routes alone; ?id= closes one connection', async () => {
  const s1 = await openSse('/events', ALICE);
  const s2 = await openSse('/events', BOB);
  const b1 = await connect('/chat', BOB);
  const b2 = await connect('/chat', BOB);
  assert.ok(await eventually(() => sseOpen.size === 2), 'the upstream holds both streams');
  const d = await call('DELETE', '/admin/connections?route=events');
  assert.deepEqual(d.json, { closed: 2 });
  assert.ok(await eventually(() => s1.ended && s2.ended), 'both SSE streams ended');
  assert.ok(await eventually(() => sseOpen.size === 0), 'and their upstream requests were closed');
  await assertEchoes(b1);

  const list = await call('GET', '/admin/connections?route=chat');
  assert.equal(list.json.total, 2);
  const target = list.json.connections[0].id;
  const sockets = [b1, b2];
  const closes = sockets.map((s) => closed(s).then((c) => ({ s, c })));
  const byId = await call('DELETE', `/admin/connections?id=${target}`);
  assert.deepEqual(byId.json, { closed: 1 });
  const first = await Promise.race(closes);
  assert.deepEqual(first.c, { code: 1008, reason: 'revoked' });
  const survivor = sockets.find((s) => s !== first.s);
  await assertEchoes(survivor, 'survivor');
  const rest = await call('GET', '/admin/connections');
  assert.equal(rest.json.total, 1);
  assert.notEqual(rest.json.connections[0].id, target);
  // A JSON body works as well as the query.
  const viaBody = await call('DELETE', '/admin/connections', { body: JSON.stringify({ route: 'chat' }) });
  assert.deepEqual(viaBody.json, { closed: 1 });
  assert.deepEqual(await closed(survivor), { code: 1008, reason: 'revoked' });
  await eventually(() => g.gw.connections.size === 0);
});

test('DELETE needs exactly one of consumer, route, id', async () => {
  for (const q of ['', '?consumer=a&route=b', '?consumer=', '?consumer=a&consumer=b', '?who=a', `?id=${'x'.repeat(300)}`]) {
    const r = await call('DELETE', `/admin/connections${q}`);
    assert.equal(r.status, 400, q);
    assert.equal(r.json.error.code, 'ADMIN_BAD_REQUEST', q);
  }
  const both = await call('DELETE', '/admin/connections?route=chat', { body: '{"consumer":"alice"}' });
  assert.equal(both.status, 400);
  const two = await call('DELETE', '/admin/connections', { body: '{"consumer":"alice","route":"chat"}' });
  assert.equal(two.status, 400);
});

test('GET /admin/config returns the running config with no secret in it', async () => {
  const r = await call('GET', '/admin/config');
  assert.equal(r.status, 200);
  for (const secret of [ADMIN_KEY, ALICE, BOB, JWT_SECRET]) assert.ok(!r.body.includes(secret), 'no secret in the answer');
  assert.equal(r.json.admin.key, '[redacted]');
  const alice = r.json.consumers.find((c) => c.username === 'alice');
  assert.deepEqual(alice.plugins, { 'key-auth': '[redacted]' });
  assert.equal(r.json.consumers.find((c) => c.username === 'jwtuser').plugins['jwt-auth'], '[redacted]');
  const chat = r.json.routes.find((x) => x.id === 'chat');
  assert.deepEqual(chat.uris, ['/chat']);
  assert.equal(chat.instances, undefined, 'no run-time objects');
  assert.equal(r.json.admin.listen.host, '127.0.0.1');
});

test('PUT /admin/config with an invalid config: 400 CONFIG_INVALID with the issue path and line; nothing changed', async () => {
  const bad = gatewayYaml().replace('uri: /chat', 'uri: /chat\n    priority: ten');
  const r = await call('PUT', '/admin/config', { body: bad });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'CONFIG_INVALID');
  const issue = r.json.error.issues.find((i) => i.path === 'routes[0].priority');
  assert.ok(issue, JSON.stringify(r.json.error.issues));
  assert.equal(issue.line, bad.split('\n').findIndex((l) => l.includes('priority: ten')) + 1);
  assert.equal(issue.file, 'PUT /admin/config');
  assert.match(issue.expected, /integer/);
  assert.equal(issue.found, 'the string "ten"');

  const notYaml = await call('PUT', '/admin/config', { body: '{"gateway": ', headers: { 'content-type': 'application/json' } });
  assert.equal(notYaml.status, 400);
  assert.equal(notYaml.json.error.code, 'CONFIG_INVALID');

  // The admin listener stays until restart: a config without the admin section is refused, and no key is echoed.
  const noAdmin = gatewayYaml().replace(/admin:\n[\s\S]*$/, '');
  assert.ok(!noAdmin.includes('admin:'));
  const gone = await call('PUT', '/admin/config', { body: noAdmin });
  assert.equal(gone.status, 400);
  assert.equal(gone.json.error.code, 'CONFIG_INVALID');
  assert.ok(gone.json.error.issues.some((i) => i.path === 'admin'), JSON.stringify(gone.json.error.issues));
  assert.ok(!gone.body.includes(ADMIN_KEY));
  assert.equal((await call('GET', '/admin/status')).status, 200);

  // Unchanged: the chat route still works.
  const still = await connect('/chat', ALICE);
  await closeAll(still);
});

test('PUT /admin/config with a valid config applies it: a new route answers; a removed consumer is refused', async () => {
  const next = gatewayYaml(`  - id: added
    uri: /added
    enable_websocket: true
    upstream_id: up
`);
  const before404 = await openWs(`${g.ws}/added`);
  assert.equal(before404.status, 404);
  const r = await call('PUT', '/admin/config', { body: next });
  assert.equal(r.status, 200, r.body);
  assert.ok(r.json.routes.added.includes('added'), JSON.stringify(r.json));
  const opened = await openWs(`${g.ws}/added`);
  assert.ok(opened.ws, 'the added route answers');
  await closeAll(opened.ws);

  // Without bob: his live connection is revoked and he is refused from now on.
  const bob = await connect('/chat', BOB);
  const alice = await connect('/chat', ALICE);
  const cut = closed(bob);
  const withoutBob = next.replace(/  - username: bob\n    plugins:\n      key-auth: \{ key: [^}]+\}\n/, '');
  assert.ok(!withoutBob.includes('username: bob'));
  const r2 = await call('PUT', '/admin/config', { body: withoutBob });
  assert.equal(r2.status, 200, r2.body);
  assert.deepEqual(r2.json.consumers.removed, ['bob']);
  assert.equal(r2.json.closed.revoked, 1);
  assert.deepEqual(await cut, { code: 1008, reason: 'revoked' });
  assert.equal((await openWs(`${g.ws}/chat`, { headers: { apikey: BOB } })).status, 401);
  await assertEchoes(alice, 'alice untouched');
  await closeAll(alice);
  // The file is not written: a reload from the file goes back to it.
  const back = await call('POST', '/admin/reload');
  assert.equal(back.status, 200, back.body);
  assert.ok(back.json.routes.removed.includes('added'));
  assert.equal((await openWs(`${g.ws}/added`)).status, 404);
});

test('a new config rotates admin.key: the new key works at once, the old one gets 401; admin.listen cannot change on reload', async () => {
  const NEW = 'adm-rotated-0123456789abcdef';
  const yaml = (key, port = 0) => gatewayYaml().replace(`admin:\n  listen: { host: 127.0.0.1, port: 0 }\n  key: ${ADMIN_KEY}`, `admin:\n  listen: { host: 127.0.0.1, port: ${port} }\n  key: ${key}`);
  assert.notEqual(yaml(NEW), gatewayYaml(), 'the test edits the admin section');
  const put = await call('PUT', '/admin/config', { body: yaml(NEW), headers: { 'content-type': 'application/yaml' } });
  assert.equal(put.status, 200, put.body);
  assert.equal((await call('GET', '/admin/status')).status, 401, 'the old key is refused');
  const withNew = (method, path, opts = {}) => adminCall(adminPort, method, path, { key: NEW, ...opts });
  assert.equal((await withNew('GET', '/admin/status')).status, 200);
  const moved = await withNew('PUT', '/admin/config', { body: yaml(NEW, 19_999), headers: { 'content-type': 'application/yaml' } });
  assert.equal(moved.status, 400);
  assert.equal(moved.json.error.code, 'CONFIG_INVALID');
  assert.ok(moved.json.error.issues.some((i) => i.path === 'admin.listen'), moved.body);
  assert.ok(!moved.body.includes(NEW) && !moved.body.includes(ADMIN_KEY), 'no key in the answer');
  const back = await withNew('PUT', '/admin/config', { body: gatewayYaml(), headers: { 'content-type': 'application/yaml' } });
  assert.equal(back.status, 200, back.body);
  assert.equal((await call('GET', '/admin/status')).status, 200, 'the first key again');
  assert.equal((await withNew('GET', '/admin/status')).status, 401);
});

test('POST /admin/reload re-reads the file: applied when valid, 400 with the issues when not', async () => {
  const file = join(g.dir, 'config.yaml');
  const original = readFileSync(file, 'utf8');
  try {
    writeFileSync(file, original.replace('routes:\n', 'routes:\n  - id: fromfile\n    uri: /fromfile\n    enable_websocket: true\n    upstream_id: up\n'));
    const r = await call('POST', '/admin/reload');
    assert.equal(r.status, 200, r.body);
    assert.ok(r.json.routes.added.includes('fromfile'));
    const o = await openWs(`${g.ws}/fromfile`);
    assert.ok(o.ws);
    await closeAll(o.ws);

    writeFileSync(file, original.replace('uri: /chat', 'uri: chat-without-slash'));
    const bad = await call('POST', '/admin/reload');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'CONFIG_INVALID');
    assert.ok(bad.json.error.issues.some((i) => i.path === 'routes[0].uri' && i.found === '"chat-without-slash"'), JSON.stringify(bad.json.error.issues));
  } finally {
    writeFileSync(file, original);
    await call('POST', '/admin/reload');
  }
});

test('without admin.key, on loopback, calls are allowed', async () => {
  const open = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
admin:
  listen: { host: 127.0.0.1, port: 0 }
`);
  try {
    const r = await adminCall(open.gw.adminAddress().port, 'GET', '/admin/status');
    assert.equal(r.status, 200);
    assert.equal(r.json.config.routes, 0);
  } finally {
    await open.close();
  }
});

test('admin.listen.tls: the admin API over HTTPS', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-admin-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const tls = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
admin:
  listen: { host: 127.0.0.1, port: 0, tls: { cert: ${join(dir, 'cert.pem')}, key: ${join(dir, 'key.pem')} } }
  key: ${ADMIN_KEY}
`);
  try {
    const a = tls.gw.adminAddress();
    assert.equal(a.tls, true);
    const get = (key) =>
      new Promise((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port: a.port, path: '/admin/status', ca: readFileSync(join(dir, 'cert.pem')), headers: key ? { 'x-api-key': key } : {}, agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
          })
          .on('error', reject);
      });
    assert.equal(await get(ADMIN_KEY), 200);
    assert.equal(await get(undefined), 401);
    const plain = await adminCall(a.port, 'GET', '/admin/status', { key: ADMIN_KEY }).catch((e) => e);
    assert.ok(plain instanceof Error || plain.status !== 200, 'no plain HTTP');
  } finally {
    await tls.close();
  }
});

test('a non-loopback admin listener without a key refuses to start: exit 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-admin-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
admin:
  listen: { host: 0.0.0.0, port: 0 }
`);
  const child = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const [code] = await once(child, 'exit');
  assert.equal(code, 2);
  assert.match(stderr, /admin/);
  assert.match(stderr, /key/);
});

test('gateway.workers: 2 — the admin API lists and closes the connections of every worker', async (t) => {
  const port = await freePort();
  const admin = await freePort();
  const proc = await startCli(chatConfig({ port, upstreamPort: ws.port, alice: ALICE, bob: BOB, workers: 2, admin, adminKey: ADMIN_KEY }), { workers: 2, t });
  const { child, file } = proc;
  const acall = (m, p) => adminCall(admin, m, p, { key: ADMIN_KEY });
  // Both workers are ready for relayed calls once status counts two.
  assert.ok(await eventually(async () => (await acall('GET', '/admin/status')).json?.workers === 2, { tries: 100, every: 50 }));

  // Enough connections that both workers hold some (the kernel spreads them).
  const sockets = [];
  for (let i = 0; i < 8; i++) {
    const r = await openWs(`ws://127.0.0.1:${port}/chat`, { headers: { apikey: i % 2 ? BOB : ALICE } });
    assert.ok(r.ws);
    sockets.push(r.ws);
  }
  const list = await acall('GET', '/admin/connections');
  assert.equal(list.json.total, 8);
  const pids = new Set(list.json.connections.map((c) => c.worker));
  assert.equal(pids.size, 2, 'connections on both workers are listed');
  const st = await acall('GET', '/admin/status');
  assert.equal(st.json.connections.total, 8);
  assert.equal(st.json.per_worker.length, 2);

  const alice = sockets.filter((_, i) => i % 2 === 0);
  const bob = sockets.filter((_, i) => i % 2 === 1);
  const closes = alice.map((s) => closed(s));
  const d = await acall('DELETE', '/admin/connections?consumer=alice');
  assert.equal(d.status, 200);
  assert.deepEqual(d.json, { closed: 4 });
  for (const c of await Promise.all(closes)) assert.deepEqual(c, { code: 1008, reason: 'revoked' });
  for (const s of bob) await assertEchoes(s);
  // A block reaches every worker: bob's connections close, and no worker admits him until it is lifted.
  const bobCloses = bob.map((s) => closed(s));
  const blk = await acall('DELETE', '/admin/connections?consumer=bob&block=600');
  assert.equal(blk.status, 200, blk.body);
  assert.equal(blk.json.closed, 4);
  await Promise.all(bobCloses);
  const refused = await Promise.all(Array.from({ length: 8 }, () => openWs(`ws://127.0.0.1:${port}/chat`, { headers: { apikey: BOB } })));
  assert.deepEqual(refused.map((r) => r.status), Array(8).fill(403));
  const listed = await acall('GET', '/admin/blocks');
  assert.deepEqual(listed.json.blocks.map((b) => b.consumer), ['bob']);
  const lift = await acall('DELETE', '/admin/blocks?consumer=bob');
  assert.deepEqual(lift.json, { lifted: true });
  const readmitted = await Promise.all(Array.from({ length: 8 }, () => openWs(`ws://127.0.0.1:${port}/chat`, { headers: { apikey: BOB } })));
  assert.ok(readmitted.every((r) => r.ws), JSON.stringify(readmitted.map((r) => r.status)));
  for (const r of readmitted) r.ws.close();
  await Promise.all(readmitted.map((r) => closed(r.ws)));

  // PUT config and reload act on every worker: a new route answers whichever worker takes it.
  const original = readFileSync(file, 'utf8');
  const added = original.replace('consumers:\n', '  - id: added\n    uri: /added\n    enable_websocket: true\n    upstream_id: up\nconsumers:\n');
  const put = await adminCall(admin, 'PUT', '/admin/config', { key: ADMIN_KEY, body: added });
  assert.equal(put.status, 200, put.body);
  assert.equal(put.json.workers, 2);
  assert.deepEqual(put.json.routes.added, ['added']);
  const tries = await Promise.all(Array.from({ length: 8 }, () => openWs(`ws://127.0.0.1:${port}/added`)));
  assert.ok(tries.every((r) => r.ws), JSON.stringify(tries.map((r) => r.status)));
  for (const r of tries) r.ws.close();
  await Promise.all(tries.map((r) => closed(r.ws)));
  const back = await acall('POST', '/admin/reload');
  assert.equal(back.status, 200, back.body);
  assert.equal(back.json.workers, 2);
  const gone = await Promise.all(Array.from({ length: 8 }, () => openWs(`ws://127.0.0.1:${port}/added`)));
  assert.deepEqual(gone.map((r) => r.status), Array(8).fill(404));

  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, proc.stderr);
});

test('while the proxy is saturated (300 handshakes stalled at the upstream, 300 slow-loris sockets) the admin API and /metrics answer; clients giving up (FIN) release their handshakes and upstream connections at once', async (t) => {
  // An upstream that accepts and never answers: every handshake through it stays in flight.
  const held = [];
  let upstreamClosed = 0;
  const stall = net.createServer((s) => {
    s.resume(); // reads (and ignores) the request, so it sees the gateway's FIN
    s.on('error', () => {});
    s.on('close', () => upstreamClosed++);
    held.push(s);
  });
  await new Promise((r) => stall.listen(0, '127.0.0.1', r));
  const gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  max_pending_handshakes_per_ip: 0
upstreams:
  - id: stall
    nodes: { "127.0.0.1:${stall.address().port}": 1 }
    timeout: { connect: 2, send: 30, read: 30 }
routes:
  - { id: stall, uri: /stall, enable_websocket: true, upstream_id: stall }
admin:
  listen: { host: 127.0.0.1, port: 0 }
  key: ${ADMIN_KEY}
`);
  const clients = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    for (const s of held) s.destroy();
    await gw.close();
    stall.close();
  });
  const port = gw.gw.adminAddress().port;
  const key = `dGhlIHNhbXBsZSBub25jZQ==`;
  for (let i = 0; i < 300; i++) {
    const ws = net.connect(gw.port, '127.0.0.1', () =>
      ws.write(`GET /stall HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`),
    );
    const loris = net.connect(gw.port, '127.0.0.1', () => loris.write('GET /stall HTTP/1.1\r\nHost: x\r\nX-Slow: '));
    for (const c of [ws, loris]) {
      c.on('error', () => {});
      clients.push(c);
    }
  }
  assert.ok(await eventually(() => held.length === 300, { tries: 250 }), `the upstream holds ${held.length} of 300 handshakes`);
  const s = await adminCall(port, 'GET', '/admin/status', { key: ADMIN_KEY });
  assert.equal(s.status, 200);
  assert.equal(s.json.connections.pending_handshakes, 300);
  const m = await adminCall(port, 'GET', '/metrics', { key: ADMIN_KEY });
  assert.equal(m.status, 200);
  assert.match(m.body, /^portcullis_connections_active/m);
  const wrong = await adminCall(port, 'GET', '/admin/status', { key: 'nope' });
  assert.equal(wrong.status, 401, 'still authenticated under load');
  // The clients give up (a FIN each, before any 101): handshake_timeout (10 s) is not waited for.
  for (const c of clients) c.destroy();
  let left;
  const released = await eventually(async () => (left = (await adminCall(port, 'GET', '/admin/status', { key: ADMIN_KEY })).json.connections.pending_handshakes) === 0);
  assert.ok(released, `the abandoned handshakes are released: ${left} left`);
  assert.ok(await eventually(() => upstreamClosed === 300), `the gateway closed its upstream connections: ${upstreamClosed} of 300`);
});
