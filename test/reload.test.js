// Hot reload (issue 7) as clients observe it: an atomic swap that keeps healthy
// connections running, closes those of a changed route (1012) or a revoked
// consumer (1008 `revoked`), keeps limit state, refuses what cannot change live,
// and is triggered by SIGHUP and by gateway.watch_config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { writeFileSync, renameSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';
import { closed, collect, eventually, get, httpUpstream, openWs, rawExchange, startGateway, statusOf, wsUpstream } from './helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

/** A config around one upstream: `routes` and `tail` (consumers, ...) as YAML text. */
function yaml(port, routes, { tail = '', gateway = '' } = {}) {
  return `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  log: { level: debug }
  max_pending_handshakes_per_ip: 0
${gateway}
upstreams:
  - id: up
    nodes: { "127.0.0.1:${port}": 1 }
    timeout: { connect: 2, send: 5, read: 5 }
routes:
${routes}
${tail}
`;
}

const consumers = (list) =>
  `consumers:\n${list.map(([name, key]) => `  - username: ${name}\n    plugins:\n      key-auth: { key: ${key} }\n`).join('')}`;

async function echoes(ws, text) {
  const got = collect(ws, 1);
  ws.send(text);
  assert.deepEqual(await got, [text]);
}

const reloadLines = (log) => log.lines.filter((l) => l.msg === 'config reloaded');

test('reload keeps an unchanged connection, revokes a removed consumer (1008) and closes a changed route (1012)', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const routes = (changedPlugins) => `  - id: keep
    uri: /keep
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
  - id: change
    uri: /change
    enable_websocket: true
    upstream_id: up
    plugins: ${changedPlugins}
`;
  const gw = await startGateway(yaml(up.port, routes('{}'), { tail: consumers([['alice', 'alice-key'], ['bob', 'bob-key']]) }));
  t.after(() => gw.close());

  const alice = (await openWs(`${gw.ws}/keep`, { headers: { apikey: 'alice-key' } })).ws;
  const bob = (await openWs(`${gw.ws}/keep`, { headers: { apikey: 'bob-key' } })).ws;
  const anon = (await openWs(`${gw.ws}/change`)).ws;
  assert.ok(alice && bob && anon);
  await echoes(alice, 'before');
  assert.equal(up.wss.clients.size, 3);

  // bob removed; route `change` gets a plugin.
  writeFileSync(
    join(gw.dir, 'config.yaml'),
    yaml(up.port, routes('{ ip-restriction: { whitelist: [127.0.0.1] } }'), { tail: consumers([['alice', 'alice-key']]) }),
  );
  const bobClosed = closed(bob);
  const anonClosed = closed(anon);
  const report = await gw.gw.reloadFile();
  assert.deepEqual(report, {
    routes: { added: [], removed: [], changed: ['change'], unchanged: 1 },
    consumers: { added: [], removed: ['bob'], changed: [] },
    closed: { route_changed: 1, revoked: 1 },
  });
  assert.deepEqual(await bobClosed, { code: 1008, reason: 'revoked' });
  assert.deepEqual(await anonClosed, { code: 1012, reason: 'route changed' });

  // alice's connection is the same socket and still echoes; the upstream side of the others is closed.
  await echoes(alice, 'after');
  assert.ok(await eventually(() => up.wss.clients.size === 1), 'upstream connections of the closed ones end');

  // New handshakes see the new config: bob's key is refused, the changed route still serves.
  assert.equal((await openWs(`${gw.ws}/keep`, { headers: { apikey: 'bob-key' } })).status, 401);
  const again = (await openWs(`${gw.ws}/change`)).ws;
  await echoes(again, 'new');
  again.close();
  alice.close();
  await closed(alice);

  // One log line per reload, with the report and no credential.
  const lines = reloadLines(gw.log);
  assert.equal(lines.length, 1);
  assert.deepEqual(lines[0].reload.closed, { route_changed: 1, revoked: 1 });
  assert.ok(!gw.log.raw().includes('bob-key') && !gw.log.raw().includes('alice-key'), 'no key in the log');
  const access = await eventually(() => gw.log.access().find((l) => l.error === 'REVOKED'));
  assert.equal(access.close_code, 1008);
  assert.equal(access.consumer, 'bob');
});

