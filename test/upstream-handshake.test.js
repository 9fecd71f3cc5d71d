// The raw upstream handshake: request head building, the bounded response-head
// parser, and the body-end tracker used to relay a refusal byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyEnd, buildRequestHead, HeadParseError, parseResponseHead } from '../dist/transport/ws/upstream-handshake.js';

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
  const b = new BodyEnd({ 'content-length': '5' }, 403);
  assert.equal(b.feed(Buffer.from('ab')), 2);
  assert.equal(b.done, false);
  assert.equal(b.feed(Buffer.from('cdeGET /smuggled')), 3);
  assert.equal(b.done, true);
});

test('chunked bodies end at the last chunk and trailers, at every split point', () => {
  const body = '4\r\nnope\r\n3;ext=1\r\n!!!\r\n0\r\nX-Trailer: 1\r\n\r\n';
  const after = 'GET /smuggled HTTP/1.1\r\n\r\n';
  for (let i = 0; i <= body.length; i++) {
    const b = new BodyEnd({ 'transfer-encoding': 'chunked' }, 401);
    const n1 = b.feed(Buffer.from(body.slice(0, i)));
    const n2 = b.done ? 0 : b.feed(Buffer.from(body.slice(i) + after));
    assert.equal(n1 + n2, body.length, `split at ${i}`);
    assert.equal(b.done, true);
  }
});

test('204 and bodies without framing', () => {
  assert.equal(new BodyEnd({}, 204).done, true);
  const b = new BodyEnd({}, 500);
  assert.equal(b.feed(Buffer.from('until close')), 11);
  assert.equal(b.done, false);
});
