// forward-auth as the client, the upstream and the authorization service observe it:
// a real auth service (node:http on port 0) records every question it gets; its 2xx
// admits and its upstream_headers reach the upstream, anything else is relayed to the
// client (status, body, client_headers); a slow or absent service gives
// status_on_error or, with allow_degradation, lets the request through; decisions are
// cached when asked; a denied WebSocket handshake never reaches the upstream; no
// secret reaches the log.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closed, eventually, get, httpUpstream, listen, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';
import { DecisionCache, MAX_CACHE_BYTES, cacheKey } from '../dist/plugins/forward-auth/cache.js';

const TOKEN = 'Bearer s3cret-token-4f9a';
const OTHER = 'Bearer s3cret-token-77b2';
const COOKIE = 'session=cookie-secret-91c3';

/**
 * The authorization service. `Authorization: Bearer s3cret-*` admits as alice (or,
 * for the OTHER token, bob); `Bearer redirect` gets a 302 to a login page with no
 * body; `Bearer big` a 401 with a 100 KiB body; anything else a 401 with a
 * WWW-Authenticate and a body. `/slow` never answers. Every question is recorded
 * with its path, method, headers and the client port of its connection.
 */
function authHandler(calls) {
  return (req, res) => {
    const call = { url: req.url, method: req.method, headers: req.headers, port: req.socket.remotePort };
    calls.push(call);
    req.resume();
    if (req.url.startsWith('/slow')) return; // never answers
    const auth = req.headers.authorization;
    if (auth === TOKEN || auth === OTHER) {
      res.writeHead(200, { 'x-user-id': auth === TOKEN ? 'alice' : 'bob', 'x-user-role': 'reader', 'x-internal': 'not-for-upstream' });
      return res.end('ok');
    }
    if (auth === 'Bearer redirect') {
      res.writeHead(302, { location: 'https://login.example/?rd=back' });
      return res.end();
    }
    if (auth === 'Bearer big') {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="auth"' });
      return res.end('x'.repeat(100 * 1024));
    }
    res.writeHead(401, {
      'content-type': 'text/html; charset=utf-8',
      'www-authenticate': 'Bearer realm="auth"',
      'x-auth-reason': 'no token',
      'x-internal': 'not-for-client',
    });
    res.end('<p>please log in</p>');
  };
}