test("a consumer whose key changed (frame mode): its connection is revoked, the new key works, the old key is refused", async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const routes = `  - id: r
    uri: /r
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
      websocket-size-limit: { client_max_payload: 4096 }
`;
  const gw = await startGateway(yaml(up.port, routes, { tail: consumers([['alice', 'old-key'], ['carol', 'carol-key']]) }));
  t.after(() => gw.close());
  const alice = (await openWs(`${gw.ws}/r`, { headers: { apikey: 'old-key' } })).ws;
  const carol = (await openWs(`${gw.ws}/r`, { headers: { apikey: 'carol-key' } })).ws;
  await echoes(alice, 'hi');

  writeFileSync(join(gw.dir, 'config.yaml'), yaml(up.port, routes, { tail: consumers([['alice', 'new-key'], ['carol', 'carol-key']]) }));
  const aliceClosed = closed(alice);
  const report = await gw.gw.reloadFile();
  assert.deepEqual(report.consumers, { added: [], removed: [], changed: ['alice'] });
  assert.deepEqual(report.closed, { route_changed: 0, revoked: 1 });
  assert.deepEqual(await aliceClosed, { code: 1008, reason: 'revoked' });
  await echoes(carol, 'carol still here');

  assert.equal((await openWs(`${gw.ws}/r`, { headers: { apikey: 'old-key' } })).status, 401);
  const fresh = (await openWs(`${gw.ws}/r`, { headers: { apikey: 'new-key' } })).ws;
  await echoes(fresh, 'new key');
  fresh.close();
  carol.close();
  await Promise.all([closed(fresh), closed(carol)]);
});

const limited = `  - id: lim
    uri: /lim
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-conn: { conn: 1, burst: 0, default_conn_delay: 0.1, key: remote_addr }
`;
const plain = `  - id: plain
    uri: /plain
    upstream_id: up
`;

test('limit-conn conn: 1 survives a reload: the second connection is still refused, and a slot comes back when the first closes', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const gw = await startGateway(yaml(up.port, limited));
  t.after(() => gw.close());
  const first = (await openWs(`${gw.ws}/lim`)).ws;
  assert.ok(first);
  assert.equal((await openWs(`${gw.ws}/lim`)).status, 503);

  // An unrelated change (a route added): the limited route and its limit-conn instance carry over.
  writeFileSync(join(gw.dir, 'config.yaml'), yaml(up.port, limited + plain));
  const report = await gw.gw.reloadFile();
  assert.deepEqual(report.routes, { added: ['plain'], removed: [], changed: [], unchanged: 1 });
  assert.deepEqual(report.closed, { route_changed: 0, revoked: 0 });
  assert.equal((await openWs(`${gw.ws}/lim`)).status, 503, 'the open connection still holds the only slot');
  await echoes(first, 'still open');

  first.close();
  await closed(first);
  const next = await eventually(async () => {
    const r = await openWs(`${gw.ws}/lim`);
    if (r.ws) return r.ws;
    return undefined;
  });
  assert.ok(next, 'a new connection opens once the first closed (its release reached the same store)');
  next.close();
  await closed(next);
});

test('a config loaded without `previous` (as the admin API does) still keeps the running limit state', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const gw = await startGateway(yaml(up.port, limited));
  t.after(() => gw.close());
  const first = (await openWs(`${gw.ws}/lim`)).ws;
  const next = await loadConfigText(yaml(up.port, limited + plain), join(gw.dir, 'config.yaml'), { registry: createRegistry() });
  const report = await gw.gw.reload(next);
  assert.deepEqual(report.routes.added, ['plain']);
  assert.equal((await openWs(`${gw.ws}/lim`)).status, 503);
  first.close();
  await closed(first);
  const again = await eventually(async () => (await openWs(`${gw.ws}/lim`)).ws);
  assert.ok(again, 'the slot came back to the same store');
  again.close();
  await closed(again);
});

