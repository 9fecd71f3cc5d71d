import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseBoundaryTracker, HEARTBEAT } from '../dist/transport/http/sse-boundary.js';

const bytes = (s) => Buffer.from(s, 'latin1');

function track(...pieces) {
  const t = new SseBoundaryTracker();
  for (const p of pieces) t.feed(p);
  return t;
}

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

// [case, stream, at an event boundary after it]
const CASES = [
  ['nothing yet', '', true],
  ['an event ended by LF LF', 'data: a\n\n', true],
  ['an event line without its blank line', 'data: a\n', false],
  ['a line without its line end', 'data: a', false],
  ['an event ended by CRLF CRLF', 'data: a\r\n\r\n', true],
  ['an event ended by CR CR', 'data: a\r\r', true],
  ['a CRLF is one line end, not two', 'data: a\r\n', false],
  ['a CR ending the blank line is a boundary before its LF arrives', 'data: a\r\n\r', true],
  ['an LF after a blank-line CR belongs to it', 'data: a\r\r\n', true],
  ['LF then CRLF', 'data: a\n\r\n', true],
  ['CRLF then LF', 'data: a\r\n\n', true],
  ['LF then CR', 'data: a\n\r', true],
  ['mixed line ends inside one event', 'id: 1\r\nevent: x\rdata: y\n\r\n', true],
  ['a comment-only block ended by a blank line', ': keep-alive\n\n', true],
  ['a comment line without its blank line', ': keep-alive\n', false],
  ['blank lines between events', '\n\n\r\n\r\r', true],
  ['the start of the next event', 'data: a\n\ndata: b', false],
  ['the next event line ended', 'data: a\n\ndata: b\n', false],
  ['a field without a value', 'data\n\n', true],
  ['the heartbeat itself', ':\n\n', true],
];

for (const [name, stream, expected] of CASES) {
  test(`${name}: atBoundary ${expected}, whole and at every split point`, () => {
    const buf = bytes(stream);
    assert.equal(track(buf).atBoundary, expected, 'whole');
    for (let s = 0; s <= buf.length; s++) {
      assert.equal(track(buf.subarray(0, s), buf.subarray(s)).atBoundary, expected, `split at ${s}`);
    }
    for (let a = 0; a <= buf.length; a++) {
      for (let b = a; b <= buf.length; b++) {
        const t = track(buf.subarray(0, a), buf.subarray(a, b), buf.subarray(b));
        assert.equal(t.atBoundary, expected, `splits at ${a}, ${b}`);
      }
    }
  });
}

// 'data: a' CRLF CRLF, 'data: b' CR CR, 'data: c' LF LF, ': hi' CRLF CRLF
const MIXED = bytes('data: a\r\n\r\ndata: b\r\rdata: c\n\n: hi\r\n\r\n');
// Offsets (bytes fed) at which the stream is between events.
const MIXED_BOUNDARIES = [0, 10, 11, 20, 29, 36, 37];

test('mixed line ends fed one byte at a time are between events exactly after each blank line', () => {
  const t = new SseBoundaryTracker();
  const at = t.atBoundary ? [0] : [];
  for (let i = 0; i < MIXED.length; i++) {
    t.feed(MIXED.subarray(i, i + 1));
    if (t.atBoundary) at.push(i + 1);
  }
  assert.deepEqual(at, MIXED_BOUNDARIES);
});

test('mixed line ends split at every offset agree with the byte-at-a-time state', () => {
  for (let s = 0; s <= MIXED.length; s++) {
    const t = new SseBoundaryTracker();
    t.feed(MIXED.subarray(0, s));
    assert.equal(t.atBoundary, MIXED_BOUNDARIES.includes(s), `after ${s} bytes`);
    t.feed(MIXED.subarray(s));
    assert.equal(t.atBoundary, true, `split at ${s}`);
  }
});

test('a CRLF split across chunks does not end a blank line', () => {
  const t = new SseBoundaryTracker();
  t.feed(bytes('data: a\r'));
  assert.equal(t.atBoundary, false);
  t.feed(bytes('\n'));
  assert.equal(t.atBoundary, false);
  t.feed(bytes('\r'));
  assert.equal(t.atBoundary, true);
  t.feed(bytes('\n'));
  assert.equal(t.atBoundary, true);
  t.feed(bytes('d'));
  assert.equal(t.atBoundary, false);
});

test('an empty chunk changes nothing', () => {
  const t = track(bytes('data: a\r'));
  t.feed(Buffer.alloc(0));
  t.feed(bytes('\n'));
  assert.equal(t.atBoundary, false);
});

test('a large chunk is judged from its last bytes only', () => {
  const body = Buffer.alloc(1 << 20, 0x61);
  const chunk = Buffer.concat([bytes('data: '), body, bytes('\n\n')]);
  const { proxy, reads } = counted(chunk);
  const t = new SseBoundaryTracker();
  t.feed(proxy);
  assert.equal(t.atBoundary, true);
  assert.ok(reads.n <= 8, `read ${reads.n} bytes`);

  const open = counted(Buffer.concat([bytes('data: '), body]));
  t.feed(open.proxy);
  assert.equal(t.atBoundary, false);
  assert.equal(open.reads.n, 1);
});

test('HEARTBEAT is a comment line and a blank line', () => {
  assert.deepEqual(HEARTBEAT, Buffer.from('3a0a0a', 'hex'));
});
