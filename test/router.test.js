import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Router, checkUri, checkHost, normalizeHost } from '../dist/router/index.js';

function route(id, uris, extra = {}) {
  return { id, uris, hosts: [], methods: [], priority: 0, ...extra };
}

function idOf(router, path, { method = 'GET', host = 'example.com' } = {}) {
  return router.match(method, host, path)?.route.id;
}

function paramsOf(router, path, opts = {}) {
  const m = router.match(opts.method ?? 'GET', opts.host ?? 'example.com', path);
  return m === undefined ? undefined : { ...m.params };
}

test('exact uri matches only itself', () => {
  const r = new Router([route('chat', ['/chat'])]);
  assert.equal(idOf(r, '/chat'), 'chat');
  assert.equal(idOf(r, '/chat/'), undefined);
  assert.equal(idOf(r, '/chatx'), undefined);
  assert.equal(idOf(r, '/Chat'), undefined);
  assert.deepEqual(paramsOf(r, '/chat'), {});
});

test('exact match returns a pre-built result with frozen empty params', () => {
  const r = new Router([route('chat', ['/chat'])]);
  const a = r.match('GET', undefined, '/chat');
  const b = r.match('GET', undefined, '/chat');
  assert.equal(a, b);
  assert.ok(Object.isFrozen(a.params));
});

test('prefix /ws/chat/* matches /ws/chat/ and deeper, not /ws/chat; tail in params["*"]', () => {
  const r = new Router([route('p', ['/ws/chat/*'])]);
  assert.deepEqual(paramsOf(r, '/ws/chat/'), { '*': '' });
  assert.deepEqual(paramsOf(r, '/ws/chat/a/b'), { '*': 'a/b' });
  assert.equal(idOf(r, '/ws/chat'), undefined);
  assert.equal(idOf(r, '/ws/chatroom'), undefined);
});

test('prefix /ws* matches /ws, /wsx and /ws/a', () => {
  const r = new Router([route('p', ['/ws*'])]);
  assert.deepEqual(paramsOf(r, '/ws'), { '*': '' });
  assert.deepEqual(paramsOf(r, '/wsx'), { '*': 'x' });
  assert.deepEqual(paramsOf(r, '/ws/a'), { '*': '/a' });
  assert.equal(idOf(r, '/w'), undefined);
});

test('/* matches every path', () => {
  const r = new Router([route('all', ['/*'])]);
  assert.deepEqual(paramsOf(r, '/'), { '*': '' });
  assert.deepEqual(paramsOf(r, '/a/b'), { '*': 'a/b' });
});

test(':name matches one non-empty segment', () => {
  const r = new Router([route('room', ['/rooms/:room/ws'])]);
  assert.deepEqual(paramsOf(r, '/rooms/lobby/ws'), { room: 'lobby' });
  assert.deepEqual(paramsOf(r, '/rooms/a%20b/ws'), { room: 'a%20b' });
  assert.equal(idOf(r, '/rooms//ws'), undefined);
  assert.equal(idOf(r, '/rooms/a/b/ws'), undefined);
  assert.equal(idOf(r, '/rooms/lobby/wsx'), undefined);
  assert.equal(idOf(r, '/rooms/lobby/ws/'), undefined);
  assert.equal(idOf(r, '/rooms/lobby'), undefined);
});

test('several :params and a trailing * combine', () => {
  const r = new Router([route('t', ['/t/:tenant/rooms/:room/*'])]);
  assert.deepEqual(paramsOf(r, '/t/acme/rooms/42/x/y'), { tenant: 'acme', room: '42', '*': 'x/y' });
  assert.deepEqual(paramsOf(r, '/t/acme/rooms/42/'), { tenant: 'acme', room: '42', '*': '' });
  assert.equal(idOf(r, '/t/acme/rooms/42'), undefined);
});

test('a param result is a fresh object per match', () => {
  const r = new Router([route('room', ['/rooms/:room'])]);
  const a = r.match('GET', undefined, '/rooms/a');
  const b = r.match('GET', undefined, '/rooms/b');
  assert.equal(a.params.room, 'a');
  assert.equal(b.params.room, 'b');
  assert.equal(a.params.constructor, undefined, 'params has no prototype');
});

test('precedence: exact beats :param beats prefix, whatever the config order', () => {
  const r = new Router([
    route('prefix', ['/rooms/*']),
    route('param', ['/rooms/:room']),
    route('exact', ['/rooms/lobby']),
  ]);
  assert.equal(idOf(r, '/rooms/lobby'), 'exact');
  assert.equal(idOf(r, '/rooms/other'), 'param');
  assert.equal(idOf(r, '/rooms/other/deeper'), 'prefix');
});