async function authService(opts = {}) {
  const calls = [];
  const sockets = new Set();
  const server = opts.tls ? https.createServer(opts.tls, authHandler(calls)) : http.createServer(authHandler(calls));
  server.on('connection', (s) => sockets.add(s));
  server.on('secureConnection', (s) => sockets.add(s));
  const port = await listen(server);
  return {
    port,
    calls,
    /** Questions whose path starts with `prefix`. */
    to: (prefix) => calls.filter((c) => c.url.startsWith(prefix)),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A port nothing listens on. */
async function deadPort() {
  const s = http.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

function selfSigned() {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-fa-tls-'));
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
}

let up;
let sseUp;
let auth;
let tlsAuth;
let gw;

before(async () => {
  up = await wsUpstream();
  sseUp = await httpUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end('data: hello\n\n');
  });
  auth = await authService();
  tlsAuth = await authService({ tls: selfSigned() });
  const dead = await deadPort();
  const A = `http://127.0.0.1:${auth.port}`;
  const common = ['request_headers: [Authorization, X-Tenant]', 'upstream_headers: [X-User-Id, X-User-Role]', 'client_headers: [WWW-Authenticate, X-Auth-Reason, Location]'];
  /** A route whose forward-auth config is `lines` (YAML, one attribute a line). */
  const route = (id, uri, lines, upstream = 'up') => `  - id: ${id}
    uri: ${uri}
    enable_websocket: true
    upstream_id: ${upstream}
    plugins:
      forward-auth:
${lines.map((l) => `        ${l}\n`).join('')}`;
  gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: sse, nodes: { "127.0.0.1:${sseUp.port}": 1 } }
routes:
${route('main', '/ws/*', [`uri: ${A}/check`, ...common])}
${route('post', '/post', [`uri: ${A}/post`, 'request_method: POST', 'request_headers: [Authorization]'])}
${route('slow', '/slow', [`uri: ${A}/slow`, 'timeout: 200'])}
${route('slow-degraded', '/slow-degraded', [`uri: ${A}/slow`, 'timeout: 200', 'allow_degradation: true', 'upstream_headers: [X-User-Id]'])}
${route('down', '/down', [`uri: http://127.0.0.1:${dead}/check`])}
${route('down-503', '/down-503', [`uri: http://127.0.0.1:${dead}/check`, 'status_on_error: 503'])}
${route('down-degraded', '/down-degraded', [`uri: http://127.0.0.1:${dead}/check`, 'allow_degradation: true', 'upstream_headers: [X-User-Id]'])}
${route('cached', '/cached/*', [`uri: ${A}/cached`, ...common, 'cache: { ttl: 60 }'])}
${route('cached-deny', '/cached-deny', [`uri: ${A}/cached-deny`, ...common, 'cache: { ttl: 60, deny_ttl: 60 }'])}
${route('slow-cached', '/slow-cached', [`uri: ${A}/slow-cached`, 'timeout: 100', 'cache: { ttl: 60, deny_ttl: 60 }'])}
${route('cached-narrow', '/narrow/*', [`uri: ${A}/narrow`, 'request_headers: [Authorization]', 'cache: { ttl: 60, key_headers: [Authorization] }'])}
${route('no-keepalive', '/no-keepalive', [`uri: ${A}/nka`, 'request_headers: [Authorization]', 'keepalive: false'])}
${route('tls-noverify', '/tls-noverify', [`uri: https://127.0.0.1:${tlsAuth.port}/check`, 'request_headers: [Authorization]', 'ssl_verify: false'])}
${route('tls-verify', '/tls-verify', [`uri: https://127.0.0.1:${tlsAuth.port}/check`, 'request_headers: [Authorization]'])}
${route('sse', '/events', [`uri: ${A}/sse`, ...common], 'sse')}
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
  await sseUp?.close();
  await auth?.close();
  await tlsAuth?.close();
});

const lastHttp = () => up.received.filter((r) => r.http).at(-1);

