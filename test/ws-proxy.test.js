// WebSocket proxying as a client observes it: tunnel and frame mode, close codes
// both ways, subprotocols, extensions, idle timeout, upstream refusal.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { WebSocket } from 'ws';
import {
  EXAMPLES, closed, config, eventually, handshake, listen, nextMessage, openWs, rawExchange, startGateway, statusOf, wsUpstream,
} from './helpers.js';

let up;
let gw;

before(async () => {
  up = await wsUpstream({ handleProtocols: (set) => (set.has('chat.v2') ? 'chat.v2' : false) });
  gw = await startGateway(
    config(
      up.port,
      `  - { id: tunnel, uri: /ws/*, enable_websocket: true, upstream_id: up }
  - id: framed
    uri: /framed/*
    enable_websocket: true
    upstream_id: up
    plugins:
      block-words: { words: [spam], on_match: close }
  - id: dropping
    uri: /drop/*
    enable_websocket: true
    upstream_id: up
    plugins:
      block-words: { words: [spam], on_match: drop, reply: '{"error":"refused"}' }
  - { id: idle, uri: /idle, enable_websocket: true, upstream_id: up, websocket: { idle_timeout: 0.3 } }
  - id: idle-framed
    uri: /idle-framed
    enable_websocket: true
    upstream_id: up
    websocket: { idle_timeout: 0.4, ping_interval: 0.1 }
    plugins:
      block-words: { words: [spam] }
  - { id: plain, uri: /plain, upstream_id: up }`,
      `  custom_plugins: [${EXAMPLES}plugins/block-words.js]`,
    ),
  );
});

after(async () => {
  await gw.close();
  await up.close();
});

test('tunnel mode: messages echo both ways, text and binary', async () => {
  const { ws } = await openWs(`${gw.ws}/ws/room`);
  ws.send('hello');
  assert.equal(await nextMessage(ws), 'hello');
  ws.send(Buffer.from([1, 2, 3]));
  assert.deepEqual([...(await nextMessage(ws))], [1, 2, 3]);
  ws.close(1000, 'bye');
  assert.deepEqual(await closed(ws), { code: 1000, reason: 'bye' });
  const hs = up.handshakes.at(-1);
  assert.equal(hs.url, '/ws/room');
  assert.equal(hs.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(hs.headers['x-forwarded-proto'], 'http');
  assert.ok(hs.headers['x-request-id']);
});

test('tunnel mode: the upstream close code and reason reach the client', async () => {
  const { ws } = await openWs(`${gw.ws}/ws/x`);
  ws.send('close-me');
  assert.deepEqual(await closed(ws), { code: 4001, reason: 'asked to close' });
});

test('tunnel mode: the access log records messages, bytes and the close code', async () => {
  const { ws } = await openWs(`${gw.ws}/ws/logged?token=secret-value`);
  ws.send('one');
  await nextMessage(ws);
  ws.send('two');
  await nextMessage(ws);
  ws.close(4100, 'done');
  await closed(ws);
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/ws/logged'));
  assert.equal(line.route, 'tunnel');
  assert.equal(line.protocol, 'websocket');
  assert.equal(line.status, 101);
  assert.equal(line.messages_in, 2);
  assert.equal(line.messages_out, 2);
  assert.equal(line.close_code, 4100);
  assert.equal(line.closed_by, 'client');
  assert.ok(line.bytes_in > 0 && line.bytes_out > 0);
  assert.ok(!gw.log.raw().includes('secret-value'), 'the query string never reaches the log');
});

test('tunnel mode: subprotocol chosen by the upstream is relayed', async () => {
  const { ws } = await openWs(`${gw.ws}/ws/p`, { protocols: ['chat.v1', 'chat.v2'] });
  assert.equal(ws.protocol, 'chat.v2');
  assert.deepEqual(up.handshakes.at(-1).headers['sec-websocket-protocol'].split(/\s*,\s*/), ['chat.v1', 'chat.v2']);
  ws.close();
  await closed(ws);
});

test('frame mode: a passing message reaches the upstream and comes back', async () => {
  const { ws } = await openWs(`${gw.ws}/framed/a`);
  ws.send('clean words');
  assert.equal(await nextMessage(ws), 'clean words');
  ws.close(1000);
  assert.equal((await closed(ws)).code, 1000);
});

test('frame mode: a close verdict closes the sender with 1008 and nothing reaches the upstream', async () => {
  const before = up.received.length;
  const { ws } = await openWs(`${gw.ws}/framed/b`);
  ws.send('buy spam now');
  const c = await closed(ws);
  assert.equal(c.code, 1008);
  assert.equal(c.reason, 'MESSAGE_REJECTED');
  assert.ok(!up.received.slice(before).some((m) => String(m.data).includes('spam')));
});

test('frame mode: a drop verdict keeps the connection and replies to the sender', async () => {
  const { ws } = await openWs(`${gw.ws}/drop/c`);
  ws.send('spam here');
  assert.equal(await nextMessage(ws), '{"error":"refused"}');
  ws.send('fine');
  assert.equal(await nextMessage(ws), 'fine');
  ws.close();
  await closed(ws);
});

test('frame mode: the upstream close code and reason reach the client', async () => {
  const { ws } = await openWs(`${gw.ws}/framed/d`);
  ws.send('close-me');
  assert.deepEqual(await closed(ws), { code: 4001, reason: 'asked to close' });
});

test('idle connections are closed with 1001 after the idle timeout', async () => {
  const { ws } = await openWs(`${gw.ws}/idle`);
  const c = await closed(ws);
  assert.equal(c.code, 1001);
  const line = await eventually(() => gw.log.access().find((l) => l.route === 'idle'));
  assert.equal(line.error, 'WS_IDLE_TIMEOUT');
  assert.equal(line.closed_by, 'gateway');
});

test('frame mode: the gateway\'s own pings do not keep an idle connection alive', async () => {
  const { ws } = await openWs(`${gw.ws}/idle-framed`);
  let pings = 0;
  ws.on('ping', () => pings++);
  const c = await closed(ws);
  assert.equal(c.code, 1001);
  assert.ok(pings > 0, 'the gateway pinged the client');
});

test('an upgrade to a route without enable_websocket is refused with 400 WS_NOT_ENABLED', async () => {
  const r = await openWs(`${gw.ws}/plain`);
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.body).error.code, 'WS_NOT_ENABLED');
});

