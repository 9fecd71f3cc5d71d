// RFC 6455 conformance of the gateway as a WebSocket server, in frame mode, with an
// echo upstream behind it. Cases follow the Autobahn TestSuite's groups 1 to 7
// (framing, pings and pongs, reserved bits, opcodes, fragmentation, UTF-8, close
// handling), numbered as there; then the hardening cases the issue adds (masking,
// lengths, limits). Each case uses a raw socket and hand-built frames, and asserts
// what the client received (frames, pongs, close code) and what the upstream
// received (messages, pings, close code).
//
// Where Autobahn sends a valid message and a violation in one write and accepts
// either outcome for the echo, these cases wait for the echo first: the gateway
// forwards a complete message at once, but its echo is a round trip away, and a
// test must not depend on which comes first.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { config, startGateway } from './helpers.js';
import { OP, closePayload, describe, frame, rawClient, recordingUpstream } from './conformance-helpers.js';

let up;
let gw;
let n = 0;

before(async () => {
  up = await recordingUpstream();
  gw = await startGateway(
    config(
      up.port,
      `  - id: conf
    uri: /c/*
    enable_websocket: true
    upstream_id: up
    websocket: { max_fragments: 64 }
    plugins:
      websocket-size-limit: {}`,
    ),
  );
});

after(async () => {
  await gw.close();
  await up.close();
});

/** A fresh connection on its own path, so the upstream's record is this case's. */
async function open(name) {
  const path = `/c/${name.replace(/[^\w.-]/g, '_')}-${++n}`;
  const c = await rawClient(gw.port, path);
  return { c, path };
}

/** No frame from a server may be masked. */
function assertUnmasked(frames) {
  assert.ok(frames.every((f) => !f.masked), `a server frame was masked: ${describe(frames)}`);
}

/** Close normally (after the expected frames arrived); returns every frame received. */
async function finish(c, code = 1000) {
  c.close(code);
  const frames = await c.ended;
  assertUnmasked(frames);
  assert.equal(c.closeFrame()?.code, code, describe(frames));
  return frames;
}

/** The gateway must fail the connection with `code`; returns every frame received. */
async function failed(c, code) {
  const frames = await c.ended;
  assertUnmasked(frames);
  assert.equal(c.closeFrame()?.code, code, `expected close ${code}, got ${describe(frames)}`);
  return frames;
}

/** What the upstream received once its connection closed: { messages, pings, close }. */
async function upstreamSaw(path) {
  // The gateway joins the upstream before it answers 101: the record exists by now.
  const rec = up.get(path);
  assert.ok(rec, `the upstream never saw ${path}`);
  return rec.closed;
}

function texts(rec) {
  return rec.messages.map((m) => (m.binary ? m.data : m.data.toString()));
}

/** Echo case: send, wait for `expect` data frames, close; check client and upstream. */
async function echoCase(name, send, expect, { binary = false } = {}) {
  const { c, path } = await open(name);
  await send(c);
  const echoed = await c.waitFor(expect.length, (f) => f.opcode < 8);
  for (let i = 0; i < expect.length; i++) {
    assert.equal(echoed[i].opcode, binary ? OP.BINARY : OP.TEXT);
    assert.equal(echoed[i].fin, true, 'the gateway re-frames each message as one frame');
    assert.equal(echoed[i].rsv, 0);
    assert.deepEqual(echoed[i].payload, Buffer.from(expect[i]));
  }
  const frames = await finish(c);
  assert.equal(frames.filter((f) => f.opcode < 8).length, expect.length, describe(frames));
  const rec = await upstreamSaw(path);
  assert.deepEqual(rec.messages.map((m) => m.data), expect.map((e) => Buffer.from(e)));
  assert.ok(rec.messages.every((m) => m.binary === binary));
  assert.equal(rec.close.code, 1000);
  return { frames, rec };
}

/** Fail case: after `send`, the client gets close `code`, the upstream 1001 and only `forwarded`. */
async function failCase(name, send, code, forwarded = []) {
  const { c, path } = await open(name);
  await send(c);
  const frames = await failed(c, code);
  const rec = await upstreamSaw(path);
  assert.deepEqual(texts(rec), forwarded);
  assert.equal(rec.close.code, 1001, 'the other side is told the gateway is going away');
  return { frames, rec, c };
}

