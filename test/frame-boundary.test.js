import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from 'ws';
import { FrameBoundaryTracker, buildCloseFrame } from '../dist/transport/ws/frame-boundary.js';

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Feeds each piece whole and returns the tracker. */
function track(...pieces) {
  const t = new FrameBoundaryTracker();
  for (const p of pieces) assert.equal(t.feed(p), p.length);
  return t;
}

/** Offsets (in `buf`) at which a tracker fed with stopAtBoundary stops, given chunk splits. */
function boundaries(buf, splits) {
  const t = new FrameBoundaryTracker();
  const found = [];
  let start = 0;
  for (const end of [...splits, buf.length]) {
    let chunk = buf.subarray(start, end);
    let base = start;
    while (chunk.length > 0) {
      let n = t.feed(chunk, true);
      if (n === 0) {
        // At a boundary at entry. Every frame is at least 2 bytes, so one byte
        // fed without stopping moves past it without reaching the next one.
        assert.ok(t.atBoundary);
        assert.equal(t.feed(chunk.subarray(0, 1)), 1);
        assert.equal(t.atBoundary, false);
        n = 1;
      }
      base += n;
      chunk = chunk.subarray(n);
      if (t.atBoundary) found.push(base);
    }
    start = end;
  }
  return { t, found };
}

// A stream with every header shape, interleaving and a close:
//   text "He" FIN=0, masked          (8 bytes)    ends at 8
//   ping "p", unmasked               (3 bytes)    ends at 11
//   continuation "llo" FIN=1, masked (9 bytes)    ends at 20
//   pong, empty, unmasked            (2 bytes)    ends at 22
//   binary 200 bytes, 16-bit length, masked (8 + 200)  ends at 230
//   close 1001 "bye", masked         (6 + 5)      ends at 241
const STREAM = Buffer.concat([
  hex('01 82 37fa213d 7f9f'),
  hex('89 01 70'),
  hex('80 83 37fa213d 5b964e'),
  hex('8a 00'),
  hex('82 fe 00c8 01020304'),
  Buffer.alloc(200, 0x5a),
  hex('88 85 00000000 03e9 627965'),
]);
const STREAM_ENDS = [8, 11, 20, 22, 230, 241];

test('an unmasked 7-bit text frame: one message, back at a boundary', () => {
  const t = track(hex('81 05 68656c6c6f'));
  assert.equal(t.messages, 1);
  assert.equal(t.controlFrames, 0);
  assert.equal(t.atBoundary, true);
  assert.equal(t.error, undefined);
});

test('a masked text frame (RFC 6455 5.7 example)', () => {
  const t = track(hex('81 85 37fa213d 7f9f4d5152'));
  assert.equal(t.messages, 1);
  assert.equal(t.atBoundary, true);
});

test('a 16-bit length frame is skipped by its length', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('82 7e 0100'));
  assert.equal(t.atBoundary, false);
  t.feed(Buffer.alloc(255));
  assert.equal(t.atBoundary, false);
  assert.equal(t.messages, 0);
  t.feed(Buffer.alloc(1));
  assert.equal(t.atBoundary, true);
  assert.equal(t.messages, 1);
});

test('a 64-bit length frame is skipped by its length, masked', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('82 ff 0000000000010000 a1b2c3d4'));
  t.feed(Buffer.alloc(0x10000 - 1));
  assert.equal(t.atBoundary, false);
  t.feed(hex('00 81 00'));
  assert.equal(t.messages, 2);
  assert.equal(t.atBoundary, true);
});

test('a 64-bit length above 2^32 is counted exactly', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('82 7f 0000000100000001'));
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < 4096; i++) t.feed(big); // 2^32 bytes, without allocating them
  assert.equal(t.atBoundary, false);
  assert.equal(t.feed(hex('ff 81 00'), true), 1);
  assert.equal(t.messages, 1);
  t.feed(hex('81 00'));
  assert.equal(t.messages, 2);
});

/** A Buffer behind a Proxy that counts reads of its bytes. */
function counted(buf) {
  const reads = { n: 0 };
  const proxy = new Proxy(buf, {
    get(target, prop) {
      if (typeof prop === 'string' && /^\d+$/.test(prop)) reads.n++;
      return Reflect.get(target, prop);
    },
  });
  return { proxy, reads };
}