// Holds every access phase until the test lets go (the gateway runs in this process).
const SLOW_PLUGIN = `export default {
  name: 'test-hold', version: '1.0.0', priority: 100, schema: { type: 'object' },
  access() { return new Promise((resolve) => globalThis.__portcullisHeld.push(() => resolve(undefined))); },
};
`;

test('handshakes in flight finish under the config they started with; one of a consumer revoked meanwhile is closed once it joins', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  globalThis.__portcullisHeld = [];
  const routes = `  - id: held
    uri: /held
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
      test-hold: {}
`;
  const gateway = '  custom_plugins: [./hold.js]';
  const gw = await startGateway(yaml(up.port, routes, { gateway, tail: consumers([['alice', 'alice-key'], ['bob', 'bob-key']]) }), {
    files: { 'hold.js': SLOW_PLUGIN },
  });
  t.after(() => gw.close());
  const alice = openWs(`${gw.ws}/held`, { headers: { apikey: 'alice-key' } });
  const bob = openWs(`${gw.ws}/held`, { headers: { apikey: 'bob-key' } });
  assert.ok(await eventually(() => globalThis.__portcullisHeld.length === 2), 'both handshakes wait in the access phase');

  writeFileSync(join(gw.dir, 'config.yaml'), yaml(up.port, routes, { gateway, tail: consumers([['alice', 'alice-key']]) }));
  const report = await gw.gw.reloadFile();
  assert.deepEqual(report.consumers.removed, ['bob']);
  assert.deepEqual(report.closed, { route_changed: 0, revoked: 0 }, 'nothing was live yet');

  for (const release of globalThis.__portcullisHeld.splice(0)) release();
  const [a, b] = await Promise.all([alice, bob]);
  assert.ok(a.ws && b.ws, 'both handshakes completed under the config they started with');
  assert.deepEqual(await closed(b.ws), { code: 1008, reason: 'revoked' });
  await echoes(a.ws, 'alice stays');
  // bob's key is refused from now on.
  assert.equal((await openWs(`${gw.ws}/held`, { headers: { apikey: 'bob-key' } })).status, 401);
  a.ws.close();
  await closed(a.ws);
});

test('a route whose upstream alone changed: its live connections close with 1012; a handshake in flight finishes on the old upstream, then closes with 1012 too; new ones go to the new upstream', async (t) => {
  const oldUp = await wsUpstream();
  const newUp = await wsUpstream();
  t.after(() => Promise.all([oldUp.close(), newUp.close()]));
  globalThis.__portcullisHeld = [];
  const conf = (port) => yaml(port, `  - id: moved
    uri: /moved
    enable_websocket: true
    upstream_id: up
  - id: held
    uri: /held
    enable_websocket: true
    upstream_id: up
    plugins:
      test-hold: {}
`, { gateway: '  custom_plugins: [./hold.js]' });
  const gw = await startGateway(conf(oldUp.port), { files: { 'hold.js': SLOW_PLUGIN } });
  t.after(() => gw.close());
  const live = (await openWs(`${gw.ws}/moved`)).ws;
  await echoes(live, 'on the old upstream');
  const inFlight = openWs(`${gw.ws}/held`);
  assert.ok(await eventually(() => globalThis.__portcullisHeld.length === 1), 'the handshake waits in the access phase');

  writeFileSync(join(gw.dir, 'config.yaml'), conf(newUp.port));
  const liveClosed = closed(live);
  const report = await gw.gw.reloadFile();
  assert.deepEqual(report.routes.changed.sort(), ['held', 'moved'], 'a change of upstream nodes changes the routes on it');
  assert.deepEqual(await liveClosed, { code: 1012, reason: 'route changed' });

  const before = newUp.handshakes.length;
  for (const release of globalThis.__portcullisHeld.splice(0)) release();
  const r = await inFlight;
  assert.ok(r.ws, 'the in-flight handshake completed under the config it started with');
  assert.equal(oldUp.handshakes.at(-1).url, '/held', 'on the old upstream');
  assert.equal(newUp.handshakes.length, before);
  assert.deepEqual(await closed(r.ws), { code: 1012, reason: 'route changed' }, 'then closed: its route changed meanwhile');

  const fresh = (await openWs(`${gw.ws}/moved`)).ws;
  await echoes(fresh, 'on the new upstream');
  assert.equal(newUp.handshakes.at(-1).url, '/moved');
  fresh.close();
  await closed(fresh);
});