/** Send a text message and wait for its echo (so what follows cannot overtake it). */
async function echoFirst(c, text = 'Hello, world!') {
  c.write(frame(OP.TEXT, text));
  await c.waitFor(1, (f) => f.opcode === OP.TEXT);
}

// --- 1. Framing -------------------------------------------------------------------

const LENGTHS = [0, 125, 126, 127, 128, 65535, 65536];
LENGTHS.forEach((len, i) => {
  test(`1.1.${i + 1} a text message of ${len} bytes is echoed unchanged`, async () => {
    const payload = '*'.repeat(len);
    await echoCase(`1.1.${i + 1}`, (c) => c.write(frame(OP.TEXT, payload)), [payload]);
  });
  test(`1.2.${i + 1} a binary message of ${len} bytes is echoed unchanged`, async () => {
    const payload = Buffer.alloc(len, 0xfe);
    await echoCase(`1.2.${i + 1}`, (c) => c.write(frame(OP.BINARY, payload)), [payload], { binary: true });
  });
});

test('1.1.8 a 65536-byte text message written in chops of 997 bytes is echoed unchanged', async () => {
  const payload = '*'.repeat(65536);
  await echoCase('1.1.8', (c) => c.writeChopped(frame(OP.TEXT, payload), 997), [payload]);
});

test('1.2.8 a 65536-byte binary message written in chops of 997 bytes is echoed unchanged', async () => {
  const payload = Buffer.alloc(65536, 0xfe);
  await echoCase('1.2.8', (c) => c.writeChopped(frame(OP.BINARY, payload), 997), [payload], { binary: true });
});

// --- 2. Pings and pongs -----------------------------------------------------------

/** Ping case: every ping gets a pong with its payload; pings stop at the gateway. */
async function pingCase(name, send, expected) {
  const { c, path } = await open(name);
  await send(c);
  const pongs = await c.waitFor(expected.length, (f) => f.opcode === OP.PONG);
  assert.deepEqual(pongs.map((p) => p.payload), expected.map((e) => Buffer.from(e)));
  const frames = await finish(c);
  assert.equal(frames.filter((f) => f.opcode !== OP.CLOSE).length, expected.length, describe(frames));
  const rec = await upstreamSaw(path);
  assert.equal(rec.pings.length, 0, 'the gateway answers pings itself (hop by hop)');
  assert.equal(rec.pongs.length, 0);
  assert.equal(rec.messages.length, 0);
}

test('2.1 a ping without payload gets a pong without payload', async () => {
  await pingCase('2.1', (c) => c.write(frame(OP.PING)), ['']);
});

test('2.2 a ping with a text payload gets a pong with the same payload', async () => {
  await pingCase('2.2', (c) => c.write(frame(OP.PING, 'Hello, world!')), ['Hello, world!']);
});

test('2.3 a ping with a binary payload gets a pong with the same payload', async () => {
  const p = Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]);
  await pingCase('2.3', (c) => c.write(frame(OP.PING, p)), [p]);
});

test('2.4 a ping with a 125-byte payload gets a pong with the same payload', async () => {
  const p = Buffer.alloc(125, 0xfe);
  await pingCase('2.4', (c) => c.write(frame(OP.PING, p)), [p]);
});

test('2.5 a ping with a 126-byte payload fails the connection: 1002', async () => {
  const { frames } = await failCase('2.5', (c) => c.write(frame(OP.PING, Buffer.alloc(126, 0xfe))), 1002);
  assert.equal(frames.filter((f) => f.opcode === OP.PONG).length, 0);
});

test('2.6 a 125-byte ping written one byte at a time gets its pong', async () => {
  const p = Buffer.alloc(125, 0xfe);
  await pingCase('2.6', (c) => c.writeChopped(frame(OP.PING, p), 1), [p]);
});

test('2.7 an unsolicited pong without payload is ignored', async () => {
  await pingCase('2.7', (c) => c.write(frame(OP.PONG)), []);
});

test('2.8 an unsolicited pong with payload is ignored', async () => {
  await pingCase('2.8', (c) => c.write(frame(OP.PONG, 'unsolicited pong payload')), []);
});

test('2.9 an unsolicited pong then a ping: only the ping is answered', async () => {
  await pingCase('2.9', (c) => c.write(frame(OP.PONG, 'unsolicited pong payload'), frame(OP.PING, 'ping payload')), ['ping payload']);
});

