// Frame-mode flow control in both directions: when one side stops reading, the
// gateway stops reading from the other at websocket.max_buffered (the fast peer
// sees backpressure: its own unsent bytes grow), loses nothing when the slow side
// resumes, and closes a peer that stays stalled for websocket.stall_timeout
// (1008 WS_STALLED to it, 1001 to the other side).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { closed, config, eventually, openWs, startGateway } from './helpers.js';
import { recordingUpstream } from './conformance-helpers.js';

const CHUNK = Buffer.alloc(64 * 1024, 0x61);
/** The fast side stops writing once this much waits in its own buffer: backpressure reached it. */
const BACKPRESSURE = 4 * 1024 * 1024;
/** Far more than socket buffers hold: a gateway that kept reading would let all of it through. */
const CAP = 256 * 1024 * 1024;

let up;
let gw;

before(async () => {
  up = await recordingUpstream();
  gw = await startGateway(
    config(
      up.port,
      `  - id: stall
    uri: /stall/*
    enable_websocket: true
    upstream_id: up
    websocket: { max_buffered: 65536, stall_timeout: 0.3 }
    plugins:
      websocket-size-limit: {}
  - id: patient
    uri: /patient/*
    enable_websocket: true
    upstream_id: up
    websocket: { max_buffered: 65536, stall_timeout: 0 }
    plugins:
      websocket-size-limit: {}`,
    ),
  );
});

after(async () => {
  await gw.close();
  await up.close();
});

/** A CHUNK-sized message carrying its sequence number. */
function numbered(seq) {
  const b = Buffer.from(CHUNK);
  b.writeUInt32BE(seq, 0);
  return b;
}

/** True when `messages` are `count` numbered chunks, intact and in order. */
function inOrder(messages, count) {
  return messages.length === count && messages.every((m, i) => m.length === CHUNK.length && m.readUInt32BE(0) === i && m[4] === 0x61);
}

/**
 * Write numbered CHUNKs on `ws` until its own buffer holds BACKPRESSURE bytes or it closed
 * (resolves with what was written), or CAP bytes were written without either (rejects).
 */
function flood(ws) {
  return new Promise((resolve, reject) => {
    let written = 0;
    let sent = 0;
    const step = () => {
      if (ws.readyState !== ws.OPEN) return resolve({ written, sent });
      if (ws.bufferedAmount >= BACKPRESSURE) return resolve({ written, sent, buffered: ws.bufferedAmount });
      if (written >= CAP) return reject(new Error(`wrote ${written} bytes and never saw backpressure`));
      for (let i = 0; i < 16; i++) {
        ws.send(numbered(sent), { binary: true });
        written += CHUNK.length;
        sent++;
      }
      setImmediate(step);
    };
    step();
  });
}

/** Collect `count` messages on `ws`. */
function receiveAll(ws, count) {
  return new Promise((resolve) => {
    const got = [];
    ws.on('message', (d) => {
      got.push(d);
      if (got.length === count) resolve(got);
    });
  });
}

test('the client stops reading while the upstream floods: backpressure reaches the upstream; when the client reads again nothing is lost', async () => {
  const path = '/patient/client-pauses';
  const { ws } = await openWs(`${gw.ws}${path}`);
  const rec = up.get(path);
  ws.pause(); // the client reads nothing until resumed
  const { written, sent, buffered } = await flood(rec.ws);
  assert.ok(buffered >= BACKPRESSURE, 'the upstream\'s own buffer grew: the gateway stopped reading it');
  assert.ok(written < CAP);
  const all = receiveAll(ws, sent);
  ws.resume();
  assert.ok(inOrder(await all, sent), 'every message arrived, intact and in order');
  assert.equal(ws.readyState, ws.OPEN);
  ws.close(1000);
  assert.equal((await closed(ws)).code, 1000);
});

test('the upstream stops reading while the client floods: backpressure reaches the client; when the upstream reads again nothing is lost', async () => {
  const path = '/patient/upstream-pauses';
  const { ws } = await openWs(`${gw.ws}${path}`);
  const rec = up.get(path);
  rec.ws.pause();
  rec.onMessage = () => {}; // no echo
  const { written, sent, buffered } = await flood(ws);
  assert.ok(buffered >= BACKPRESSURE, 'the client\'s own buffer grew: the gateway stopped reading it');
  assert.ok(written < CAP);
  rec.ws.resume();
  await eventually(() => rec.messages.length === sent, { tries: 500 });
  assert.ok(inOrder(rec.messages.map((m) => m.data), sent), 'every message arrived, intact and in order');
  ws.close(1000);
  assert.equal((await closed(ws)).code, 1000);
});

test('a client that stays stalled for stall_timeout is closed with 1008 WS_STALLED, the upstream with 1001', async () => {
  const path = '/stall/client-stops';
  const { ws } = await openWs(`${gw.ws}${path}`);
  const rec = up.get(path);
  ws.pause(); // the client reads nothing from now on
  // Flood until backpressure or until the gateway closes the upstream, whichever comes first.
  const { written } = await flood(rec.ws);
  assert.ok(written < CAP);
  const done = await rec.closed;
  assert.equal(done.close.code, 1001);
  const line = await eventually(() => gw.log.lines.find((l) => l.msg === 'websocket peer stopped reading' && l.peer === 'client'));
  assert.equal(line.error, 'WS_STALLED');
  // The close frame waits behind what the client never read: it gets it once it reads again.
  const c = closed(ws);
  ws.resume();
  assert.deepEqual(await c, { code: 1008, reason: 'WS_STALLED' });
  const access = await eventually(() => gw.log.access().find((l) => l.path === path));
  assert.equal(access.error, 'WS_STALLED');
  assert.equal(access.close_code, 1008);
  assert.equal(access.closed_by, 'gateway');
});

test('an upstream that stays stalled for stall_timeout is closed with 1008 WS_STALLED, the client with 1001', async () => {
  const path = '/stall/upstream-stops';
  const { ws } = await openWs(`${gw.ws}${path}`);
  const rec = up.get(path);
  rec.ws.pause(); // the upstream reads nothing from now on
  rec.onMessage = () => {};
  const c = closed(ws);
  const { written } = await flood(ws);
  assert.ok(written < CAP);
  assert.deepEqual(await c, { code: 1001, reason: '' });
  const line = await eventually(() => gw.log.lines.find((l) => l.msg === 'websocket peer stopped reading' && l.peer === 'upstream'));
  assert.equal(line.error, 'WS_STALLED');
  rec.ws.resume();
  assert.deepEqual((await rec.closed).close, { code: 1008, reason: 'WS_STALLED' });
});
