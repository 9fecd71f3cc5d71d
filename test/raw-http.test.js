// HTTP/1.1 on a raw upstream socket: request head building, the bounded
// response-head parser, and the body framing (BodyDecoder) that relays a refusal
// byte for byte and decodes an event stream's chunks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyDecoder } from '../dist/transport/http/body.js';
import { buildRequestHead, HeadParseError, parseResponseHead } from '../dist/transport/http/raw.js';

test('a 101 head is parsed with raw header names kept and the bytes after it returned', () => {
  const buf = Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n\x81\x02hi', 'latin1');
  const h = parseResponseHead(buf);
  assert.equal(h.status, 101);
  assert.equal(h.statusText, 'Switching Protocols');
  assert.deepEqual(h.raw[0], ['Upgrade', 'websocket']);
  assert.equal(h.headers['sec-websocket-accept'], 'abc=');
  assert.deepEqual([...h.rest], [0x81, 0x02, 0x68, 0x69]);
});

test('an incomplete head returns undefined at every split point', () => {
  const text = 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n';
  for (let i = 0; i < text.length; i++) assert.equal(parseResponseHead(Buffer.from(text.slice(0, i))), undefined);
  assert.equal(parseResponseHead(Buffer.from(text)).status, 403);
});

test('malformed status lines, header lines and oversized heads are refused', () => {
  assert.throws(() => parseResponseHead(Buffer.from('HTTP/2 101 X\r\n\r\n')), HeadParseError);
  assert.throws(() => parseResponseHead(Buffer.from('HTTP/1.1 101 X\r\nbad line\r\n\r\n')), HeadParseError);
  assert.throws(() => parseResponseHead(Buffer.from('HTTP/1.1 101 X\r\nName : v\r\n\r\n')), HeadParseError);
  assert.throws(() => parseResponseHead(Buffer.from('HTTP/1.1 101 X\r\n folded: v\r\n\r\n')), HeadParseError);
  assert.throws(() => parseResponseHead(Buffer.alloc(20_000, 0x61)), HeadParseError);
});

test('repeated headers are joined in the lowercase map', () => {
  const h = parseResponseHead(Buffer.from('HTTP/1.1 101 X\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n'));
  assert.equal(h.headers['set-cookie'], 'a=1, b=2');
  assert.equal(h.raw.length, 2);
});

test('the request head refuses header values with CR or LF (no header injection)', () => {
  assert.throws(() => buildRequestHead('/x', { 'x-a': 'ok\r\nEvil: 1' }));
  assert.equal(buildRequestHead('/x', { host: 'a', 'x-list': ['1', '2'] }), 'GET /x HTTP/1.1\r\nhost: a\r\nx-list: 1\r\nx-list: 2\r\n\r\n');
});

test('Content-Length bodies end after exactly that many bytes; the rest is not body', () => {
  const b = new BodyDecoder({ 'content-length': '5' }, 403);
  assert.equal(b.feed(Buffer.from('ab')), 2);
  assert.equal(b.done, false);
  assert.equal(b.feed(Buffer.from('cdeGET /smuggled')), 3);
  assert.equal(b.done, true);
});

test('chunked bodies end at the last chunk and trailers, at every split point', () => {
  const body = '4\r\nnope\r\n3;ext=1\r\n!!!\r\n0\r\nX-Trailer: 1\r\n\r\n';
  const after = 'GET /smuggled HTTP/1.1\r\n\r\n';
  for (let i = 0; i <= body.length; i++) {
    const b = new BodyDecoder({ 'transfer-encoding': 'chunked' }, 401);
    const n1 = b.feed(Buffer.from(body.slice(0, i)));
    const n2 = b.done ? 0 : b.feed(Buffer.from(body.slice(i) + after));
    assert.equal(n1 + n2, body.length, `split at ${i}`);
    assert.equal(b.done, true);
  }
});

test('204 and bodies without framing', () => {
  assert.equal(new BodyDecoder({}, 204).done, true);
  const b = new BodyDecoder({}, 500);
  assert.equal(b.feed(Buffer.from('until close')), 11);
  assert.equal(b.done, false);
});

/** Feed `parts` in order; returns the payload, the bytes counted as body and the decoder. */
function decode(headers, status, parts) {
  const b = new BodyDecoder(headers, status);
  const out = [];
  let used = 0;
  for (const p of parts) used += b.feed(Buffer.from(p, 'latin1'), (s) => out.push(Buffer.from(s)));
  return { payload: Buffer.concat(out).toString('latin1'), used, b };
}

test('chunked payload is decoded the same at every split point, in two and in one-byte reads', () => {
  const body = '11\r\ndata: {"seq":1}\n\n\r\n5;name=v\r\nhello\r\n0\r\nT: 1\r\n\r\n';
  const want = 'data: {"seq":1}\n\nhello';
  for (let i = 0; i <= body.length; i++) {
    const { payload, used, b } = decode({ 'transfer-encoding': 'chunked' }, 200, [body.slice(0, i), body.slice(i) + 'NEXT']);
    assert.equal(payload, want, `split at ${i}`);
    assert.equal(used, body.length);
    assert.equal(b.done, true);
    assert.equal(b.malformed, false);
  }
  const { payload, b } = decode({ 'transfer-encoding': 'chunked' }, 200, [...body]);
  assert.equal(payload, want);
  assert.equal(b.done, true);
});

test('a chunk of one read is handed over as that read, not a copy', () => {
  const b = new BodyDecoder({ 'content-length': '3' }, 200);
  const read = Buffer.from('abc');
  let got;
  b.feed(read, (s) => (got = s));
  assert.equal(got, read);
  const c = new BodyDecoder({ 'transfer-encoding': 'chunked' }, 200);
  const r2 = Buffer.from('3\r\nxyz\r\n');
  let slice;
  c.feed(r2, (s) => (slice = s));
  assert.equal(slice.buffer, r2.buffer);
  assert.equal(slice.toString(), 'xyz');
});

test('broken chunked framing is reported, not guessed at', () => {
  for (const bad of ['zz\r\n', '-1\r\n', '3\r\nabcX\r\n', `${'1'.repeat(5000)}`, '\r\n', '3 4\r\n']) {
    const { b } = decode({ 'transfer-encoding': 'chunked' }, 200, [bad]);
    assert.equal(b.malformed, true, JSON.stringify(bad.slice(0, 20)));
    assert.equal(b.done, true);
  }
  const trailers = decode({ 'transfer-encoding': 'chunked' }, 200, ['0\r\n', ...Array(200).fill(`X: ${'a'.repeat(100)}\r\n`)]);
  assert.equal(trailers.b.malformed, true, 'an endless trailer section is cut off');
});

test('close-delimited and Content-Length bodies', () => {
  const open = decode({}, 200, ['a', 'b']);
  assert.equal(open.payload, 'ab');
  assert.equal(open.b.closeDelimited, true);
  assert.equal(open.b.done, false);
  const cl = decode({ 'content-length': '3' }, 200, ['ab', 'cd']);
  assert.equal(cl.payload, 'abc');
  assert.equal(cl.used, 3);
  assert.equal(cl.b.closeDelimited, false);
});