test('2.10 ten pings get ten pongs, in order', async () => {
  const payloads = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
  await pingCase('2.10', (c) => c.write(...payloads.map((p) => frame(OP.PING, p))), payloads);
});

test('2.11 ten pings written one byte at a time get ten pongs, in order', async () => {
  const payloads = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
  await pingCase('2.11', (c) => c.writeChopped(Buffer.concat(payloads.map((p) => frame(OP.PING, p))), 1), payloads);
});

// --- 3. Reserved bits -------------------------------------------------------------

test('3.1 a text frame with RSV1 set (no extension negotiated) fails the connection: 1002', async () => {
  await failCase('3.1', (c) => c.write(frame(OP.TEXT, 'Hello, world!', { rsv: 4 })), 1002);
});

const RSV_CASES = [
  ['3.2', 'a text frame with RSV2', OP.TEXT, 2, false],
  ['3.3', 'a text frame with RSV1+RSV2, written one byte at a time', OP.TEXT, 6, true],
  ['3.4', 'a text frame with RSV3, written one byte at a time', OP.TEXT, 1, true],
  ['3.5', 'a binary frame with RSV1+RSV3', OP.BINARY, 5, false],
  ['3.6', 'a ping with RSV2+RSV3', OP.PING, 3, false],
  ['3.7', 'a close frame with all RSV bits', OP.CLOSE, 7, false],
];
for (const [id, what, opcode, rsv, chopped] of RSV_CASES) {
  test(`${id} after an echoed message, ${what} fails the connection with 1002; a ping after it is not answered`, async () => {
    const { frames } = await failCase(
      id,
      async (c) => {
        await echoFirst(c);
        const bad = Buffer.concat([frame(opcode, opcode === OP.CLOSE ? closePayload(1000) : 'Hello, world!', { rsv }), frame(OP.PING)]);
        if (chopped) await c.writeChopped(bad, 1);
        else c.write(bad);
      },
      1002,
      ['Hello, world!'],
    );
    assert.equal(frames.filter((f) => f.opcode === OP.PONG).length, 0, describe(frames));
  });
}

// --- 4. Opcodes -------------------------------------------------------------------

for (const [i, opcode] of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15].entries()) {
  const id = opcode < 8 ? `4.1.${i + 1}` : `4.2.${i - 4}`;
  const kind = opcode < 8 ? 'non-control' : 'control';
  test(`${id} reserved ${kind} opcode ${opcode}, after an echoed message, fails the connection: 1002`, async () => {
    const { frames } = await failCase(
      id,
      async (c) => {
        await echoFirst(c);
        c.write(frame(opcode, i % 2 ? 'reserved opcode payload' : ''), frame(OP.PING));
      },
      1002,
      ['Hello, world!'],
    );
    assert.equal(frames.filter((f) => f.opcode === OP.PONG).length, 0);
  });
}

// --- 5. Fragmentation -------------------------------------------------------------

test('5.1 a fragmented ping fails the connection: 1002', async () => {
  await failCase('5.1', (c) => c.write(frame(OP.PING, 'fragment1', { fin: false }), frame(OP.CONT, 'fragment2')), 1002);
});

test('5.2 a fragmented pong fails the connection: 1002', async () => {
  await failCase('5.2', (c) => c.write(frame(OP.PONG, 'fragment1', { fin: false }), frame(OP.CONT, 'fragment2')), 1002);
});

const twoFragments = () => [frame(OP.TEXT, 'fragment1', { fin: false }), frame(OP.CONT, 'fragment2')];

test('5.3 a text message in two fragments reaches the upstream whole and is echoed', async () => {
  await echoCase('5.3', (c) => c.write(...twoFragments()), ['fragment1fragment2']);
});

test('5.4 a text message in two fragments written separately is echoed whole', async () => {
  await echoCase(
    '5.4',
    async (c) => {
      const [a, b] = twoFragments();
      c.write(a);
      await new Promise((r) => setTimeout(r, 10));
      c.write(b);
    },
    ['fragment1fragment2'],
  );
});

test('5.5 a text message in two fragments written one byte at a time is echoed whole', async () => {
  await echoCase('5.5', (c) => c.writeChopped(Buffer.concat(twoFragments()), 1), ['fragment1fragment2']);
});

