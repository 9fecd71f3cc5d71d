// websocket-size-limit: the largest message per direction, measured after
// reassembly and after decompression, enforced while the message is received
// (before it is buffered whole). Over the limit: 1009 to the sender, 1001 to the
// other side, nothing forwarded, the rejection published and logged without the
// message. Also: permessage-deflate on a route, and the effective limits the
// pipeline computes from the route and the plugins.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { deflateRawSync, constants as zlib } from 'node:zlib';
import { WebSocket } from 'ws';
import { closed, config, eventually, nextMessage, openWs, startGateway } from './helpers.js';
import { OP, describe, frame, rawClient, recordingUpstream } from './conformance-helpers.js';
import { createRegistry, loadConfigText } from '../dist/index.js';
import { Pipeline } from '../dist/core/pipeline.js';

let up;
let gw;
const rejected = [];
const onRejected = (ev) => rejected.push(ev);

before(async () => {
  subscribe('portcullis:message:rejected', onRejected);
  up = await recordingUpstream({ perMessageDeflate: true });
  gw = await startGateway(
    config(
      up.port,
      `  - id: limited
    uri: /limited/*
    enable_websocket: true
    upstream_id: up
    plugins:
      websocket-size-limit: { client_max_payload: 1024, upstream_max_payload: 2048 }
  - id: defaults
    uri: /defaults/*
    enable_websocket: true
    upstream_id: up
    plugins:
      websocket-size-limit: {}
  - id: route-lower
    uri: /route-lower/*
    enable_websocket: true
    upstream_id: up
    websocket: { max_payload: 100 }
    plugins:
      websocket-size-limit: { client_max_payload: 1000 }
  - id: tiny
    uri: /tiny/*
    enable_websocket: true
    upstream_id: up
    plugins:
      websocket-size-limit: { client_max_payload: 10 }
  - id: deflate
    uri: /deflate/*
    enable_websocket: true
    upstream_id: up
    websocket: { permessage_deflate: true }
    plugins:
      websocket-size-limit: { upstream_max_payload: 65536 }
  - id: deflate-params
    uri: /deflate-params/*
    enable_websocket: true
    upstream_id: up
    websocket:
      permessage_deflate: { server_no_context_takeover: true, client_max_window_bits: 10 }
    plugins:
      websocket-size-limit: {}`,
    ),
  );
});

after(async () => {
  unsubscribe('portcullis:message:rejected', onRejected);
  await gw.close();
  await up.close();
});

let n = 0;
const uniq = (prefix) => `${prefix}/${++n}`;

test('a route with only websocket-size-limit runs in frame mode', () => {
  const line = gw.log.lines.find((l) => l.msg === 'route plugins' && l.route === 'limited');
  assert.equal(line.mode, 'frame');
});

test('a client message of exactly client_max_payload passes both ways', async () => {
  const { ws } = await openWs(`${gw.ws}${uniq('/limited')}`);
  const msg = 'a'.repeat(1024);
  ws.send(msg);
  assert.equal(await nextMessage(ws), msg);
  ws.close(1000);
  await closed(ws);
});

test('a client message one byte over: the client gets 1009, the upstream 1001 and nothing of the message', async () => {
  const path = uniq('/limited');
  const { ws } = await openWs(`${gw.ws}${path}`);
  ws.send('b'.repeat(1025));
  assert.deepEqual(await closed(ws), { code: 1009, reason: 'WS_MESSAGE_TOO_BIG' });
  const rec = await up.get(path).closed;
  assert.equal(rec.messages.length, 0);
  assert.equal(rec.close.code, 1001);
  const line = await eventually(() => gw.log.access().find((l) => l.path === path));
  assert.equal(line.error, 'WS_MESSAGE_TOO_BIG');
  assert.equal(line.close_code, 1009);
  assert.equal(line.closed_by, 'gateway');
  assert.ok(!gw.log.raw().includes('b'.repeat(64)), 'the message never reaches the log');
});

test('the rejection is published with route, direction, reason and plugin, and never the message', async () => {
  const path = uniq('/limited');
  const before = rejected.length;
  const { ws } = await openWs(`${gw.ws}${path}`);
  ws.send('secret'.repeat(500));
  await closed(ws);
  const ev = await eventually(() => rejected.slice(before).find((e) => e.routeId === 'limited'));
  assert.equal(ev.direction, 'client');
  assert.equal(ev.reason, 'WS_MESSAGE_TOO_BIG');
  assert.equal(ev.plugin, 'websocket-size-limit');
  assert.deepEqual(Object.keys(ev).sort(), ['direction', 'plugin', 'reason', 'routeId', 'source']);
});

test('the size is that of the whole message: fragments each under the limit, together over it, are refused', async () => {
  const path = uniq('/limited');
  const c = await rawClient(gw.port, path);
  const part = 'x'.repeat(400);
  c.write(frame(OP.TEXT, part, { fin: false }), frame(OP.CONT, part, { fin: false }), frame(OP.CONT, part));
  const frames = await c.ended;
  assert.equal(c.closeFrame()?.code, 1009, describe(frames));
  assert.equal((await up.get(path).closed).messages.length, 0);
});