test('payload bytes are skipped, not read: only headers and close codes are looked at', () => {
  const chunk = Buffer.concat([
    hex('82 fe ffff 01020304'),
    Buffer.alloc(0xffff),
    hex('81 7e 1000'),
    Buffer.alloc(0x1000),
    hex('88 82 00000000 03e8'),
  ]);
  const { proxy, reads } = counted(chunk);
  const t = new FrameBoundaryTracker();
  assert.equal(t.feed(proxy), chunk.length);
  assert.equal(t.messages, 2);
  assert.equal(t.closeCode, 1000);
  assert.ok(reads.n <= 3 * 14 + 2, `read ${reads.n} bytes`);
});

test('a stream split at every byte offset gives the same counts and boundaries', () => {
  for (let s = 0; s <= STREAM.length; s++) {
    const t = track(STREAM.subarray(0, s), STREAM.subarray(s));
    assert.equal(t.messages, 2, `split at ${s}`);
    assert.equal(t.controlFrames, 3, `split at ${s}`);
    assert.equal(t.closeCode, 1001, `split at ${s}`);
    assert.equal(t.closeSeen, true, `split at ${s}`);
    assert.equal(t.atBoundary, true, `split at ${s}`);
    assert.equal(t.error, undefined, `split at ${s}`);
  }
});

test('a stream split at every pair of offsets stops at every frame end', () => {
  for (let a = 0; a <= STREAM.length; a += 3) {
    for (let b = a; b <= STREAM.length; b++) {
      const { t, found } = boundaries(STREAM, [a, b]);
      assert.deepEqual(found, STREAM_ENDS, `splits at ${a}, ${b}`);
      assert.equal(t.messages, 2);
      assert.equal(t.closeCode, 1001);
    }
  }
});

test('a stream fed one byte at a time is at a boundary exactly after each frame', () => {
  const t = new FrameBoundaryTracker();
  const at = [];
  for (let i = 0; i < STREAM.length; i++) {
    t.feed(STREAM.subarray(i, i + 1));
    if (t.atBoundary) at.push(i + 1);
  }
  assert.deepEqual(at, STREAM_ENDS);
});

test('stopAtBoundary at a boundary at entry consumes nothing', () => {
  const t = new FrameBoundaryTracker();
  assert.equal(t.feed(hex('81 00 81 00'), true), 0);
  assert.equal(t.messages, 0);
  t.feed(hex('81 01'));
  assert.equal(t.feed(hex('41 81 00'), true), 1);
  assert.equal(t.messages, 1);
  assert.equal(t.feed(hex('81 00'), true), 0);
});

test('stopAtBoundary mid-frame stops at the end of that frame', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('81 05 6865'));
  assert.equal(t.feed(hex('6c6c6f 81 02 6869'), true), 3);
  assert.equal(t.messages, 1);
  assert.equal(t.atBoundary, true);
});

test('stopAtBoundary with a header split across chunks stops after its empty frame', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('89'));
  assert.equal(t.atBoundary, false);
  assert.equal(t.feed(hex('00 81 00'), true), 1);
  assert.equal(t.controlFrames, 1);
  assert.equal(t.atBoundary, true);
});

test('stopAtBoundary without a boundary in the chunk consumes it all', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('82 7e 0100'));
  assert.equal(t.feed(Buffer.alloc(100), true), 100);
  assert.equal(t.atBoundary, false);
});

test('a fragmented message with control frames between fragments counts once', () => {
  const t = track(
    hex('01 01 61'), // text, FIN=0
    hex('89 00'), // ping
    hex('00 01 62'), // continuation, FIN=0
    hex('8a 01 78'), // pong
    hex('80 01 63'), // continuation, FIN=1
  );
  assert.equal(t.messages, 1);
  assert.equal(t.controlFrames, 2);
  assert.equal(t.error, undefined);
});

test('a message is counted when its final frame is complete, not at its header', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('82 03 0102'));
  assert.equal(t.messages, 0);
  t.feed(hex('03'));
  assert.equal(t.messages, 1);
});

