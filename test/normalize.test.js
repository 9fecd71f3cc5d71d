import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, splitTarget } from '../dist/router/normalize.js';

function ok(raw, expected) {
  assert.deepEqual(normalizePath(raw), { ok: true, path: expected }, `${raw} -> ${expected}`);
}

function refused(raw, reason) {
  assert.deepEqual(normalizePath(raw), { ok: false, reason }, `${JSON.stringify(raw)} refused: ${reason}`);
}

test('dot-dot segments climb out: /ws/../admin is /admin', () => {
  ok('/ws/../admin', '/admin');
});

test('encoded dot-dot segments climb out after decoding, in any case mix', () => {
  ok('/ws/%2e%2e/admin', '/admin');
  ok('/ws/%2E%2e/admin', '/admin');
  ok('/ws/%2E%2E/admin', '/admin');
  ok('/ws/.%2e/admin', '/admin');
  ok('/ws/%2e./admin', '/admin');
  ok('/a/%2e/b', '/a/b');
});

test('single-dot segments are removed', () => {
  ok('/a/./b', '/a/b');
  ok('/./a', '/a');
  ok('/a/.', '/a/');
});

test('dot-dot above the root stays at the root', () => {
  ok('/..', '/');
  ok('/../..', '/');
  ok('/../../admin', '/admin');
  ok('/a/../../b', '/b');
  ok('/%2e%2e/%2E%2E/x/', '/x/');
});

test('a trailing dot segment leaves a trailing slash (RFC 3986 5.2.4)', () => {
  ok('/a/b/..', '/a/');
  ok('/a/b/.', '/a/b/');
});

test('runs of slashes collapse: //admin is /admin', () => {
  ok('//admin', '/admin');
  ok('/a//b///c', '/a/b/c');
  ok('/a//', '/a/');
  ok('//', '/');
});

test('a trailing slash is kept', () => {
  ok('/a/b/', '/a/b/');
  ok('/', '/');
});

test('dots that are not whole segments are ordinary characters', () => {
  ok('/app.js', '/app.js');
  ok('/a/.hidden', '/a/.hidden');
  ok('/a/...', '/a/...');
  ok('/a/..b', '/a/..b');
  ok('/a./b', '/a./b');
});

test('encoded unreserved characters are decoded: /%61dmin is /admin', () => {
  ok('/%61dmin', '/admin');
  ok('/%41%5a%30%2D%5F%7E', '/AZ0-_~');
  ok('/~%7E%7e', '/~~~');
});

test('other percent-encodings are kept with upper-case hex', () => {
  ok('/a%20b', '/a%20b');
  ok('/a%c3%a9', '/a%C3%A9');
  ok('/a%C3%A9', '/a%C3%A9');
  ok('/q%3f', '/q%3F');
  ok('/h%23x', '/h%23x');
  ok('/p%25', '/p%25');
});

test('refuses an encoded slash: /a%2Fb', () => {
  refused('/a%2Fb', 'encoded slash');
  refused('/a%2fb', 'encoded slash');
  refused('/a/%2f../admin', 'encoded slash');
});

test('refuses a backslash, raw or encoded', () => {
  refused('/a\\b', 'backslash');
  refused('/a%5cb', 'backslash');
  refused('/a%5Cb', 'backslash');
  refused('/..\\admin', 'backslash');
});

test('refuses raw and encoded control characters', () => {
  refused('/a%00', 'control character');
  refused('/a\u0000b', 'control character');
  refused('/a\tb', 'control character');
  refused('/a\r\nb', 'control character');
  refused('/a%0d%0a', 'control character');
  refused('/a%1F', 'control character');
  refused('/a%7f', 'control character');
  refused('/a\u007fb', 'control character');
  refused('/%2e/\u0001', 'control character');
});

test('refuses malformed percent sequences', () => {
  refused('/%zz', 'bad percent-encoding');
  refused('/%', 'bad percent-encoding');
  refused('/a%4', 'bad percent-encoding');
  refused('/%G1', 'bad percent-encoding');
  refused('/%1G', 'bad percent-encoding');
  refused('/a%2', 'bad percent-encoding');
});

test('refuses a raw # (a fragment is not part of a request target)', () => {
  refused('/a#b', 'fragment');
  refused('/a/..#', 'fragment');
});

test('refuses raw non-ASCII characters', () => {
  refused('/caf\u00e9', 'non-ascii character');
  refused('/%41\u00e9', 'non-ascii character');
});

test('refuses anything but origin-form', () => {
  refused('', 'not origin-form');
  refused('*', 'not origin-form');
  refused('admin', 'not origin-form');
  refused('http://example.com/a', 'not origin-form');
});

test('fast path: an ordinary path comes back as the same string', () => {
  const p = '/ws/chat/room-1/app.js';
  const r = normalizePath(p);
  assert.equal(r.ok, true);
  assert.equal(r.path, p);
});

test('refusals are stable shared results (no allocation per refusal)', () => {
  assert.equal(normalizePath('/a%2Fb'), normalizePath('/c%2fd'));
  assert.ok(Object.isFrozen(normalizePath('/a\\b')));
});

test('splitTarget separates path and query', () => {
  assert.deepEqual(splitTarget('/ws?token=a?b'), { path: '/ws', query: 'token=a?b' });
  assert.deepEqual(splitTarget('/ws'), { path: '/ws', query: '' });
  assert.deepEqual(splitTarget('/ws?'), { path: '/ws', query: '' });
});

test('splitTarget keeps a # in the path so that normalisation refuses it', () => {
  const a = splitTarget('/ws#x?q=1');
  assert.equal(normalizePath(a.path).ok, false);
  const b = splitTarget('/ws?q=1#x');
  assert.equal(b.query, '');
  assert.deepEqual(normalizePath(b.path), { ok: false, reason: 'fragment' });
});

test('a dot segment with parameters (/..;/, Tomcat-style) is refused: a servlet upstream would treat it as ..', () => {
  for (const p of ['/ws/..;/admin', '/ws/.;x/admin', '/ws/%2e%2e;/admin', '/ws/..;jsessionid=1/admin']) {
    assert.deepEqual(normalizePath(p), { ok: false, reason: 'dot segment with parameters' }, p);
  }
  assert.deepEqual(normalizePath('/a/b;v=1/c'), { ok: true, path: '/a/b;v=1/c' });
  assert.deepEqual(normalizePath('/a/..b;/c'), { ok: true, path: '/a/..b;/c' });
});