test('the limit is enforced while receiving: the running total of fragments is refused before the message ends', async () => {
  const path = uniq('/limited');
  const c = await rawClient(gw.port, path);
  const part = 'x'.repeat(600);
  // No final fragment is ever sent: the gateway refuses on the second one.
  c.write(frame(OP.TEXT, part, { fin: false }), frame(OP.CONT, part, { fin: false }));
  await c.ended;
  assert.equal(c.closeFrame()?.code, 1009);
});

test('the limit is enforced while receiving: a frame header announcing 10 MB is refused before any payload', async () => {
  const path = uniq('/limited');
  const c = await rawClient(gw.port, path);
  c.write(frame(OP.BINARY, Buffer.alloc(0), { length: 10 * 1024 * 1024 }));
  await c.ended;
  assert.equal(c.closeFrame()?.code, 1009);
  assert.equal((await up.get(path).closed).close.code, 1001);
});

test('control frames are bounded by the protocol, not by the plugin: a 125-byte ping passes a 10-byte limit', async () => {
  const c = await rawClient(gw.port, uniq('/tiny'));
  c.write(frame(OP.PING, Buffer.alloc(125, 1)));
  const [pong] = await c.waitFor(1, (f) => f.opcode === OP.PONG);
  assert.equal(pong.payload.length, 125);
  c.write(frame(OP.TEXT, 'x'.repeat(11)));
  await c.ended;
  assert.equal(c.closeFrame()?.code, 1009);
});

test('an upstream message over upstream_max_payload: the upstream gets 1009, the client 1001 and nothing', async () => {
  const path = uniq('/limited');
  const { ws } = await openWs(`${gw.ws}${path}`);
  const rec = up.get(path);
  rec.onMessage = () => rec.ws.send(Buffer.alloc(2049, 1));
  const got = [];
  ws.on('message', (d) => got.push(d));
  ws.send('send me too much');
  assert.deepEqual(await closed(ws), { code: 1001, reason: '' });
  assert.equal(got.length, 0);
  assert.deepEqual((await rec.closed).close, { code: 1009, reason: 'WS_MESSAGE_TOO_BIG' });
  const ev = await eventually(() => rejected.find((e) => e.routeId === 'limited' && e.direction === 'upstream'));
  assert.equal(ev.plugin, 'websocket-size-limit');
});

test('an upstream message of exactly upstream_max_payload is forwarded', async () => {
  const path = uniq('/limited');
  const { ws } = await openWs(`${gw.ws}${path}`);
  const rec = up.get(path);
  rec.onMessage = () => rec.ws.send(Buffer.alloc(2048, 1));
  ws.send('send me the most');
  assert.equal((await nextMessage(ws)).length, 2048);
  ws.close(1000);
  await closed(ws);
});

test('defaults are Kong\'s: 1 MiB from the client passes, one byte more is refused', async () => {
  const { ws } = await openWs(`${gw.ws}${uniq('/defaults')}`);
  ws.send(Buffer.alloc(1048576, 2));
  assert.equal((await nextMessage(ws)).length, 1048576);
  ws.send(Buffer.alloc(1048577, 2));
  assert.equal((await closed(ws)).code, 1009);
});

test('the route\'s max_payload wins when it is lower; the rejection then names no plugin', async () => {
  const before = rejected.length;
  const { ws } = await openWs(`${gw.ws}${uniq('/route-lower')}`);
  ws.send('z'.repeat(101));
  assert.equal((await closed(ws)).code, 1009);
  const ev = await eventually(() => rejected.slice(before).find((e) => e.routeId === 'route-lower'));
  assert.equal(ev.plugin, undefined);
});

// --- permessage-deflate -------------------------------------------------------------