const TRACK_PLUGIN = `export default {
  name: 'test-track', version: '1.0.0', priority: 100,
  schema: { type: 'object', properties: { tag: { type: 'string' } } },
  init(config) { globalThis.__portcullisInits.push(config.tag); return config.tag; },
  log() {},
  dispose(tag) { globalThis.__portcullisDisposed.push(tag); },
};
`;

test('plugin instances: unchanged ones are carried over, replaced ones disposed once their last connection ends, refused configs leave nothing behind', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  globalThis.__portcullisInits = [];
  globalThis.__portcullisDisposed = [];
  const gateway = '  custom_plugins: [./track.js]';
  const route = (id, tag) => `  - id: ${id}
    uri: /${id}
    enable_websocket: true
    upstream_id: up
    plugins:
      test-track: { tag: ${tag} }
`;
  const gw = await startGateway(yaml(up.port, route('one', 'one') + route('two', 'two-a'), { gateway }), { files: { 'track.js': TRACK_PLUGIN } });
  const file = join(gw.dir, 'config.yaml');
  let closedGw = false;
  t.after(() => !closedGw && gw.close());
  const one = (await openWs(`${gw.ws}/one`)).ws;
  // Exchanges that end early (a malformed handshake, a plain request) do not hold the old runtime.
  const bad = 'GET /two HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: bad\r\nSec-WebSocket-Version: 13\r\n\r\n';
  assert.equal(statusOf(await rawExchange(gw.port, bad)), 400);
  assert.equal((await get(`${gw.http}/two`)).status, 200);

  writeFileSync(file, yaml(up.port, route('one', 'one') + route('two', 'two-b'), { gateway }));
  const report = await gw.gw.reloadFile();
  assert.deepEqual(report.routes.changed, ['two']);
  assert.deepEqual(globalThis.__portcullisInits, ['one', 'two-a', 'two-b'], 'only the changed instance is initialised again');
  // The connection of `one` started under the old runtime, which still holds two-a.
  assert.deepEqual(globalThis.__portcullisDisposed, []);
  await echoes(one, 'x');
  one.close();
  await closed(one);
  assert.ok(await eventually(() => globalThis.__portcullisDisposed.length === 1), 'two-a disposed once the old runtime drained');
  assert.deepEqual(globalThis.__portcullisDisposed, ['two-a']);

  // An invalid file and a refused one: their fresh instances are disposed at once, the running ones untouched.
  writeFileSync(file, yaml(up.port, route('one', 'one') + route('two', 'two-b') + route('three', 'bad'), { gateway }) + 'bogus: 1\n');
  await assert.rejects(gw.gw.reloadFile(), ConfigError);
  writeFileSync(file, yaml(up.port, route('one', 'one') + route('four', 'refused'), { gateway: `${gateway}\n  workers: 3` }));
  await assert.rejects(gw.gw.reloadFile(), /gateway\.workers: cannot change on reload/);
  assert.deepEqual(globalThis.__portcullisDisposed.sort(), ['bad', 'refused', 'two-a']);

  closedGw = true;
  await gw.close();
  assert.deepEqual(globalThis.__portcullisDisposed.sort(), ['bad', 'one', 'refused', 'two-a', 'two-b'], 'each instance disposed exactly once');
});

test('a route added by a reload serves; a removed one answers 404', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const gw = await startGateway(yaml(up.port, limited));
  t.after(() => gw.close());
  assert.equal((await get(`${gw.http}/plain`)).status, 404);
  writeFileSync(join(gw.dir, 'config.yaml'), yaml(up.port, plain));
  const report = await gw.gw.reloadFile();
  assert.deepEqual(report.routes, { added: ['plain'], removed: ['lim'], changed: [], unchanged: 0 });
  const res = await get(`${gw.http}/plain`);
  assert.equal(res.status, 200);
  assert.equal(res.body, 'plain http\n');
  assert.equal((await openWs(`${gw.ws}/lim`)).status, 404);
});

