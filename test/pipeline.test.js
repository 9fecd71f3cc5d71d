// The plugin pipeline as clients observe it: priority order (reversed for upstream
// messages), rewrite before access, async verdicts kept in order, rejections with
// configured status, failing plugins, global rules merged with route plugins,
// and the log phase once per connection on every way it ends.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { closed, collect, eventually, get, nextMessage, openWs, startGateway, wsUpstream, httpUpstream } from './helpers.js';

const P = new URL('./fixtures/plugins/', import.meta.url).pathname;
let up;
let httpUp;
let gw;

before(async () => {
  up = await wsUpstream();
  httpUp = await httpUpstream();
  gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  custom_plugins: [${P}tag-a.js, ${P}tag-b.js, ${P}slow-upper.js, ${P}faulty.js, ${P}stamp.js]
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: http, nodes: { "127.0.0.1:${httpUp.port}": 1 } }
global_rules:
  - id: everywhere
    plugins:
      stamp: { header: x-global-stamp }
routes:
  - id: ordered
    uri: /ordered
    enable_websocket: true
    upstream_id: up
    plugins: { tag-b: {}, tag-a: {} }
  - id: slow
    uri: /slow
    enable_websocket: true
    upstream_id: up
    plugins: { slow-upper: {} }
  - id: faulty
    uri: /faulty
    enable_websocket: true
    upstream_id: up
    plugins: { faulty: {} }
  - id: stamped
    uri: /stamped
    upstream_id: http
    plugins:
      stamp: { header: x-route-stamp }
  - id: plain
    uri: /plain
    upstream_id: http
  - id: slow-http
    uri: /slow-http
    upstream_id: http
    plugins: { slow-upper: { rejected_code: 418 } }
`);
});

after(async () => {
  await gw.close();
  await up.close();
  await httpUp.close();
});

test('client messages run plugins highest priority first; upstream messages in reverse', async () => {
  const { ws } = await openWs(`${gw.ws}/ordered`);
  ws.send('m');
  assert.equal(await nextMessage(ws), 'm>a>b<b<a');
  assert.equal(up.received.at(-1).data, 'm>a>b');
  ws.close();
  await closed(ws);
});

test('asynchronous message verdicts keep messages in order', async () => {
  const { ws } = await openWs(`${gw.ws}/slow`);
  const sent = Array.from({ length: 30 }, (_, i) => `msg-${i}-${'x'.repeat(i % 4)}`);
  const received = collect(ws, sent.length);
  for (const m of sent) ws.send(m);
  assert.deepEqual(await received, sent.map((m) => m.toUpperCase()));
  ws.close();
  await closed(ws);
});

test('an asynchronous access rejection uses the configured status and message', async () => {
  const r = await get(`${gw.http}/slow-http`, { 'x-deny': '1' });
  assert.equal(r.status, 418);
  const body = JSON.parse(r.body);
  assert.equal(body.error.code, 'ACCESS_DENIED');
  assert.equal(body.error.message, 'Denied by slow-upper');
  const ok = await get(`${gw.http}/slow-http`);
  assert.equal(ok.status, 200);
});

test('a WebSocket handshake rejected by a plugin never reaches the upstream', async () => {
  const before = up.handshakes.length;
  const r = await openWs(`${gw.ws}/slow`, { headers: { 'x-deny': '1' } });
  assert.equal(r.status, 451);
  assert.equal(up.handshakes.length, before);
});

test('a plugin that throws in access gives 500 PLUGIN_ERROR; the cause is logged, not sent', async () => {
  const r = await openWs(`${gw.ws}/faulty`, { headers: { 'x-throw': '1' } });
  assert.equal(r.status, 500);
  assert.equal(JSON.parse(r.body).error.code, 'PLUGIN_ERROR');
  assert.ok(!r.body.includes('exploded'));
  const line = await eventually(() => gw.log.access().find((l) => l.route === 'faulty' && l.status === 500));
  assert.match(line.detail, /access exploded/);
});

test('a plugin that throws on a message closes that connection with 1011, others keep working', async () => {
  const a = await openWs(`${gw.ws}/faulty`);
  const b = await openWs(`${gw.ws}/faulty`);
  a.ws.send('boom');
  assert.equal((await closed(a.ws)).code, 1011);
  b.ws.send('still here');
  assert.equal(await nextMessage(b.ws), 'still here');
  b.ws.close();
  await closed(b.ws);
});

test('a plugin that throws in log is logged and does not disturb the response', async () => {
  const { ws } = await openWs(`${gw.ws}/faulty`);
  ws.close(1000);
  await closed(ws);
  await eventually(() => gw.log.lines.find((l) => l.msg === 'plugin failed in log phase'));
});

test('rewrite sets the consumer and upstream headers; the route config of a global plugin wins', async () => {
  const r = await get(`${gw.http}/stamped?apikey=k-123&room=1`, { 'x-remove-me': 'client value' });
  assert.equal(r.status, 200);
  const req = httpUp.requests.at(-1);
  assert.equal(req.url, '/stamped?room=1', 'the credential query parameter is stripped');
  assert.equal(req.headers['x-route-stamp'], 'route=stamped');
  assert.equal(req.headers['x-global-stamp'], undefined, 'a plugin on both runs once, with the route config');
  assert.equal(req.headers['x-remove-me'], undefined);
  const line = await eventually(() => gw.log.access().find((l) => l.route === 'stamped'));
  assert.equal(line.consumer, 'alice');
  assert.ok(!gw.log.raw().includes('k-123'), 'the credential is never logged');
});

test('global rule plugins apply to routes without plugins', async () => {
  await get(`${gw.http}/plain`);
  assert.equal(httpUp.requests.at(-1).headers['x-global-stamp'], 'route=plain');
});

test('the log phase runs once per connection with its counters', async () => {
  const summaries = globalThis.__stampSummaries;
  const { ws } = await openWs(`${gw.ws}/ordered`);
  ws.send('x');
  await nextMessage(ws);
  ws.close(4000, 'bye');
  await closed(ws);
  const s = await eventually(() => {
    const found = summaries.filter((x) => x.route === 'ordered' && x.closeCode === 4000);
    return found.length > 0 && found;
  });
  assert.equal(s.length, 1);
  assert.equal(s[0].protocol, 'websocket');
  assert.equal(s[0].messagesIn, 1);
  assert.equal(s[0].messagesOut, 1);
  assert.equal(s[0].closedBy, 'client');
});

test('the log phase runs for a handshake rejected after an earlier plugin ran', async () => {
  const summaries = globalThis.__stampSummaries;
  const before = summaries.filter((x) => x.route === 'slow-http').length;
  await get(`${gw.http}/slow-http`, { 'x-deny': '1' });
  const s = await eventually(() => summaries.filter((x) => x.route === 'slow-http').length > before && summaries.filter((x) => x.route === 'slow-http'));
  assert.equal(s.at(-1).status, 418);
  assert.equal(s.at(-1).error, 'ACCESS_DENIED');
});