/** A permessage-deflate payload for `data` (RFC 7692: sync flush, trailer removed). */
function deflated(data) {
  const out = deflateRawSync(data, { finishFlush: zlib.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}

test('permessage-deflate, enabled on the route, is negotiated with the client and the upstream; messages pass both ways', async () => {
  const path = uniq('/deflate');
  const ws = new WebSocket(`${gw.ws}${path}`, { perMessageDeflate: true });
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  assert.match(ws.extensions, /permessage-deflate/);
  const text = 'compress me '.repeat(1000);
  ws.send(text);
  assert.equal(await nextMessage(ws), text);
  const rec = up.get(path);
  assert.match(rec.extensions, /permessage-deflate/);
  assert.equal(rec.negotiated, 'permessage-deflate');
  assert.deepEqual(rec.messages.map((m) => m.data.toString()), [text]);
  ws.close(1000);
  await closed(ws);
});

test('a 10 KB compressed frame that inflates to 10 MB is refused: 1009 (decompressed size counts), nothing forwarded', async () => {
  const path = uniq('/deflate');
  const bomb = deflated(Buffer.alloc(10 * 1024 * 1024));
  assert.ok(bomb.length < 16 * 1024, `the frame is small (${bomb.length} bytes)`);
  const c = await rawClient(gw.port, path, { headers: 'Sec-WebSocket-Extensions: permessage-deflate\r\n' });
  assert.match(c.response, /sec-websocket-extensions: permessage-deflate/i);
  c.write(frame(OP.BINARY, bomb, { rsv: 4 }));
  await c.ended;
  assert.deepEqual(c.closeFrame(), { code: 1009, reason: 'WS_MESSAGE_TOO_BIG' });
  const rec = await up.get(path).closed;
  assert.equal(rec.messages.length, 0);
  assert.equal(rec.close.code, 1001);
});

test('a compressed frame inflating to just under the limit passes', async () => {
  const path = uniq('/deflate');
  const c = await rawClient(gw.port, path, { headers: 'Sec-WebSocket-Extensions: permessage-deflate\r\n' });
  c.write(frame(OP.BINARY, deflated(Buffer.alloc(1048576, 3)), { rsv: 4 }));
  await eventually(() => up.get(path).messages.length === 1);
  assert.equal(up.get(path).messages[0].data.length, 1048576);
  c.close(1000);
  await c.ended;
});

test('compressed data that does not inflate: 1007', async () => {
  const c = await rawClient(gw.port, uniq('/deflate'), { headers: 'Sec-WebSocket-Extensions: permessage-deflate\r\n' });
  c.write(frame(OP.BINARY, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]), { rsv: 4 }));
  await c.ended;
  assert.equal(c.closeFrame()?.code, 1007);
});

test('an upstream message inflating over upstream_max_payload: the upstream gets 1009, the client 1001', async () => {
  const path = uniq('/deflate');
  const { ws } = await openWs(`${gw.ws}${path}`);
  const rec = up.get(path);
  rec.onMessage = () => rec.ws.send(Buffer.alloc(65537));
  ws.send('inflate this');
  assert.equal((await closed(ws)).code, 1001);
  assert.equal((await rec.closed).close.code, 1009);
});

test('permessage_deflate parameters are used on both hops', async () => {
  const path = uniq('/deflate-params');
  const c = await rawClient(gw.port, path, { headers: 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' });
  assert.match(c.response, /sec-websocket-extensions: permessage-deflate;.*server_no_context_takeover/i);
  assert.match(c.response, /client_max_window_bits=10/i);
  const rec = up.get(path);
  assert.match(rec.extensions, /server_no_context_takeover/);
  assert.match(rec.extensions, /client_max_window_bits=10/);
  c.close(1000);
  await c.ended;
});

// --- configuration and the pipeline's effective limits ------------------------------

const registry = createRegistry();

function load(plugins, websocket = '') {
  return loadConfigText(
    `upstreams: [{ id: up, nodes: { "127.0.0.1:1": 1 } }]
routes:
  - id: r
    uri: /r
    enable_websocket: true
    upstream_id: up
    ${websocket}
    plugins: ${plugins}
`,
    '/tmp/x.yaml',
    { registry },
  );
}

test('a non-positive limit is refused at load with its path', async () => {
  await assert.rejects(load('{ websocket-size-limit: { client_max_payload: 0 } }'), /client_max_payload/);
  await assert.rejects(load('{ websocket-size-limit: { max: 5 } }'), /max/);
});

test('bad permessage_deflate settings are refused at load', async () => {
  await assert.rejects(load('{}', 'websocket: { permessage_deflate: { server_max_window_bits: 20 } }'), /server_max_window_bits/);
  await assert.rejects(load('{}', 'websocket: { permessage_deflate: { level: 9 } }'), /permessage_deflate/);
});

test('the effective limit per direction is the smallest of the route and the plugins, naming the plugin that set it', async () => {
  const cfg = await load('{ websocket-size-limit: { client_max_payload: 5000 } }', 'websocket: { max_payload: 8000 }');
  const route = cfg.routes[0];
  const p = Pipeline.forRoute(route, []);
  assert.equal(p.inspectsMessages, true);
  const limits = p.frameLimits(route.websocket);
  assert.deepEqual(limits.client, { maxPayload: 5000, plugin: 'websocket-size-limit' });
  assert.deepEqual(limits.upstream, { maxPayload: 8000, plugin: undefined });
  assert.equal(p.frameLimits(route.websocket), limits, 'computed once per settings');
});

test('a plugin that only declares frameLimits puts the route in frame mode; a bad limit is a TypeError', () => {
  const def = { name: 'limits-only', version: '1', priority: 1, schema: {}, log() {}, frameLimits: (s) => s };
  const p = new Pipeline([{ name: 'limits-only', def, config: {}, state: { upstreamMaxPayload: 10 } }]);
  assert.equal(p.inspectsMessages, true);
  assert.deepEqual(p.frameLimits({ max_payload: 100 }).upstream, { maxPayload: 10, plugin: 'limits-only' });
  assert.throws(() => new Pipeline([{ name: 'limits-only', def, config: {}, state: { clientMaxPayload: -1 } }]), TypeError);
});