test('a changed route ends its SSE streams', async (t) => {
  const streams = new Set();
  const up = await httpUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: one\n\n');
    streams.add(res);
  });
  t.after(async () => {
    for (const s of streams) s.destroy();
    await up.close();
  });
  const routes = (plugins) => `  - id: events
    uri: /events
    upstream_id: up
    plugins: ${plugins}
`;
  const gw = await startGateway(yaml(up.port, routes('{}')));
  t.after(() => gw.close());
  const res = await new Promise((resolve, reject) => http.get(`${gw.http}/events`, { agent: false }, resolve).on('error', reject));
  assert.equal(res.statusCode, 200);
  let body = '';
  res.on('data', (c) => (body += c));
  await eventually(() => body.includes('data: one'));
  const ended = new Promise((resolve) => res.on('close', resolve));
  writeFileSync(join(gw.dir, 'config.yaml'), yaml(up.port, routes('{ ip-restriction: { whitelist: [127.0.0.1] } }')));
  const report = await gw.gw.reloadFile();
  assert.deepEqual(report.closed, { route_changed: 1, revoked: 0 });
  await ended;
  const line = await eventually(() => gw.log.access().find((l) => l.protocol === 'sse'));
  assert.equal(line.error, 'ROUTE_CHANGED');
});

test("a consumer's plugin overrides or the global rules change: their connections close 1012 `policy changed`; a removed consumer's SSE stream ends (REVOKED)", async (t) => {
  const ws = await wsUpstream();
  t.after(() => ws.close());
  const streams = new Set();
  const sse = await httpUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: one\n\n');
    streams.add(res);
  });
  t.after(async () => {
    for (const s of streams) s.destroy();
    await sse.close();
  });
  const file = ({ aliceOverride = '', globalRules = '', withDave = true } = {}) => `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  log: { level: debug }
  max_pending_handshakes_per_ip: 0
upstreams:
  - id: up
    nodes: { "127.0.0.1:${ws.port}": 1 }
  - id: events
    nodes: { "127.0.0.1:${sse.port}": 1 }
${globalRules}
consumers:
  - username: alice
    plugins:
      key-auth: { key: alice-key }
${aliceOverride}
  - username: bob
    plugins:
      key-auth: { key: bob-key }
${withDave ? '  - username: dave\n    plugins:\n      key-auth: { key: dave-key }\n' : ''}
routes:
  - id: chat
    uri: /chat
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
  - id: events
    uri: /events
    upstream_id: events
    plugins:
      key-auth: {}
`;
  const gw = await startGateway(file());
  t.after(() => gw.close());
  const write = (text) => writeFileSync(join(gw.dir, 'config.yaml'), text);
  const sseOpen = async (key) => {
    const res = await new Promise((resolve, reject) =>
      http.get(`${gw.http}/events`, { agent: false, headers: { apikey: key, accept: 'text/event-stream' } }, resolve).on('error', reject),
    );
    assert.equal(res.statusCode, 200);
    let body = '';
    res.on('data', (c) => (body += c));
    await eventually(() => body.includes('data: one'));
    return { res, ended: new Promise((resolve) => res.on('close', resolve)) };
  };

  // 1. alice gets a plugin override of her own: her connection, not bob's, is closed 1012.
  const alice = (await openWs(`${gw.ws}/chat`, { headers: { apikey: 'alice-key' } })).ws;
  const bob = (await openWs(`${gw.ws}/chat`, { headers: { apikey: 'bob-key' } })).ws;
  const daveStream = await sseOpen('dave-key');
  const bobStream = await sseOpen('bob-key');
  const aliceClosed = closed(alice);
  write(file({ aliceOverride: '      ip-restriction: { whitelist: [127.0.0.1] }' }));
  let report = await gw.gw.reloadFile();
  assert.deepEqual(report.consumers, { added: [], removed: [], changed: ['alice'] });
  assert.deepEqual(await aliceClosed, { code: 1012, reason: 'policy changed' });
  await echoes(bob, 'bob still here');

  // 2. dave is removed: his SSE stream ends, bob's goes on.
  write(file({ aliceOverride: '      ip-restriction: { whitelist: [127.0.0.1] }', withDave: false }));
  report = await gw.gw.reloadFile();
  assert.deepEqual(report.consumers.removed, ['dave']);
  assert.equal(report.closed.revoked, 1);
  await daveStream.ended;
  const revoked = await eventually(() => gw.log.access().find((l) => l.protocol === 'sse' && l.consumer === 'dave'));
  assert.equal(revoked.error, 'REVOKED');
  assert.equal(bobStream.res.destroyed, false, "bob's stream is untouched");

  // 3. a global rule is added: every live connection is closed (WebSocket 1012, the SSE stream ends).
  const bobClosed = closed(bob);
  write(
    file({
      aliceOverride: '      ip-restriction: { whitelist: [127.0.0.1] }',
      withDave: false,
      globalRules: 'global_rules:\n  - id: everyone\n    plugins:\n      ip-restriction: { whitelist: [127.0.0.0/8] }\n',
    }),
  );
  report = await gw.gw.reloadFile();
  assert.deepEqual(await bobClosed, { code: 1012, reason: 'policy changed' });
  await bobStream.ended;
  // New connections work under the new policy.
  const again = (await openWs(`${gw.ws}/chat`, { headers: { apikey: 'bob-key' } })).ws;
  await echoes(again, 'new policy');
  again.close();
  await closed(again);
});