test('close code from an unmasked close frame', () => {
  const t = track(hex('88 02 03e8'));
  assert.equal(t.closeCode, 1000);
  assert.equal(t.closeSeen, true);
  assert.equal(t.controlFrames, 1);
});

test('close code from a masked close frame is unmasked', () => {
  // 4000 = 0x0fa0, key 11223344: 0f^11=1e, a0^22=82
  const t = track(hex('88 84 11223344 1e82 7777'));
  assert.equal(t.closeCode, 4000);
  assert.equal(t.closeSeen, true);
});

test('close code split between its two bytes, masked', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('88 82 11223344 1e'));
  assert.equal(t.closeCode, undefined);
  assert.equal(t.closeSeen, false);
  t.feed(hex('82'));
  assert.equal(t.closeCode, 4000);
  assert.equal(t.closeSeen, true);
});

test('close code known before the close frame is complete', () => {
  const t = new FrameBoundaryTracker();
  t.feed(hex('88 05 03e9 62'));
  assert.equal(t.closeCode, 1001);
  assert.equal(t.closeSeen, false);
  t.feed(hex('7965'));
  assert.equal(t.closeSeen, true);
});

test('a close frame with an empty payload means 1005', () => {
  const t = track(hex('88 80 01020304'));
  assert.equal(t.closeCode, 1005);
  assert.equal(t.closeSeen, true);
});

test('the first close code is kept', () => {
  const t = track(hex('88 02 03e8 88 02 03e9'));
  assert.equal(t.closeCode, 1000);
});

const PROTOCOL_ERRORS = [
  ['reserved data opcode 3', '83 00', 'WS_RESERVED_OPCODE'],
  ['reserved data opcode 7', '87 00', 'WS_RESERVED_OPCODE'],
  ['reserved control opcode 0xB', '8b 00', 'WS_RESERVED_OPCODE'],
  ['reserved control opcode 0xF', '8f 00', 'WS_RESERVED_OPCODE'],
  ['ping with a 126-byte payload', '89 7e 007e', 'WS_CONTROL_TOO_LONG'],
  ['fragmented ping', '09 00', 'WS_CONTROL_FRAGMENTED'],
  ['close with a 1-byte payload', '88 01 03', 'WS_CLOSE_BAD_LENGTH'],
  ['64-bit length with its top bit set', '82 7f 8000000000000000', 'WS_LENGTH_TOP_BIT'],
  ['64-bit length above 2^53 - 1', '82 7f 0020000000000000', 'WS_FRAME_TOO_LONG'],
  ['continuation with nothing to continue', '80 00', 'WS_UNEXPECTED_CONTINUATION'],
  ['text frame while a fragmented message is open', '01 00 81 00', 'WS_EXPECTED_CONTINUATION'],
];

for (const [name, bytes, code] of PROTOCOL_ERRORS) {
  test(`protocol error: ${name} -> ${code}`, () => {
    const buf = hex(bytes);
    const t = new FrameBoundaryTracker();
    assert.equal(t.feed(buf), buf.length);
    assert.equal(t.error, code);
    assert.equal(t.atBoundary, false);
    // From now on everything is consumed, even with stopAtBoundary.
    assert.equal(t.feed(hex('81 00 81 00'), true), 4);
    assert.equal(t.messages, 0);
  });

  test(`protocol error split at every byte: ${name} -> ${code}`, () => {
    const buf = hex(bytes);
    for (let s = 0; s <= buf.length; s++) {
      const t = track(buf.subarray(0, s), buf.subarray(s));
      assert.equal(t.error, code, `split at ${s}`);
    }
  });
}

test('buildCloseFrame unmasked is the exact close frame', () => {
  assert.deepEqual(buildCloseFrame(1000, 'bye', false), hex('88 05 03e8 627965'));
});

test('buildCloseFrame 1005 is an empty close frame', () => {
  assert.deepEqual(buildCloseFrame(1005, 'ignored', false), hex('88 00'));
  const masked = buildCloseFrame(1005, '', true);
  assert.equal(masked.length, 6);
  assert.deepEqual(masked.subarray(0, 2), hex('88 80'));
});