describe('admission', () => {
  test('a 2xx admits; the upstream gets upstream_headers, not the client copies, not other auth headers', async () => {
    const r = await get(`${gw.http}/ws/plain?x=1`, { authorization: TOKEN, 'x-user-id': 'mallory', 'x-user-role': 'admin' });
    assert.equal(r.status, 200);
    const seen = lastHttp();
    assert.equal(seen.url, '/ws/plain?x=1');
    assert.equal(seen.headers['x-user-id'], 'alice');
    assert.equal(seen.headers['x-user-role'], 'reader');
    assert.equal(seen.headers['x-internal'], undefined);
  });

  test('a WebSocket handshake admitted by a 2xx reaches the upstream with upstream_headers', async () => {
    const { ws } = await openWs(`${gw.ws}/ws/room`, { headers: { authorization: TOKEN, 'x-user-id': 'mallory' } });
    assert.ok(ws);
    assert.equal(up.handshakes.at(-1).headers['x-user-id'], 'alice');
    ws.send('hi');
    assert.equal(await nextMessage(ws), 'hi');
    ws.close();
    await closed(ws);
  });

  test('the service gets X-Forwarded-* and the listed request headers, nothing else of the client', async () => {
    const before = auth.to('/check').length;
    const { ws } = await openWs(`${gw.ws}/ws/lobby?token=q1&b=2`, {
      headers: { authorization: TOKEN, 'x-tenant': 'acme', cookie: COOKIE, 'x-other': 'nope' },
    });
    ws.close();
    await closed(ws);
    const calls = auth.to('/check');
    assert.equal(calls.length, before + 1);
    const h = calls.at(-1).headers;
    assert.equal(calls.at(-1).method, 'GET');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-method'], 'GET');
    assert.equal(h['x-forwarded-host'], `127.0.0.1:${gw.port}`);
    assert.equal(h['x-forwarded-uri'], '/ws/lobby?token=q1&b=2');
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.match(h['x-request-id'], /\S/);
    assert.equal(h.authorization, TOKEN);
    assert.equal(h['x-tenant'], 'acme');
    for (const name of ['cookie', 'x-other', 'sec-websocket-key', 'sec-websocket-version', 'upgrade']) {
      assert.equal(h[name], undefined, `${name} must not reach the auth service`);
    }
  });

  test('X-Forwarded-* sent by the client do not reach the service: the gateway sets its own', async () => {
    await get(`${gw.http}/ws/spoof`, { authorization: TOKEN, 'x-forwarded-for': '10.9.9.9', 'x-forwarded-uri': '/admin' });
    const h = auth.to('/check').at(-1).headers;
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-uri'], '/ws/spoof');
  });

  test('request_method POST asks with POST and an empty body', async () => {
    const r = await get(`${gw.http}/post`, { authorization: TOKEN });
    assert.equal(r.status, 200);
    const call = auth.to('/post').at(-1);
    assert.equal(call.method, 'POST');
    assert.equal(call.headers['content-length'], '0');
  });

  test('an SSE request admitted by a 2xx streams, with upstream_headers', async () => {
    const r = await get(`${gw.http}/events`, { authorization: TOKEN, accept: 'text/event-stream' });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /text\/event-stream/);
    assert.equal(r.body, 'data: hello\n\n');
    assert.equal(sseUp.requests.at(-1).headers['x-user-id'], 'alice');
  });

  test('connections to the service are kept alive (keepalive: true), not with keepalive: false', async () => {
    await get(`${gw.http}/ws/ka`, { authorization: TOKEN });
    await get(`${gw.http}/ws/ka`, { authorization: TOKEN });
    const [a, b] = auth.to('/check').slice(-2);
    assert.equal(a.port, b.port);
    await get(`${gw.http}/no-keepalive`, { authorization: TOKEN });
    await get(`${gw.http}/no-keepalive`, { authorization: TOKEN });
    const [c, d] = auth.to('/nka').slice(-2);
    assert.notEqual(c.port, d.port);
  });
});

