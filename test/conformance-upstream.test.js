// RFC 6455 conformance of the gateway as a WebSocket client (toward upstreams), in
// frame mode: a raw upstream completes the handshake itself, records every frame
// the gateway sends, and answers the client's "go" with hand-built frames. Asserts
// what the upstream received (masking, pongs, the close code) and what the client
// received.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { config, startGateway } from './helpers.js';
import { OP, closePayload, decodeClose, describe, frame, rawClient, scriptedUpstream } from './conformance-helpers.js';

/** What the upstream sends, by case, once the client said "go". */
const SCRIPTS = new Map();
let up;
let gw;

before(async () => {
  up = await scriptedUpstream((conn, path) => {
    conn.onFrame = (f) => {
      if (f.opcode === OP.TEXT && f.payload.toString() === 'go') for (const b of SCRIPTS.get(path) ?? []) conn.write(b);
    };
  });
  gw = await startGateway(
    config(
      up.port,
      `  - id: conf
    uri: /u/*
    enable_websocket: true
    upstream_id: up
    plugins:
      websocket-size-limit: { upstream_max_payload: 4096 }`,
    ),
  );
});

after(async () => {
  await gw.close();
  await up.close();
});

let n = 0;

/** Run one case: the upstream will send `frames` (unmasked unless said otherwise). */
async function run(name, frames) {
  const path = `/u/${name}-${++n}`;
  SCRIPTS.set(path, frames);
  const c = await rawClient(gw.port, path);
  c.write(frame(OP.TEXT, 'go'));
  const conn = up.get(path);
  return { c, conn, path };
}

/** Frames the upstream got from the gateway, which acts as a client: all must be masked. */
function fromGateway(conn) {
  assert.ok(conn.frames.every((f) => f.masked), `an unmasked frame reached the upstream: ${describe(conn.frames)}`);
  return conn.frames;
}

async function upstreamEnded(conn) {
  await new Promise((r) => (conn.ended ? r() : conn.sock.once('close', r)));
  return fromGateway(conn);
}

/** The upstream broke the protocol: it gets close `code`, the client 1001, and nothing reached the client. */
async function upstreamFailed(name, frames, code) {
  const { c, conn } = await run(name, frames);
  const got = await c.ended;
  assert.deepEqual(got.map((f) => f.opcode), [OP.CLOSE], describe(got));
  assert.equal(c.closeFrame().code, 1001);
  const sent = await upstreamEnded(conn);
  const close = sent.find((f) => f.opcode === OP.CLOSE);
  assert.ok(close, `no close reached the upstream: ${describe(sent)}`);
  assert.equal(decodeClose(close.payload).code, code);
  return { c, conn, close: decodeClose(close.payload) };
}

const server = (opcode, payload, opts = {}) => frame(opcode, payload, { mask: false, ...opts });

test('the gateway masks every frame it sends upstream and offers no extension', async () => {
  const { c, conn } = await run('masked-out', [server(OP.TEXT, 'hello')]);
  await c.waitFor(1, (f) => f.opcode === OP.TEXT);
  c.close(1000);
  await c.ended;
  const sent = await upstreamEnded(conn);
  assert.deepEqual(sent.map((f) => f.opcode), [OP.TEXT, OP.CLOSE]);
  assert.doesNotMatch(conn.head, /sec-websocket-extensions/i);
});

test('an upstream message is forwarded to the client unmasked', async () => {
  const { c } = await run('plain', [server(OP.TEXT, 'hello'), server(OP.BINARY, Buffer.from([1, 2, 3]))]);
  const got = await c.waitFor(2, (f) => f.opcode < 8);
  assert.deepEqual(got.map((f) => [f.opcode, f.masked, [...f.payload]]), [
    [OP.TEXT, false, [...Buffer.from('hello')]],
    [OP.BINARY, false, [1, 2, 3]],
  ]);
  c.close(1000);
  await c.ended;
});