async function pingBetweenFragments(name, write) {
  const { c, path } = await open(name);
  await write(c, [frame(OP.TEXT, 'fragment1', { fin: false }), frame(OP.PING, 'ping payload'), frame(OP.CONT, 'fragment2')]);
  await c.waitFor(1, (f) => f.opcode === OP.TEXT);
  const kinds = c.frames.map((f) => f.opcode);
  assert.deepEqual(kinds, [OP.PONG, OP.TEXT], 'the pong is sent at once, the message when complete');
  assert.deepEqual(c.frames[0].payload, Buffer.from('ping payload'));
  assert.equal(c.frames[1].payload.toString(), 'fragment1fragment2');
  await finish(c);
  const rec = await upstreamSaw(path);
  assert.deepEqual(texts(rec), ['fragment1fragment2']);
  assert.equal(rec.pings.length, 0);
}

test('5.6 a ping between two fragments is answered at once; the message is echoed whole', async () => {
  await pingBetweenFragments('5.6', (c, frames) => c.write(...frames));
});

test('5.7 same, each frame written separately', async () => {
  await pingBetweenFragments('5.7', async (c, frames) => {
    for (const f of frames) {
      c.write(f);
      await new Promise((r) => setImmediate(r));
    }
  });
});

test('5.8 same, written one byte at a time', async () => {
  await pingBetweenFragments('5.8', (c, frames) => c.writeChopped(Buffer.concat(frames), 1));
});

const nothingToContinue = (fin) => [frame(OP.CONT, 'non-continuation payload', { fin }), frame(OP.TEXT, 'Hello, world!')];

test('5.9 a final continuation frame with nothing to continue fails the connection: 1002', async () => {
  await failCase('5.9', (c) => c.write(...nothingToContinue(true)), 1002);
});

test('5.10 same, written one byte at a time', async () => {
  await failCase('5.10', (c) => c.writeChopped(Buffer.concat(nothingToContinue(true)), 1), 1002);
});

test('5.12 a non-final continuation frame with nothing to continue fails the connection: 1002', async () => {
  await failCase('5.12', (c) => c.write(...nothingToContinue(false)), 1002);
});

test('5.13 same, written one byte at a time', async () => {
  await failCase('5.13', (c) => c.writeChopped(Buffer.concat(nothingToContinue(false)), 1), 1002);
});

test('5.15 a complete fragmented message, then a continuation with nothing to continue: the message is forwarded, then 1002', async () => {
  await failCase(
    '5.15',
    (c) =>
      c.write(
        ...twoFragments(),
        frame(OP.CONT, 'fragment3', { fin: false }),
        frame(OP.TEXT, 'fragment4'),
      ),
    1002,
    ['fragment1fragment2'],
  );
});

test('5.16 continuation first, then a fragmented text message: 1002, nothing forwarded', async () => {
  await failCase(
    '5.16',
    (c) => c.write(frame(OP.CONT, 'fragment1', { fin: false }), frame(OP.TEXT, 'fragment2', { fin: false }), frame(OP.CONT, 'fragment3')),
    1002,
  );
});

test('5.17 final continuation first, then a fragmented text message: 1002, nothing forwarded', async () => {
  await failCase(
    '5.17',
    (c) => c.write(frame(OP.CONT, 'fragment1'), frame(OP.TEXT, 'fragment2', { fin: false }), frame(OP.CONT, 'fragment3')),
    1002,
  );
});

test('5.18 a new text frame while a fragmented message is open fails the connection: 1002', async () => {
  await failCase('5.18', (c) => c.write(frame(OP.TEXT, 'fragment1', { fin: false }), frame(OP.TEXT, 'fragment2')), 1002);
});