test('an invalid file is refused with its position; the running config stays and keeps serving', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const gw = await startGateway(yaml(up.port, limited));
  t.after(() => gw.close());
  const before = (await openWs(`${gw.ws}/lim`)).ws;
  writeFileSync(join(gw.dir, 'config.yaml'), yaml(up.port, limited.replace('conn: 1,', 'conn: "one",')));
  const err = await gw.gw.reloadFile().then(
    () => assert.fail('the reload should be refused'),
    (e) => e,
  );
  assert.ok(err instanceof ConfigError);
  assert.equal(err.issues[0].path, 'routes[0].plugins.limit-conn.conn');
  assert.equal(typeof err.issues[0].line, 'number');
  const logged = gw.log.lines.find((l) => l.msg === 'config reload refused; the running config stays');
  assert.equal(logged.level, 'error');
  assert.match(logged.issues[0], /config\.yaml:\d+:\d+ routes\[0\]\.plugins\.limit-conn\.conn: expected an integer/);
  assert.equal(reloadLines(gw.log).length, 0);
  // Nothing changed: the connection still echoes, the limit still holds.
  await echoes(before, 'still running');
  assert.equal((await openWs(`${gw.ws}/lim`)).status, 503);
  before.close();
  await closed(before);
});

test('a gateway.listen change is refused (file or config), nothing applied', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const gw = await startGateway(yaml(up.port, limited));
  t.after(() => gw.close());
  const moved = yaml(up.port, limited + plain).replace('port: 0 }]', 'port: 0 }, { host: 127.0.0.1, port: 1 }]');
  writeFileSync(join(gw.dir, 'config.yaml'), moved);
  const err = await gw.gw.reloadFile().catch((e) => e);
  assert.ok(err instanceof ConfigError);
  assert.equal(err.issues.length, 1);
  assert.equal(err.issues[0].path, 'gateway.listen');
  assert.match(err.issues[0].message, /cannot change on reload; restart/);
  assert.equal(typeof err.issues[0].line, 'number');

  // A config loaded elsewhere (no `previous`): refused by reload() itself.
  const next = await loadConfigText(moved, join(gw.dir, 'config.yaml'), { registry: createRegistry() });
  const err2 = await gw.gw.reload(next).catch((e) => e);
  assert.ok(err2 instanceof ConfigError);
  assert.match(err2.message, /gateway\.listen: cannot change on reload/);
  assert.equal((await get(`${gw.http}/plain`)).status, 404, 'the route of the refused config is not there');
});