test('precedence: a :param pattern beats even a longer prefix', () => {
  const r = new Router([route('prefix', ['/rooms/lobby*']), route('param', ['/rooms/:room'])]);
  assert.equal(idOf(r, '/rooms/lobby'), 'param');
  assert.equal(idOf(r, '/rooms/lobbyx'), 'param');
  assert.equal(idOf(r, '/rooms/lobby/x'), 'prefix');
});

test('precedence: the longer literal prefix wins', () => {
  const r = new Router([route('short', ['/ws/*']), route('long', ['/ws/chat/*']), route('root', ['/*'])]);
  assert.equal(idOf(r, '/ws/chat/1'), 'long');
  assert.equal(idOf(r, '/ws/news/1'), 'short');
  assert.equal(idOf(r, '/other'), 'root');
});

test('precedence: among param patterns more literal segments win, then no tail over tail', () => {
  const r = new Router([
    route('generic', ['/:a/:b/ws']),
    route('tail', ['/rooms/:room/*']),
    route('specific', ['/rooms/:room/ws']),
  ]);
  assert.equal(idOf(r, '/rooms/1/ws'), 'specific');
  assert.equal(idOf(r, '/rooms/1/other'), 'tail');
  assert.equal(idOf(r, '/x/1/ws'), 'generic');
});

test('precedence: same uri, a route with a matching host beats a host-less one', () => {
  const r = new Router([
    route('any', ['/ws'], { priority: 100 }),
    route('hosted', ['/ws'], { hosts: ['chat.example.com'] }),
  ]);
  assert.equal(idOf(r, '/ws', { host: 'chat.example.com' }), 'hosted');
  assert.equal(idOf(r, '/ws', { host: 'other.example.com' }), 'any');
  assert.equal(idOf(r, '/ws', { host: undefined }), 'any');
});

test('precedence: same uri and host binding, higher priority wins, then config order', () => {
  const r = new Router([
    route('first', ['/ws/*']),
    route('second', ['/ws/*']),
    route('high', ['/ws/*'], { priority: 5 }),
  ]);
  assert.equal(idOf(r, '/ws/x'), 'high');
  const r2 = new Router([route('first', ['/ws']), route('second', ['/ws'])]);
  assert.equal(idOf(r2, '/ws'), 'first');
});

test('uri specificity outranks host binding and priority', () => {
  const r = new Router([
    route('prefix-hosted', ['/ws/*'], { hosts: ['example.com'], priority: 99 }),
    route('exact', ['/ws/a']),
  ]);
  assert.equal(idOf(r, '/ws/a'), 'exact');
});

test('host is compared case-insensitively with the port stripped', () => {
  const r = new Router([route('h', ['/ws'], { hosts: ['Chat.Example.com'] })]);
  assert.equal(idOf(r, '/ws', { host: 'chat.example.com' }), 'h');
  assert.equal(idOf(r, '/ws', { host: 'CHAT.EXAMPLE.COM:8443' }), 'h');
  assert.equal(idOf(r, '/ws', { host: 'chat.example.com.' }), 'h');
  assert.equal(idOf(r, '/ws', { host: 'chat.example.org' }), undefined);
  assert.equal(idOf(r, '/ws', { host: undefined }), undefined);
});

test('IPv6 literal hosts, with and without port', () => {
  const r = new Router([route('v6', ['/ws'], { hosts: ['[::1]'] }), route('v6b', ['/x'], { hosts: ['::1'] })]);
  assert.equal(idOf(r, '/ws', { host: '[::1]:8080' }), 'v6');
  assert.equal(idOf(r, '/ws', { host: '[::1]' }), 'v6');
  assert.equal(idOf(r, '/x', { host: '[::1]:8080' }), 'v6b');
  assert.equal(idOf(r, '/ws', { host: '[::2]:8080' }), undefined);
});

test('*.example.com matches subdomains at any depth, not the apex', () => {
  const r = new Router([route('w', ['/ws'], { hosts: ['*.example.com'] })]);
  assert.equal(idOf(r, '/ws', { host: 'a.example.com' }), 'w');
  assert.equal(idOf(r, '/ws', { host: 'a.b.example.com:80' }), 'w');
  assert.equal(idOf(r, '/ws', { host: 'A.EXAMPLE.COM' }), 'w');
  assert.equal(idOf(r, '/ws', { host: 'example.com' }), undefined);
  assert.equal(idOf(r, '/ws', { host: 'badexample.com' }), undefined);
  assert.equal(idOf(r, '/ws', { host: 'example.com.evil.org' }), undefined);
});