async function fiveFragmentsWithPings(name, write) {
  const { c, path } = await open(name);
  await write(c, [frame(OP.TEXT, 'fragment1', { fin: false }), frame(OP.CONT, 'fragment2', { fin: false }), frame(OP.PING, 'pongme 1!')]);
  await c.waitFor(1, (f) => f.opcode === OP.PONG);
  await write(c, [frame(OP.CONT, 'fragment3', { fin: false }), frame(OP.CONT, 'fragment4', { fin: false }), frame(OP.PING, 'pongme 2!')]);
  await c.waitFor(2, (f) => f.opcode === OP.PONG);
  assert.equal(c.dataFrames().length, 0, 'nothing of an incomplete message is forwarded');
  await write(c, [frame(OP.CONT, 'fragment5')]);
  await c.waitFor(1, (f) => f.opcode === OP.TEXT);
  assert.deepEqual(c.pongs().map((p) => p.payload.toString()), ['pongme 1!', 'pongme 2!']);
  assert.equal(c.dataFrames()[0].payload.toString(), 'fragment1fragment2fragment3fragment4fragment5');
  await finish(c);
  const rec = await upstreamSaw(path);
  assert.deepEqual(texts(rec), ['fragment1fragment2fragment3fragment4fragment5']);
}

test('5.19 a text message in five fragments with pings in between: pongs at once, then the whole message', async () => {
  await fiveFragmentsWithPings('5.19', (c, frames) => c.write(...frames));
});

test('5.20 same, written one byte at a time', async () => {
  await fiveFragmentsWithPings('5.20', (c, frames) => c.writeChopped(Buffer.concat(frames), 1));
});

// --- 6. UTF-8 handling ------------------------------------------------------------

test('6.1.1 an empty text message is echoed', async () => {
  await echoCase('6.1.1', (c) => c.write(frame(OP.TEXT, '')), ['']);
});

test('6.1.2 a text message of three empty fragments is echoed as one empty message', async () => {
  await echoCase('6.1.2', (c) => c.write(frame(OP.TEXT, '', { fin: false }), frame(OP.CONT, '', { fin: false }), frame(OP.CONT, '')), ['']);
});

test('6.1.3 empty first and last fragments around a payload are echoed as the payload', async () => {
  await echoCase(
    '6.1.3',
    (c) => c.write(frame(OP.TEXT, '', { fin: false }), frame(OP.CONT, 'middle frame payload', { fin: false }), frame(OP.CONT, '')),
    ['middle frame payload'],
  );
});

const HELLO = 'Hello-µ@ßöäüàá-UTF-8!!';
const KOSME = 'κόσμε';

/** Split `bytes` into one-byte fragments of one text message. */
function byteFragments(bytes) {
  return bytes.map((b, i) => frame(i === 0 ? OP.TEXT : OP.CONT, Buffer.from([b]), { fin: i === bytes.length - 1 }));
}

test('6.2.1 valid UTF-8 in one frame is echoed', async () => {
  await echoCase('6.2.1', (c) => c.write(frame(OP.TEXT, HELLO)), [HELLO]);
});

test('6.2.2 valid UTF-8 split into two fragments at a code point boundary is echoed', async () => {
  const b = Buffer.from(HELLO);
  await echoCase('6.2.2', (c) => c.write(frame(OP.TEXT, b.subarray(0, 6), { fin: false }), frame(OP.CONT, b.subarray(6))), [HELLO]);
});

test('6.2.3 valid UTF-8 in one-byte fragments (code points split across frames) is echoed', async () => {
  await echoCase('6.2.3', (c) => c.write(...byteFragments([...Buffer.from(HELLO)])), [HELLO]);
});

test('6.2.4 κόσμε in one-byte fragments is echoed', async () => {
  await echoCase('6.2.4', (c) => c.write(...byteFragments([...Buffer.from(KOSME)])), [KOSME]);
});

const KOSME_EDITED = [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64];

test('6.3.1 invalid UTF-8 (a surrogate) in a text message fails the connection: 1007, nothing forwarded', async () => {
  await failCase('6.3.1', (c) => c.write(frame(OP.TEXT, Buffer.from(KOSME_EDITED))), 1007);
});

test('6.3.2 the same invalid text in one-byte fragments: 1007, nothing forwarded', async () => {
  await failCase('6.3.2', (c) => c.write(...byteFragments(KOSME_EDITED)), 1007);
});

test('6.4.1 invalid UTF-8 in the first fragment: 1007 by the end of the message, nothing forwarded', async () => {
  // Autobahn's "fail fast" cases: the gateway validates a text message when it is
  // complete (non-strict in Autobahn's terms), bounded by the size limit.
  await failCase(
    '6.4.1',
    (c) => c.write(frame(OP.TEXT, Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xf4, 0x90, 0x80, 0x80]), { fin: false }), frame(OP.CONT, 'edited')),
    1007,
  );
});