describe('denial', () => {
  test('a 401 is relayed: status, body, Content-Type and client_headers only; FORWARD_AUTH_DENIED logged', async () => {
    const r = await get(`${gw.http}/ws/x`, { authorization: 'Bearer wrong' });
    assert.equal(r.status, 401);
    assert.equal(r.body, '<p>please log in</p>');
    assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="auth"');
    assert.equal(r.headers['x-auth-reason'], 'no token');
    assert.equal(r.headers['x-internal'], undefined);
    assert.equal(r.headers['x-portcullis-error'], 'FORWARD_AUTH_DENIED');
    assert.match(r.headers['x-request-id'], /\S/);
    const line = await eventually(() => gw.log.access().find((l) => l.request_id === r.headers['x-request-id']));
    assert.equal(line.error, 'FORWARD_AUTH_DENIED');
    assert.equal(line.status, 401);
    assert.match(line.detail, /answered 401/);
  });

  test('a denied WebSocket handshake gets the relayed 401 and never reaches the upstream', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/ws/room`, { headers: { authorization: 'Bearer wrong', cookie: COOKIE } });
    assert.equal(r.status, 401);
    assert.equal(r.body, '<p>please log in</p>');
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="auth"');
    assert.equal(r.headers['x-portcullis-error'], 'FORWARD_AUTH_DENIED');
    assert.equal(up.handshakes.length, before);
  });

  test('a denial without a body gets the JSON error with the service status (302 + Location)', async () => {
    const r = await get(`${gw.http}/ws/x`, { authorization: 'Bearer redirect' });
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, 'https://login.example/?rd=back');
    assert.equal(JSON.parse(r.body).error.code, 'FORWARD_AUTH_DENIED');
  });

  test('a denial body over 64 KiB is not relayed: the status is, with the JSON error', async () => {
    const r = await openWs(`${gw.ws}/ws/room`, { headers: { authorization: 'Bearer big' } });
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="auth"');
    assert.equal(JSON.parse(r.body).error.code, 'FORWARD_AUTH_DENIED');
  });
});

describe('service unavailable', () => {
  test('no answer within timeout: 403 AUTH_UNAVAILABLE (status_on_error default), upstream not contacted', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/slow`, { headers: { authorization: TOKEN } });
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.body).error.code, 'AUTH_UNAVAILABLE');
    assert.equal(up.handshakes.length, before);
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'slow'));
    assert.match(line.detail, /within 200 ms/);
  });

  test('no answer within timeout with allow_degradation: admitted, client copies of upstream_headers removed', async () => {
    const r = await get(`${gw.http}/slow-degraded`, { authorization: TOKEN, 'x-user-id': 'mallory' });
    assert.equal(r.status, 200);
    assert.equal(lastHttp().url, '/slow-degraded');
    assert.equal(lastHttp().headers['x-user-id'], undefined);
  });

  test('service down: status_on_error (403 by default, 503 when set)', async () => {
    const a = await get(`${gw.http}/down`, { authorization: TOKEN });
    assert.equal(a.status, 403);
    assert.equal(JSON.parse(a.body).error.code, 'AUTH_UNAVAILABLE');
    assert.equal(a.headers['retry-after'], undefined, 'a 403 says nothing of coming back');
    const b = await openWs(`${gw.ws}/down-503`, { headers: { authorization: TOKEN } });
    assert.equal(b.status, 503);
    assert.equal(b.headers['retry-after'], '1', 'a 503 carries Retry-After');
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'down'));
    assert.match(line.detail, /unreachable: ECONNREFUSED/);
  });

  test('service down with allow_degradation: admitted, client copy of X-User-Id removed', async () => {
    const { ws } = await openWs(`${gw.ws}/down-degraded`, { headers: { authorization: TOKEN, 'x-user-id': 'mallory' } });
    assert.ok(ws);
    assert.equal(up.handshakes.at(-1).url, '/down-degraded');
    assert.equal(up.handshakes.at(-1).headers['x-user-id'], undefined);
    ws.close();
    await closed(ws);
  });

  test('https service: ssl_verify false admits a self-signed certificate; the default refuses it', async () => {
    const a = await get(`${gw.http}/tls-noverify`, { authorization: TOKEN });
    assert.equal(a.status, 200);
    assert.equal(tlsAuth.calls.at(-1).headers['x-forwarded-uri'], '/tls-noverify');
    const b = await get(`${gw.http}/tls-verify`, { authorization: TOKEN });
    assert.equal(b.status, 403);
    assert.equal(JSON.parse(b.body).error.code, 'AUTH_UNAVAILABLE');
  });
});