test('a route may list several uris and several hosts', () => {
  const r = new Router([route('multi', ['/a', '/b/*'], { hosts: ['x.test', '*.y.test'] })]);
  assert.equal(idOf(r, '/a', { host: 'x.test' }), 'multi');
  assert.equal(idOf(r, '/b/1', { host: 'q.y.test' }), 'multi');
  assert.equal(idOf(r, '/a', { host: 'z.test' }), undefined);
});

test('methods: [] means any; a method mismatch skips to the next candidate', () => {
  const r = new Router([
    route('post-only', ['/api'], { methods: ['POST'], priority: 10 }),
    route('get-only', ['/api'], { methods: ['get'] }),
    route('any', ['/api/*']),
  ]);
  assert.equal(idOf(r, '/api', { method: 'POST' }), 'post-only');
  assert.equal(idOf(r, '/api', { method: 'GET' }), 'get-only');
  assert.equal(idOf(r, '/api', { method: 'PUT' }), undefined);
  assert.equal(idOf(r, '/api/x', { method: 'DELETE' }), 'any');
});

test('method mismatch on a pattern falls through to a less specific pattern', () => {
  const r = new Router([route('param', ['/r/:id'], { methods: ['POST'] }), route('prefix', ['/r/*'])]);
  assert.equal(idOf(r, '/r/1', { method: 'GET' }), 'prefix');
  assert.equal(idOf(r, '/r/1', { method: 'POST' }), 'param');
});

test('hasPath tells a method mismatch (405) from no route (404)', () => {
  const r = new Router([route('get', ['/ws'], { methods: ['GET'] })]);
  assert.equal(r.match('POST', 'h', '/ws'), undefined);
  assert.equal(r.hasPath('h', '/ws'), true);
  assert.equal(r.hasPath('h', '/nope'), false);
});

test('no route matches: undefined', () => {
  const r = new Router([route('a', ['/a'])]);
  assert.equal(idOf(r, '/b'), undefined);
  assert.equal(new Router([]).match('GET', 'h', '/'), undefined);
});

test('config uris are normalised like request paths', () => {
  const r = new Router([route('enc', ['/caf%c3%a9', '/%61bc/*'])]);
  assert.equal(idOf(r, '/caf%C3%A9'), 'enc');
  assert.equal(idOf(r, '/abc/x'), 'enc');
});

test('bad patterns and hosts throw TypeError at construction', () => {
  assert.throws(() => new Router([route('x', ['ws'])]), TypeError);
  assert.throws(() => new Router([route('x', ['/a/*/b'])]), TypeError);
  assert.throws(() => new Router([route('x', ['/a/:'])]), TypeError);
  assert.throws(() => new Router([route('x', ['/a/:id/:id'])]), TypeError);
  assert.throws(() => new Router([route('x', ['/a/:id*'])]), TypeError);
  assert.throws(() => new Router([route('x', ['/a%2fb'])]), TypeError);
  assert.throws(() => new Router([route('x', [])]), TypeError);
  assert.throws(() => new Router([route('x', ['/a'], { hosts: ['a.*.com'] })]), TypeError);
  assert.throws(() => new Router([route('x', ['/a'], { hosts: ['example.com:80'] })]), TypeError);
});

test('checkUri and checkHost return a message or undefined', () => {
  assert.equal(checkUri('/rooms/:room/*'), undefined);
  assert.equal(checkUri('/v1/items:batch'), undefined);
  assert.equal(typeof checkUri('/a*b'), 'string');
  assert.equal(checkHost('*.example.com'), undefined);
  assert.equal(checkHost('[2001:db8::1]'), undefined);
  assert.equal(typeof checkHost('*'), 'string');
  assert.equal(typeof checkHost('[nope]'), 'string');
});

test('normalizeHost lower-cases, strips port, brackets and a trailing dot', () => {
  assert.equal(normalizeHost('Example.COM:8080'), 'example.com');
  assert.equal(normalizeHost('[::1]:8080'), '::1');
  assert.equal(normalizeHost('[2001:DB8::1]'), '2001:db8::1');
  assert.equal(normalizeHost('example.com.'), 'example.com');
  const h = 'already.lower';
  assert.equal(normalizeHost(h), h);
});