// Autobahn 6.5 to 6.23: single code points and sequences, valid ones echoed, invalid ones refused.
const VALID_UTF8 = [
  ['6.5.1', 'κόσμε', [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5]],
  ['6.6.x', 'first 1-byte sequence U+0000', [0x00]],
  ['6.7.2', 'first 2-byte sequence U+0080', [0xc2, 0x80]],
  ['6.7.3', 'first 3-byte sequence U+0800', [0xe0, 0xa0, 0x80]],
  ['6.7.4', 'first 4-byte sequence U+10000', [0xf0, 0x90, 0x80, 0x80]],
  ['6.8.1', 'last 1-byte sequence U+007F', [0x7f]],
  ['6.8.2', 'last 2-byte sequence U+07FF', [0xdf, 0xbf]],
  ['6.9.1', 'U+D7FF', [0xed, 0x9f, 0xbf]],
  ['6.9.2', 'U+E000', [0xee, 0x80, 0x80]],
  ['6.9.3', 'U+FFFD', [0xef, 0xbf, 0xbd]],
  ['6.9.4', 'U+10FFFF', [0xf4, 0x8f, 0xbf, 0xbf]],
  ['6.23.1', 'noncharacter U+FFFE', [0xef, 0xbf, 0xbe]],
  ['6.23.2', 'noncharacter U+FFFF', [0xef, 0xbf, 0xbf]],
  ['6.23.3', 'noncharacter U+1FFFE', [0xf0, 0x9f, 0xbf, 0xbe]],
];
const INVALID_UTF8 = [
  ['6.10.1', 'U+110000 (over the Unicode range)', [0xf4, 0x90, 0x80, 0x80]],
  ['6.10.2', 'a 5-byte sequence', [0xf8, 0x88, 0x80, 0x80, 0x80]],
  ['6.10.3', 'a 6-byte sequence', [0xfc, 0x84, 0x80, 0x80, 0x80, 0x80]],
  ['6.12.1', 'a lone continuation byte', [0x80]],
  ['6.12.2', 'two continuation bytes', [0x80, 0xbf]],
  ['6.13.1', 'a lone start byte followed by a space', [0xc0, 0x20]],
  ['6.14.1', 'a 2-byte sequence without its last byte', [0xc2]],
  ['6.14.2', 'a 3-byte sequence without its last byte', [0xe0, 0xa0]],
  ['6.14.3', 'a 4-byte sequence without its last byte', [0xf0, 0x90, 0x80]],
  ['6.17.1', 'the impossible byte 0xFE', [0xfe]],
  ['6.17.2', 'the impossible byte 0xFF', [0xff]],
  ['6.18.1', 'an overlong "/" in 2 bytes', [0xc0, 0xaf]],
  ['6.18.2', 'an overlong "/" in 3 bytes', [0xe0, 0x80, 0xaf]],
  ['6.18.3', 'an overlong "/" in 4 bytes', [0xf0, 0x80, 0x80, 0xaf]],
  ['6.19.1', 'an overlong NUL in 2 bytes', [0xc0, 0x80]],
  ['6.20.1', 'a UTF-16 high surrogate U+D800', [0xed, 0xa0, 0x80]],
  ['6.20.7', 'a UTF-16 low surrogate U+DFFF', [0xed, 0xbf, 0xbf]],
  ['6.21.1', 'a surrogate pair U+D800 U+DC00', [0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80]],
];

for (const [id, what, bytes] of VALID_UTF8) {
  test(`${id} valid UTF-8, ${what}, is echoed unchanged`, async () => {
    const b = Buffer.from(bytes);
    await echoCase(id, (c) => c.write(frame(OP.TEXT, b)), [b]);
  });
}

for (const [id, what, bytes] of INVALID_UTF8) {
  test(`${id} invalid UTF-8, ${what}: 1007, nothing forwarded`, async () => {
    await failCase(id, (c) => c.write(frame(OP.TEXT, Buffer.from(bytes))), 1007);
  });
}

// --- 7. Close handling ------------------------------------------------------------

test('7.1.1 a message then a close: the echo, then the close; the upstream gets both', async () => {
  const { c, path } = await open('7.1.1');
  await echoFirst(c);
  await finish(c, 1000);
  const rec = await upstreamSaw(path);
  assert.deepEqual(texts(rec), ['Hello, world!']);
  assert.deepEqual(rec.close, { code: 1000, reason: '' });
});