describe('decision cache', () => {
  test('identical requests within ttl ask once; another header value or path asks again', async () => {
    const n = () => auth.to('/cached').length - auth.to('/cached-deny').length;
    const before = n();
    const r1 = await get(`${gw.http}/cached/a`, { authorization: TOKEN, 'x-user-id': 'mallory' });
    const r2 = await openWs(`${gw.ws}/cached/a`, { headers: { authorization: TOKEN } });
    assert.equal(r1.status, 200);
    assert.ok(r2.ws);
    r2.ws.close();
    assert.equal(n(), before + 1);
    // The cached decision still sets upstream_headers.
    assert.equal(up.handshakes.at(-1).headers['x-user-id'], 'alice');
    assert.equal(lastHttp().headers['x-user-id'], 'alice');
    await get(`${gw.http}/cached/a`, { authorization: OTHER });
    assert.equal(n(), before + 2);
    assert.equal(lastHttp().headers['x-user-id'], 'bob');
    await get(`${gw.http}/cached/a`, { authorization: TOKEN, 'x-tenant': 'acme' });
    assert.equal(n(), before + 3);
    await get(`${gw.http}/cached/b`, { authorization: TOKEN });
    assert.equal(n(), before + 4);
    await closed(r2.ws);
  });

  test('denials are not cached by default, errors never', async () => {
    const n = () => auth.to('/cached').length - auth.to('/cached-deny').length;
    const before = n();
    assert.equal((await get(`${gw.http}/cached/d`, { authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await get(`${gw.http}/cached/d`, { authorization: 'Bearer wrong' })).status, 401);
    assert.equal(n(), before + 2);
    assert.equal((await get(`${gw.http}/slow-cached`, { authorization: TOKEN })).status, 403);
    assert.equal((await get(`${gw.http}/slow-cached`, { authorization: TOKEN })).status, 403);
    assert.equal(auth.to('/slow-cached').length, 2);
  });

  test('deny_ttl caches denials, relayed as the first one was', async () => {
    const before = auth.to('/cached-deny').length;
    const a = await get(`${gw.http}/cached-deny`, { authorization: 'Bearer wrong' });
    const b = await openWs(`${gw.ws}/cached-deny`, { headers: { authorization: 'Bearer wrong' } });
    assert.equal(auth.to('/cached-deny').length, before + 1);
    for (const r of [a, b]) {
      assert.equal(r.status, 401);
      assert.equal(r.body, '<p>please log in</p>');
      assert.equal(r.headers['www-authenticate'], 'Bearer realm="auth"');
    }
  });

  test('concurrent identical requests share one question', async () => {
    const before = auth.to('/cached').length;
    const rs = await Promise.all(Array.from({ length: 5 }, () => get(`${gw.http}/cached/concurrent`, { authorization: OTHER })));
    for (const r of rs) assert.equal(r.status, 200);
    assert.equal(auth.to('/cached').length, before + 1);
  });

  test('key_headers narrows the key: the same Authorization on another path reuses the decision', async () => {
    const before = auth.to('/narrow').length;
    await get(`${gw.http}/narrow/one`, { authorization: TOKEN });
    await get(`${gw.http}/narrow/two?x=1`, { authorization: TOKEN });
    assert.equal(auth.to('/narrow').length, before + 1);
    await get(`${gw.http}/narrow/two`, { authorization: OTHER });
    assert.equal(auth.to('/narrow').length, before + 2);
  });
});

describe('decision cache, by itself', () => {
  const allow = { kind: 'allow', headers: {} };
  const denyWith = (n) => ({ kind: 'deny', status: 401, headers: {}, body: Buffer.alloc(n), note: undefined, complete: true });

  test('the least recently used entry goes when max_entries is reached; entries expire', async () => {
    const c = new DecisionCache(60, 60, 2);
    await c.track('a', Promise.resolve(allow));
    await c.track('b', Promise.resolve(allow));
    assert.ok(c.get('a', Date.now())); // a is now the most recently used
    await c.track('c', Promise.resolve(allow));
    assert.equal(c.size, 2);
    assert.equal(c.get('b', Date.now()), undefined);
    assert.ok(c.get('a', Date.now()));
    assert.equal(c.get('c', Date.now() + 61_000), undefined);
  });

  test('cached denial bodies stay within the byte budget; a body cut short is not cached', async () => {
    const c = new DecisionCache(60, 60, 1_000_000);
    const big = 64 * 1024;
    const n = Math.ceil(MAX_CACHE_BYTES / big) + 10;
    for (let i = 0; i < n; i++) await c.track(`k${i}`, Promise.resolve(denyWith(big)));
    assert.ok(c.size < n && c.size * big <= MAX_CACHE_BYTES, `${c.size} entries`);
    assert.ok(c.get(`k${n - 1}`, Date.now()));
    await c.track('cut', Promise.resolve({ ...denyWith(10), complete: false }));
    await c.track('fail', Promise.resolve({ kind: 'failure', reason: 'x' }));
    assert.equal(c.get('cut', Date.now()), undefined);
    assert.equal(c.get('fail', Date.now()), undefined);
  });

  test('keys tell an absent value from an empty one, and do not run values together', () => {
    assert.notEqual(cacheKey(['GET', undefined]), cacheKey(['GET', '']));
    assert.notEqual(cacheKey(['ab', 'c']), cacheKey(['a', 'bc']));
    assert.equal(cacheKey(['GET', 'x']), cacheKey(['GET', 'x']));
  });
});

test('no secret header value appears in the log', async () => {
  await get(`${gw.http}/ws/leak?x=1`, { authorization: TOKEN, cookie: COOKIE });
  await get(`${gw.http}/ws/leak`, { authorization: OTHER, cookie: COOKIE });
  await get(`${gw.http}/down`, { authorization: TOKEN, cookie: COOKIE });
  const raw = gw.log.raw();
  for (const secret of ['s3cret-token', 'cookie-secret', 'Bearer wrong', 'mallory']) {
    assert.ok(!raw.includes(secret), `"${secret}" leaked into the log`);
  }
});

describe('config', () => {
  const load = (plugin) =>
    loadConfigText(
      `upstreams: [{ id: up, nodes: { "127.0.0.1:1": 1 } }]
routes:
  - id: r
    uri: /
    upstream_id: up
    plugins:
      forward-auth: ${plugin}
`,
      '/tmp/forward-auth-test.yaml',
      { registry: createRegistry(), env: {} },
    );
  const refused = async (plugin, fragment) => {
    await assert.rejects(load(plugin), (err) => {
      assert.ok(err instanceof ConfigError, err.message);
      assert.match(err.message, fragment);
      return true;
    });
  };

  test('APISIX defaults apply', async () => {
    const config = await load('{ uri: "http://auth.internal/check" }');
    assert.deepEqual(config.routes[0].instances[0].config, {
      uri: 'http://auth.internal/check',
      request_method: 'GET',
      request_headers: [],
      upstream_headers: [],
      client_headers: [],
      timeout: 3000,
      keepalive: true,
      keepalive_timeout: 60000,
      keepalive_pool: 5,
      ssl_verify: true,
      allow_degradation: false,
      status_on_error: 403,
    });
  });

  test('refuses a missing or non-http uri, bad bounds, unknown attributes', async () => {
    await refused('{}', /uri/);
    await refused('{ uri: "ftp://auth/check" }', /uri/);
    await refused('{ uri: "http://auth/", status_on_error: 600 }', /status_on_error/);
    await refused('{ uri: "http://auth/", timeout: 0 }', /timeout/);
    await refused('{ uri: "http://auth/", request_method: PUT }', /request_method/);
    await refused('{ uri: "http://auth/", extra_headers: { a: b } }', /extra_headers/);
  });

  test('refuses header names the gateway owns, and cache key headers that are not sent', async () => {
    await refused('{ uri: "http://auth/", request_headers: [X-Forwarded-For] }', /request_headers: "X-Forwarded-For" cannot be listed/);
    await refused('{ uri: "http://auth/", upstream_headers: [Transfer-Encoding] }', /upstream_headers/);
    await refused('{ uri: "http://auth/", client_headers: [Content-Length] }', /client_headers/);
    await refused('{ uri: "http://auth/", request_headers: ["bad name"] }', /request_headers/);
    await refused('{ uri: "http://auth/", request_headers: [Authorization], cache: { ttl: 5, key_headers: [Cookie] } }', /key_headers: "Cookie" is not sent/);
  });
});