test('gateway.watch_config: a file change (written in place, then replaced by rename) is picked up', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const gateway = '  watch_config: true';
  const gw = await startGateway(yaml(up.port, limited, { gateway }));
  t.after(() => gw.close());
  assert.ok(await eventually(() => gw.log.lines.some((l) => l.msg === 'watching the config file for changes')));
  assert.equal((await get(`${gw.http}/plain`)).status, 404);

  writeFileSync(join(gw.dir, 'config.yaml'), yaml(up.port, limited + plain, { gateway }));
  assert.ok(await eventually(async () => (await get(`${gw.http}/plain`)).status === 200), 'the added route serves');

  // An editor's save: write a temporary file, rename it over the config.
  const tmp = join(gw.dir, '.config.yaml.swp');
  writeFileSync(tmp, yaml(up.port, plain, { gateway }));
  renameSync(tmp, join(gw.dir, 'config.yaml'));
  assert.ok(await eventually(async () => (await openWs(`${gw.ws}/lim`)).status === 404), 'the removed route is gone');
  // A bad save is logged and changes nothing.
  const refused = () => gw.log.lines.filter((l) => l.msg === 'config reload refused; the running config stays').length;
  const before = refused();
  writeFileSync(join(gw.dir, 'config.yaml'), 'routes: [');
  assert.ok(await eventually(() => refused() > before));
  assert.equal((await get(`${gw.http}/plain`)).status, 200);
  assert.equal(reloadLines(gw.log).length, 2);
});

/** Start `node dist/cli.js start -c FILE`; resolves with the child, its port and its output so far. */
async function startCli(t, file) {
  const child = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.exitCode === null && child.kill('SIGKILL'));
  const out = { stderr: '', stdout: '' };
  child.stderr.on('data', (d) => (out.stderr += d));
  child.stdout.on('data', (d) => (out.stdout += d));
  return { child, out };
}

test('SIGHUP makes `portcullis start` re-read an edited file; a bad edit keeps it running', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-reload-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml(up.port, limited).replace('level: debug', 'level: info'));
  const { child, out } = await startCli(t, file);
  const port = await eventually(() => Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out.stderr)?.[1]), { tries: 250 });
  assert.ok(port, out.stderr);
  assert.equal((await get(`http://127.0.0.1:${port}/plain`)).status, 404);

  writeFileSync(file, 'routes: [');
  child.kill('SIGHUP');
  assert.ok(await eventually(() => out.stderr.includes('reload refused, the running config stays'), { tries: 250 }), out.stderr);
  assert.match(out.stdout, /config reload refused/);
  assert.equal(child.exitCode, null, 'still running');

  writeFileSync(file, yaml(up.port, limited + plain).replace('level: debug', 'level: info'));
  child.kill('SIGHUP');
  assert.ok(await eventually(async () => (await get(`http://127.0.0.1:${port}/plain`)).status === 200, { tries: 250 }), out.stderr);
  assert.match(out.stderr, /reloaded \(routes: 1 added, 0 removed, 0 changed/);

  child.kill('SIGTERM');
  const [code] = await new Promise((resolve) => child.once('exit', (...a) => resolve(a)));
  assert.equal(code, 0);
});

test('workers: 2: the primary relays SIGHUP and every worker reloads the file', async (t) => {
  const up = await wsUpstream();
  t.after(() => up.close());
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-reload-'));
  const file = join(dir, 'config.yaml');
  const gateway = '  workers: 2';
  writeFileSync(file, yaml(up.port, limited, { gateway }).replace('level: debug', 'level: info'));
  const { child, out } = await startCli(t, file);
  const ok = await eventually(() => (out.stderr.match(/listening on http:\/\/127\.0\.0\.1:\d+/g) ?? []).length >= 2, { tries: 300 });
  assert.ok(ok, out.stderr);
  const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out.stderr)[1];

  writeFileSync(file, yaml(up.port, limited + plain, { gateway }).replace('level: debug', 'level: info'));
  child.kill('SIGHUP');
  assert.ok(await eventually(() => (out.stderr.match(/reloaded \(routes: 1 added/g) ?? []).length === 2, { tries: 250 }), out.stderr);
  for (let i = 0; i < 6; i++) assert.equal((await get(`http://127.0.0.1:${port}/plain`)).status, 200);

  child.kill('SIGTERM');
  const [code] = await new Promise((resolve) => child.once('exit', (...a) => resolve(a)));
  assert.equal(code, 0);
});