test('7.1.2 a second close after the first is ignored: one close back', async () => {
  const { c, path } = await open('7.1.2');
  c.write(frame(OP.CLOSE, closePayload(1000)), frame(OP.CLOSE, closePayload(1000)));
  const frames = await c.ended;
  assert.deepEqual(frames.map((f) => f.opcode), [OP.CLOSE]);
  assert.equal((await upstreamSaw(path)).close.code, 1000);
});

test('7.1.3 a ping after a close is not answered', async () => {
  const { c } = await open('7.1.3');
  c.write(frame(OP.CLOSE, closePayload(1000)), frame(OP.PING, 'Hello, world!'));
  const frames = await c.ended;
  assert.deepEqual(frames.map((f) => f.opcode), [OP.CLOSE]);
});

test('7.1.4 a text message after a close is neither echoed nor forwarded', async () => {
  const { c, path } = await open('7.1.4');
  c.write(frame(OP.CLOSE, closePayload(1000)), frame(OP.TEXT, 'Hello, world!'));
  const frames = await c.ended;
  assert.deepEqual(frames.map((f) => f.opcode), [OP.CLOSE]);
  const rec = await upstreamSaw(path);
  assert.equal(rec.messages.length, 0);
  assert.equal(rec.close.code, 1000);
});

test('7.1.5 a close between two fragments: the close is honoured, the half message never forwarded', async () => {
  const { c, path } = await open('7.1.5');
  c.write(frame(OP.TEXT, 'fragment1', { fin: false }), frame(OP.CLOSE, closePayload(1000)), frame(OP.CONT, 'fragment2'));
  const frames = await c.ended;
  assert.deepEqual(frames.map((f) => f.opcode), [OP.CLOSE]);
  const rec = await upstreamSaw(path);
  assert.equal(rec.messages.length, 0);
  assert.equal(rec.close.code, 1000);
});

test('7.1.6 a 256 KiB message, a close and a ping in one write: the message is forwarded whole, the ping not answered', async () => {
  const { c, path } = await open('7.1.6');
  const big = 'BAsd7&jh23'.repeat(26214);
  c.write(frame(OP.TEXT, big), frame(OP.CLOSE, closePayload(1000)), frame(OP.PING, 'Hello, world!'));
  const frames = await c.ended;
  assert.equal(frames.filter((f) => f.opcode === OP.PONG).length, 0);
  assert.equal(c.closeFrame()?.code, 1000);
  const rec = await upstreamSaw(path);
  assert.deepEqual(texts(rec), [big]);
  assert.equal(rec.close.code, 1000);
});

test('7.3.1 a close without payload is answered with a close without payload; the upstream sees 1005', async () => {
  const { c, path } = await open('7.3.1');
  c.write(frame(OP.CLOSE));
  const frames = await c.ended;
  assert.equal(frames.length, 1);
  assert.equal(frames[0].opcode, OP.CLOSE);
  assert.equal(frames[0].payload.length, 0);
  assert.deepEqual((await upstreamSaw(path)).close, { code: 1005, reason: '' });
});

test('7.3.2 a close with a 1-byte payload fails the connection: 1002', async () => {
  await failCase('7.3.2', (c) => c.write(frame(OP.CLOSE, Buffer.from([0x03]))), 1002);
});

test('7.3.3 close 1000 is answered with 1000 and passed on', async () => {
  const { c, path } = await open('7.3.3');
  await finish(c, 1000);
  assert.deepEqual((await upstreamSaw(path)).close, { code: 1000, reason: '' });
});

test('7.3.4 close 1000 with a reason: the reason is echoed and passed on', async () => {
  const { c, path } = await open('7.3.4');
  c.close(1000, 'Hello World!');
  await c.ended;
  assert.deepEqual(c.closeFrame(), { code: 1000, reason: 'Hello World!' });
  assert.deepEqual((await upstreamSaw(path)).close, { code: 1000, reason: 'Hello World!' });
});

test('7.3.5 close 1000 with a 123-byte reason (the most a close frame holds) is echoed and passed on', async () => {
  const reason = '*'.repeat(123);
  const { c, path } = await open('7.3.5');
  c.close(1000, reason);
  await c.ended;
  assert.deepEqual(c.closeFrame(), { code: 1000, reason });
  assert.deepEqual((await upstreamSaw(path)).close, { code: 1000, reason });
});