test('buildCloseFrame masked round-trips through the tracker', () => {
  for (const code of [1000, 1001, 1011, 3000, 4999]) {
    const frame = buildCloseFrame(code, 'going away', true);
    assert.equal(frame[1], 0x80 | 12);
    const t = track(frame);
    assert.equal(t.closeCode, code);
    assert.equal(t.closeSeen, true);
    assert.equal(t.atBoundary, true);
  }
});

test('buildCloseFrame masked twice uses different keys', () => {
  const a = buildCloseFrame(1000, 'x', true);
  const b = buildCloseFrame(1000, 'x', true);
  // 2^-32 chance of a false failure.
  assert.notDeepEqual(a.subarray(2, 6), b.subarray(2, 6));
});

test('buildCloseFrame cuts the reason to 123 bytes, never inside a character', () => {
  const ascii = buildCloseFrame(1000, 'a'.repeat(200), false);
  assert.equal(ascii[1], 125);
  assert.equal(ascii.length, 127);

  // 2-byte characters: 61 fit (122 bytes), the 62nd would need 124.
  const two = buildCloseFrame(1000, 'é'.repeat(100), false);
  assert.equal(two[1], 2 + 122);
  assert.equal(two.subarray(4).toString('utf8'), 'é'.repeat(61));

  // 4-byte characters after 1 ASCII byte: 1 + 30 * 4 = 121 bytes.
  const four = buildCloseFrame(1000, 'a' + '😀'.repeat(40), false);
  assert.equal(four[1], 2 + 121);
  assert.equal(four.subarray(4).toString('utf8'), 'a' + '😀'.repeat(30));

  // Exactly 123 bytes fit as they are.
  const exact = buildCloseFrame(1000, 'abc' + '😀'.repeat(30), false);
  assert.equal(exact[1], 125);
});

test('buildCloseFrame refuses codes that must not be sent', () => {
  for (const code of [0, 999, 1004, 1006, 1015, 1016, 2999, 5000, 1000.5, NaN]) {
    assert.throws(() => buildCloseFrame(code, '', false), TypeError, `code ${code}`);
  }
});