test('the Sec-WebSocket-Accept the client receives matches its own key', async () => {
  const text = await rawExchange(gw.port, handshake('/ws/raw'), { waitForClose: false });
  assert.equal(statusOf(text), 101);
  const expected = createHash('sha1').update('dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  assert.match(text, new RegExp(`sec-websocket-accept: ${expected.replace(/[+/]/g, '\\$&')}`, 'i'));
});

test('a handshake that completes while the gateway drains is refused before any upstream sees it: 503 SHUTTING_DOWN with Retry-After', async () => {
  const g = await startGateway(config(up.port, '  - { id: tunnel, uri: /ws/*, enable_websocket: true, upstream_id: up }'));
  // A tunnelled client that never answers the gateway's close keeps the drain going.
  const held = net.connect(g.port, '127.0.0.1');
  held.on('error', () => {});
  held.write(handshake('/ws/held'));
  const [first] = await once(held, 'data');
  assert.equal(statusOf(first.toString('latin1')), 101);
  // Half a handshake: the connection is busy with a request, so the drain does not close it as idle.
  const late = net.connect(g.port, '127.0.0.1');
  let answer = '';
  late.on('data', (d) => (answer += d.toString('latin1')));
  const lateClosed = once(late, 'close');
  const hs = handshake('/ws/late');
  late.write(hs.slice(0, 30));
  await new Promise((r) => setTimeout(r, 50));
  const before = up.handshakes.length;
  const draining = g.close(2000);
  late.write(hs.slice(30));
  await lateClosed;
  assert.equal(statusOf(answer), 503, answer);
  assert.match(answer, /\r\nX-Portcullis-Error: SHUTTING_DOWN\r\n/i);
  assert.match(answer, /\r\nretry-after: 1\r\n/i);
  assert.equal(up.handshakes.length, before, 'the upstream never saw the late handshake');
  held.destroy();
  await draining;
});
