// websocket.max_payload on a tunnel-mode route: the tunnel reads frame headers only,
// so the size of a message is the sum of its frames' announced lengths, and a frame
// that takes a message over the limit is refused on its header, before any byte of
// it is forwarded. The sender gets 1009, the other side 1001, as in frame mode; the
// messages before it arrive whole. Raw sockets on both ends.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { config, eventually, startGateway } from './helpers.js';
import { OP, frame, rawClient, rawUpstream } from './raw-ws-helpers.js';

const LIMIT = 1000;

let upstream;
let gw;
const rejected = [];
const onRejected = (ev) => rejected.push(ev);
before(async () => {
  upstream = await rawUpstream();
  gw = await startGateway(
    config(
      upstream.port,
      `  - id: small
    uri: /small/*
    enable_websocket: true
    upstream_id: up
    websocket: { max_payload: ${LIMIT} }
  - id: limited
    uri: /limited/*
    enable_websocket: true
    upstream_id: up
    websocket: { max_payload: ${LIMIT} }
    plugins:
      limit-messages: { rate: 1000, burst: 1000 }
`,
    ),
  );
  subscribe('portcullis:message:rejected', onRejected);
});
after(async () => {
  unsubscribe('portcullis:message:rejected', onRejected);
  await gw?.close();
  await upstream?.close();
});

test('both routes are in tunnel mode (a route without plugins always is; limit-messages keeps it)', () => {
  const modes = Object.fromEntries(gw.log.lines.filter((l) => l.msg === 'route plugins').map((l) => [l.route, l.mode]));
  assert.deepEqual(modes, { limited: 'tunnel' });
});

test('a message of exactly max_payload passes; one byte more (in the same chunk) closes 1009, nothing of it forwarded, the upstream gets 1001', async () => {
  const path = '/small/one';
  const c = await rawClient(gw.port, path);
  const u = await upstream.peer(path);
  const ok = 'a'.repeat(LIMIT);
  c.send(Buffer.concat([frame(OP.text, 'first'), frame(OP.text, ok), frame(OP.binary, Buffer.alloc(LIMIT + 1, 1)), frame(OP.text, 'after')]));
  assert.deepEqual(await c.closed, { code: 1009, reason: 'message too big' });
  assert.equal((await u.closed).code, 1001);
  assert.deepEqual(u.reader.messages, ['first', ok]);
  assert.equal(u.reader.frames.filter((f) => f.opcode !== OP.close).length, 2, 'no frame, or part of one, after the allowed ones');
  const line = await eventually(() => gw.log.access().find((l) => l.path === path));
  assert.equal(line.error, 'WS_MESSAGE_TOO_BIG');
  assert.equal(line.close_code, 1009);
  assert.ok(rejected.some((e) => e.routeId === 'small' && e.direction === 'client' && e.reason === 'WS_MESSAGE_TOO_BIG'));
});

test('a fragmented message counts all its fragments: the fragment that takes it over the limit is refused, the earlier ones were forwarded', async () => {
  const path = '/small/fragments';
  const c = await rawClient(gw.port, path);
  const u = await upstream.peer(path);
  const part = 'x'.repeat(400);
  c.send(Buffer.concat([frame(OP.text, part, { fin: false }), frame(OP.cont, part, { fin: false }), frame(OP.ping, 'p'), frame(OP.cont, part)]));
  assert.deepEqual(await c.closed, { code: 1009, reason: 'message too big' });
  assert.equal((await u.closed).code, 1001);
  const data = u.reader.frames.filter((f) => f.opcode !== OP.close);
  assert.deepEqual(
    data.map((f) => [f.opcode, f.payload.length]),
    [
      [OP.text, 400],
      [OP.cont, 400],
      [OP.ping, 1],
    ],
    'two fragments (800 bytes) and the ping between them, not the third fragment',
  );
});

test('a header split across TCP chunks is held back and refused whole: the upstream never sees a byte of it', async () => {
  const path = '/small/split';
  const c = await rawClient(gw.port, path);
  const u = await upstream.peer(path);
  c.send(frame(OP.text, 'before'));
  await eventually(() => u.reader.messages.length === 1);
  // 127 = a 64-bit length: a 14-byte header, sent a byte at a time.
  await c.trickle(frame(OP.binary, Buffer.alloc(70_000)).subarray(0, 14), 1);
  assert.deepEqual(await c.closed, { code: 1009, reason: 'message too big' });
  assert.equal((await u.closed).code, 1001);
  assert.deepEqual(u.reader.messages, ['before']);
  assert.equal(u.reader.frames.filter((f) => f.opcode !== OP.close).length, 1);
});

test('upstream messages are limited too: the client gets 1001, the upstream 1009', async () => {
  const path = '/small/down';
  const c = await rawClient(gw.port, path);
  const u = await upstream.peer(path);
  u.send(Buffer.concat([frame(OP.text, 'hi', { mask: false }), frame(OP.text, 'y'.repeat(LIMIT + 10), { mask: false })]));
  assert.deepEqual(await u.closed, { code: 1009, reason: 'message too big' });
  assert.equal((await c.closed).code, 1001);
  assert.deepEqual(c.reader.messages, ['hi']);
});

test('with a frame phase (limit-messages), the size check comes first and the limit still counts the messages that passed', async () => {
  const path = '/limited/one';
  const c = await rawClient(gw.port, path);
  const u = await upstream.peer(path);
  c.send(Buffer.concat([frame(OP.text, 'm0'), frame(OP.text, 'm1'), frame(OP.text, 'z'.repeat(LIMIT + 1))]));
  assert.deepEqual(await c.closed, { code: 1009, reason: 'message too big' });
  assert.equal((await u.closed).code, 1001);
  assert.deepEqual(u.reader.messages, ['m0', 'm1']);
});

test('messages under the limit in many small chunks pass unchanged (headers split anywhere)', async () => {
  const path = '/small/trickle';
  const c = await rawClient(gw.port, path);
  const u = await upstream.peer(path);
  const msgs = ['one', 'b'.repeat(200), 'c'.repeat(LIMIT)];
  await c.trickle(Buffer.concat(msgs.map((m) => frame(OP.text, m))), 7);
  assert.ok(await eventually(() => u.reader.messages.length === 3));
  assert.deepEqual(u.reader.messages, msgs);
  c.socket.destroy();
});