/** Feeds frames to a ws Receiver and resolves with the close it reports. */
function wsConclude(frame, isServer) {
  return new Promise((resolve, reject) => {
    const receiver = new Receiver({ isServer, maxPayload: 1024 });
    receiver.on('conclude', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
    receiver.on('error', reject);
    receiver.write(frame);
  });
}

test('buildCloseFrame unmasked is accepted by the ws receiver of a client', async () => {
  const got = await wsConclude(buildCloseFrame(1001, 'Idle timeout', false), false);
  assert.deepEqual(got, { code: 1001, reason: 'Idle timeout' });
});

test('buildCloseFrame masked is accepted by the ws receiver of a server', async () => {
  const reason = 'é'.repeat(100);
  const got = await wsConclude(buildCloseFrame(4000, reason, true), true);
  assert.deepEqual(got, { code: 4000, reason: 'é'.repeat(61) });
});

test('buildCloseFrame 1005 is accepted by the ws receiver as no status', async () => {
  const got = await wsConclude(buildCloseFrame(1005, '', true), true);
  assert.deepEqual(got, { code: 1005, reason: '' });
});

// scan: one header at a time, for a tunnel whose route has a plugin frame phase.

/** Headers of STREAM as scan reports them: [start, opcode, fin, length]. */
const STREAM_HEADERS = [
  [0, 0x1, false, 2],
  [8, 0x9, true, 1],
  [11, 0x0, true, 3],
  [20, 0xa, true, 0],
  [22, 0x2, true, 200],
  [230, 0x8, true, 5],
];

/**
 * Drives a tracker with scan over `buf` cut at `splits`, as the tunnel does: reports
 * every header (with its start in the whole stream) and rebuilds what the tunnel would
 * forward (a header split across chunks held back, then sent whole). `refuse(i)`
 * true stops before the i-th header.
 */
function scanAll(buf, splits, refuse = () => false) {
  const t = new FrameBoundaryTracker();
  const headers = [];
  const out = [];
  let base = 0;
  for (const end of [...splits, buf.length]) {
    const chunk = buf.subarray(base, end);
    let from = 0;
    let pos = 0;
    while (pos < chunk.length) {
      pos = t.scan(chunk, pos);
      if (!t.frameReady) break;
      const start = t.frameStart;
      if (refuse(headers.length)) {
        if (start > from) out.push(chunk.subarray(from, start));
        return { t, headers, out: Buffer.concat(out), refusedAt: base + start };
      }
      headers.push([base + start, t.frameOpcode, t.frameFin, t.frameLength]);
      if (start < 0) {
        out.push(t.header());
        from = pos;
      }
    }
    const held = Math.max(from, chunk.length - t.pendingHeader);
    out.push(chunk.subarray(from, held));
    base = end;
  }
  return { t, headers, out: Buffer.concat(out) };
}

test('scan reports each header with its start, opcode, FIN and length; the counters match feed', () => {
  const { t, headers, out } = scanAll(STREAM, []);
  assert.deepEqual(headers, STREAM_HEADERS);
  assert.ok(out.equals(STREAM));
  assert.equal(t.messages, 2);
  assert.equal(t.controlFrames, 3);
  assert.equal(t.closeCode, 1001);
  assert.equal(t.atBoundary, true);
  assert.equal(t.frameReady, false, 'the last call consumed the rest without a new header');
});

test('scan at every split point, and one byte at a time: the same headers, and what is forwarded is the stream itself', () => {
  const cuts = [[...Array(STREAM.length - 1).keys()].map((i) => i + 1)];
  for (let i = 1; i < STREAM.length; i++) cuts.push([i]);
  for (const splits of cuts) {
    const { headers, out } = scanAll(STREAM, splits);
    // frameStart of a header split across chunks is negative: where it began, counted from this chunk.
    assert.deepEqual(headers, STREAM_HEADERS, `splits ${splits.length > 3 ? 'every byte' : splits}`);
    assert.ok(out.equals(STREAM), `forwarded bytes equal the stream (splits ${splits.length > 3 ? 'every byte' : splits})`);
  }
});

test('scan refusing before a header, at every split point: exactly the bytes before that frame are forwarded', () => {
  for (let k = 0; k < STREAM_HEADERS.length; k++) {
    for (let cut = 1; cut < STREAM.length; cut++) {
      const { out, refusedAt } = scanAll(STREAM, [cut], (i) => i === k);
      assert.equal(refusedAt, STREAM_HEADERS[k][0]);
      assert.ok(out.equals(STREAM.subarray(0, STREAM_HEADERS[k][0])), `refuse header ${k}, cut at ${cut}`);
    }
  }
});

test('scan and feed share state: scan into a payload, then feed with stopAtBoundary ends it', () => {
  const t = new FrameBoundaryTracker();
  const chunk = STREAM.subarray(0, 100);
  let pos = 0;
  for (let i = 0; i < 5; i++) pos = t.scan(chunk, pos);
  assert.equal(t.frameStart, 22);
  assert.equal(t.frameLength, 200);
  assert.equal(t.scan(chunk, pos), chunk.length);
  assert.equal(t.frameReady, false);
  assert.equal(t.feed(STREAM.subarray(100), true), 130);
  assert.equal(t.atBoundary, true);
  assert.equal(t.messages, 2);
});

test('scan of a header still incomplete: pendingHeader bytes are held, then the header completes in the next chunk', () => {
  const t = new FrameBoundaryTracker();
  const f = hex('82 fe 00c8 01020304');
  assert.equal(t.scan(f.subarray(0, 3), 0), 3);
  assert.equal(t.frameReady, false);
  assert.equal(t.pendingHeader, 3);
  assert.equal(t.atBoundary, false);
  assert.equal(t.scan(f.subarray(3), 0), 5);
  assert.equal(t.frameReady, true);
  assert.equal(t.frameStart, -3);
  assert.equal(t.frameLength, 200);
  assert.ok(t.header().equals(f));
  assert.equal(t.pendingHeader, 0);
});

test('scan of a protocol violation sets error and consumes the chunk', () => {
  const t = new FrameBoundaryTracker();
  const bad = hex('83 00 81 00');
  assert.equal(t.scan(bad, 0), bad.length);
  assert.equal(t.error, 'WS_RESERVED_OPCODE');
  assert.equal(t.frameReady, false);
  assert.equal(t.pendingHeader, 0);
});