test('7.3.6 close with a 124-byte reason (a 126-byte control frame) fails the connection: 1002', async () => {
  await failCase('7.3.6', (c) => c.write(frame(OP.CLOSE, closePayload(1000, '*'.repeat(124)))), 1002);
});

test('7.5.1 a close reason that is not valid UTF-8 fails the connection: 1007', async () => {
  await failCase('7.5.1', (c) => c.write(frame(OP.CLOSE, closePayload(1000, Buffer.from(KOSME_EDITED)))), 1007);
});

const VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
for (const [i, code] of VALID_CODES.entries()) {
  test(`7.7.${i + 1} close code ${code} is echoed and passed on to the upstream`, async () => {
    const { c, path } = await open(`7.7.${i + 1}`);
    c.close(code);
    await c.ended;
    assert.equal(c.closeFrame()?.code, code);
    assert.equal((await upstreamSaw(path)).close.code, code);
  });
}

const INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
for (const [i, code] of INVALID_CODES.entries()) {
  test(`7.9.${i + 1} close code ${code} must not be sent: 1002, the upstream gets 1001`, async () => {
    await failCase(`7.9.${i + 1}`, (c) => c.write(frame(OP.CLOSE, closePayload(code))), 1002);
  });
}

// --- Hardening beyond Autobahn: masking, lengths, limits ----------------------------

test('an unmasked client frame fails the connection: 1002, nothing forwarded', async () => {
  await failCase('unmasked', (c) => c.write(frame(OP.TEXT, 'Hello, world!', { mask: false })), 1002);
});

test('a 64-bit length with its top bit set fails the connection at once: 1002 (no payload sent, nothing allocated)', async () => {
  const { frames } = await failCase('msb', (c) => c.write(frame(OP.BINARY, Buffer.alloc(0), { length: 2n ** 63n + 5n, lengthBytes: 8 })), 1002);
  assert.equal(frames.length, 1);
});

test('a frame announcing 2^62 bytes is refused at once: 1009 (no payload sent, nothing allocated)', async () => {
  await failCase('2^62', (c) => c.write(frame(OP.BINARY, Buffer.alloc(0), { length: 2n ** 62n, lengthBytes: 8 })), 1009);
});

test('a frame announcing more than the size limit is refused after its header: 1009, no payload needed', async () => {
  const { c } = await failCase('over-limit-header', (c) => c.write(frame(OP.TEXT, Buffer.alloc(0), { length: 2 * 1024 * 1024 })), 1009);
  assert.equal(c.closeFrame().reason, 'WS_MESSAGE_TOO_BIG');
});

test('a protocol error closes with the catalogue code as the reason', async () => {
  const { c } = await failCase('reason', (c) => c.write(frame(OP.TEXT, 'x', { rsv: 4 })), 1002);
  assert.equal(c.closeFrame().reason, 'WS_PROTOCOL_ERROR');
});

test('a message in more fragments than max_fragments is refused: 1009, nothing forwarded', async () => {
  const frags = Array.from({ length: 65 }, (_, i) => frame(i === 0 ? OP.TEXT : OP.CONT, 'x', { fin: i === 64 }));
  await failCase('fragments', (c) => c.write(...frags), 1009);
});

test('a message in exactly max_fragments fragments is echoed', async () => {
  const frags = Array.from({ length: 64 }, (_, i) => frame(i === 0 ? OP.TEXT : OP.CONT, 'x', { fin: i === 63 }));
  await echoCase('fragments-ok', (c) => c.write(...frags), ['x'.repeat(64)]);
});

test('lengths in a longer encoding than needed are accepted (RFC 6455 asks senders, not receivers, for the minimal one)', async () => {
  await echoCase('non-minimal', (c) => c.write(frame(OP.TEXT, 'short', { lengthBytes: 8 })), ['short']);
});

test('permessage-deflate is off by default: an offer gets no extension in the 101, and the upstream is offered none', async () => {
  const path = '/c/no-deflate';
  const c = await rawClient(gw.port, path, { headers: 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' });
  assert.doesNotMatch(c.response, /sec-websocket-extensions/i);
  await finish(c);
  const rec = await upstreamSaw(path);
  assert.equal(rec.extensions, undefined);
});