test('an upstream ping is answered by the gateway with a masked pong carrying its payload', async () => {
  const { c, conn } = await run('ping', [server(OP.PING, 'are you there')]);
  await new Promise((r) => {
    const prev = conn.onFrame;
    conn.onFrame = (f) => {
      prev(f);
      if (f.opcode === OP.PONG) r();
    };
  });
  const pong = fromGateway(conn).find((f) => f.opcode === OP.PONG);
  assert.equal(pong.payload.toString(), 'are you there');
  c.close(1000);
  const got = await c.ended;
  assert.equal(got.filter((f) => f.opcode === OP.PING).length, 0, 'pings stop at the gateway');
});

test('a fragmented upstream message with a ping between fragments reaches the client whole', async () => {
  const { c } = await run('fragments', [
    server(OP.TEXT, 'frag1', { fin: false }),
    server(OP.PING, 'p'),
    server(OP.CONT, 'frag2', { fin: false }),
    server(OP.CONT, 'frag3'),
  ]);
  const [msg] = await c.waitFor(1, (f) => f.opcode === OP.TEXT);
  assert.equal(msg.payload.toString(), 'frag1frag2frag3');
  assert.equal(msg.fin, true);
  c.close(1000);
  await c.ended;
});

test('the upstream close code and reason reach the client', async () => {
  const { c } = await run('close', [server(OP.CLOSE, closePayload(4001, 'bye'))]);
  await c.ended;
  assert.deepEqual(c.closeFrame(), { code: 4001, reason: 'bye' });
});

test('a masked frame from the upstream: the upstream gets 1002, the client 1001', async () => {
  await upstreamFailed('masked-in', [frame(OP.TEXT, 'hello', { mask: true })], 1002);
});

test('RSV1 from the upstream without an extension: 1002', async () => {
  await upstreamFailed('rsv1', [server(OP.TEXT, 'hello', { rsv: 4 })], 1002);
});

test('a reserved opcode from the upstream: 1002', async () => {
  await upstreamFailed('opcode', [server(3, 'x')], 1002);
});

test('a 126-byte ping from the upstream: 1002', async () => {
  await upstreamFailed('big-ping', [server(OP.PING, Buffer.alloc(126))], 1002);
});

test('a fragmented ping from the upstream: 1002', async () => {
  await upstreamFailed('frag-ping', [server(OP.PING, 'a', { fin: false }), server(OP.CONT, 'b')], 1002);
});

test('a continuation with nothing to continue from the upstream: 1002', async () => {
  await upstreamFailed('cont', [server(OP.CONT, 'x')], 1002);
});

test('invalid UTF-8 text from the upstream: 1007, nothing reaches the client', async () => {
  await upstreamFailed('utf8', [server(OP.TEXT, Buffer.from([0xed, 0xa0, 0x80]))], 1007);
});

test('a 64-bit length with its top bit set from the upstream: 1002', async () => {
  await upstreamFailed('msb', [server(OP.BINARY, Buffer.alloc(0), { length: 2n ** 63n, lengthBytes: 8 })], 1002);
});

test('a close code that must not be sent (1005) from the upstream: 1002', async () => {
  await upstreamFailed('bad-close', [server(OP.CLOSE, closePayload(1005))], 1002);
});

test('an upstream message over upstream_max_payload is refused after its header: the upstream gets 1009, the client 1001', async () => {
  const { close } = await upstreamFailed('too-big', [server(OP.BINARY, Buffer.alloc(0), { length: 4097 })], 1009);
  assert.equal(close.reason, 'WS_MESSAGE_TOO_BIG');
});

test('an upstream message of exactly upstream_max_payload is forwarded', async () => {
  const { c } = await run('at-limit', [server(OP.BINARY, Buffer.alloc(4096, 7))]);
  const [msg] = await c.waitFor(1, (f) => f.opcode === OP.BINARY);
  assert.equal(msg.payload.length, 4096);
  c.close(1000);
  await c.ended;
});
