// Plain HTTP proxying as a client and an upstream observe it: bodies, keep-alive
// to the upstream, hop-by-hop and forwarding headers, trusted proxies, node
// failover, upstream errors, Host handling, path normalisation and the query.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { config, eventually, httpUpstream, listen, rawExchange, startGateway, statusOf } from './helpers.js';

/** One request with node:http on a fresh connection; `path` is sent exactly as given. */
function send(port, { method = 'GET', path = '/', headers = {}, body, chunks } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(parts).toString() }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (chunks) {
      // No Content-Length: node sends the body chunked.
      for (const c of chunks) req.write(c);
      req.end();
    } else {
      req.end(body);
    }
  });
}

/** A port nothing listens on (bound once, then closed). */
async function closedPort() {
  const s = http.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

/** The upstream's answer per path prefix; everything else echoes what it received. */
function upstreamHandler(req, res, rec) {
  rec.closed = false;
  res.on('close', () => {
    rec.closed = true;
  });
  if (req.url.startsWith('/slow/') || req.url.startsWith('/api/hang')) return; // accepts, never answers
  if (req.url.startsWith('/api/dies')) {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 100 });
    res.write('only ten b');
    setTimeout(() => res.socket.destroy(), 20);
    return;
  }
  if (req.url.startsWith('/api/hop-response')) {
    res.writeHead(200, {
      'content-type': 'text/plain',
      connection: 'keep-alive, x-resp-hop',
      'x-resp-hop': 'must-not-pass',
      'keep-alive': 'timeout=99, max=7',
      'proxy-authenticate': 'Basic realm="upstream"',
      'x-resp-kept': 'yes',
    });
    return res.end('hop');
  }
  if (req.url.startsWith('/api/chunked')) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('part one, ');
    setTimeout(() => res.end('part two'), 20);
    return;
  }
  const body = JSON.stringify({ method: rec.method, url: rec.url, body: rec.body });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}

let up;
let ka;
let gw;
let deadA;
let deadB;

before(async () => {
  up = await httpUpstream(upstreamHandler);
  ka = await httpUpstream();
  deadA = await closedPort();
  deadB = await closedPort();
  gw = await startGateway(
    config(
      up.port,
      `  - { id: api, uri: /api/*, upstream_id: up }
  - { id: b, uri: /b, upstream_id: up }
  - { id: keepalive, uri: /ka/*, upstream: { nodes: { "127.0.0.1:${ka.port}": 1 } } }
  - id: failover
    uri: /failover/*
    upstream: { nodes: { "127.0.0.1:${deadA}": 1, "127.0.0.1:${up.port}": 1 }, timeout: { connect: 2, read: 5 } }
  - id: dead
    uri: /dead/*
    upstream: { nodes: { "127.0.0.1:${deadA}": 1, "127.0.0.1:${deadB}": 1 }, timeout: { connect: 2, read: 5 } }
  - id: slow
    uri: /slow/*
    upstream: { nodes: { "127.0.0.1:${up.port}": 1 }, timeout: { connect: 2, read: 0.3 } }
  - id: node-host
    uri: /node-host/*
    upstream: { nodes: { "127.0.0.1:${up.port}": 1 }, pass_host: node }
  - id: rewrite-host
    uri: /rewrite-host/*
    upstream: { nodes: { "127.0.0.1:${up.port}": 1 }, pass_host: rewrite, upstream_host: backend.internal }`,
    ),
  );
});

after(async () => {
  await gw.close();
  await up.close();
  await ka.close();
});

/** The request the upstream recorded for `url` (the last one). */
function received(url) {
  return up.requests.findLast((r) => r.url === url);
}

test('GET is proxied: status, body and the upstream sees the path', async () => {
  const r = await send(gw.port, { path: '/api/items/1' });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { method: 'GET', url: '/api/items/1', body: '' });
  assert.ok(r.headers['x-request-id']);
  assert.equal(received('/api/items/1').headers['x-request-id'], r.headers['x-request-id']);
});

test('POST with a Content-Length body reaches the upstream intact', async () => {
  const payload = JSON.stringify({ hello: 'world', n: [1, 2, 3] });
  const r = await send(gw.port, {
    method: 'POST',
    path: '/api/post-cl',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    body: payload,
  });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { method: 'POST', url: '/api/post-cl', body: payload });
  assert.equal(received('/api/post-cl').headers['content-length'], String(Buffer.byteLength(payload)));
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/api/post-cl'));
  assert.equal(line.bytes_in, Buffer.byteLength(payload));
});

test('POST with a chunked body is re-framed, not passed through: the upstream gets every byte once', async () => {
  const r = await send(gw.port, { method: 'POST', path: '/api/post-chunked', chunks: ['alpha-', 'beta-', 'gamma'] });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).body, 'alpha-beta-gamma');
  const h = received('/api/post-chunked').headers;
  // One framing, chosen by the gateway: never both Content-Length and Transfer-Encoding.
  assert.ok(!(h['content-length'] !== undefined && h['transfer-encoding'] !== undefined));
});

test('a chunked upstream response reaches the client whole, framed by the gateway', async () => {
  const r = await send(gw.port, { path: '/api/chunked' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'part one, part two');
  assert.ok(!(r.headers['content-length'] !== undefined && r.headers['transfer-encoding'] !== undefined));
});

test('keep-alive to the upstream: two sequential requests use one upstream connection', async () => {
  let connections = 0;
  const onConnection = () => connections++;
  ka.server.on('connection', onConnection);
  try {
    const a = await send(gw.port, { path: '/ka/one' });
    const b = await send(gw.port, { path: '/ka/two' });
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.deepEqual(ka.requests.map((r) => r.url), ['/ka/one', '/ka/two']);
    assert.equal(connections, 1);
  } finally {
    ka.server.off('connection', onConnection);
  }
});

test('hop-by-hop request headers are not forwarded: Connection, Keep-Alive, TE, Proxy-Authorization and what Connection names', async () => {
  const r = await send(gw.port, {
    path: '/api/hop-request',
    headers: {
      connection: 'keep-alive, x-custom',
      'keep-alive': 'timeout=30, max=100',
      te: 'trailers',
      'proxy-authorization': 'Basic Z2F0ZXdheTpzZWNyZXQ=',
      'x-custom': 'hop-only',
      'x-end-to-end': 'kept',
    },
  });
  assert.equal(r.status, 200);
  const h = received('/api/hop-request').headers;
  assert.equal(h['x-custom'], undefined);
  assert.equal(h['keep-alive'], undefined);
  assert.equal(h.te, undefined);
  assert.equal(h['proxy-authorization'], undefined);
  assert.ok(!String(h.connection ?? '').toLowerCase().includes('x-custom'), `connection: ${h.connection}`);
  assert.equal(h['x-end-to-end'], 'kept');
});

test('hop-by-hop response headers are not relayed: Keep-Alive, Proxy-Authenticate and what Connection names', async () => {
  const r = await send(gw.port, { path: '/api/hop-response' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'hop');
  assert.equal(r.headers['x-resp-hop'], undefined);
  assert.equal(r.headers['proxy-authenticate'], undefined);
  assert.ok(!String(r.headers['keep-alive'] ?? '').includes('max=7'), `keep-alive: ${r.headers['keep-alive']}`);
  assert.ok(!String(r.headers.connection ?? '').includes('x-resp-hop'), `connection: ${r.headers.connection}`);
  assert.equal(r.headers['x-resp-kept'], 'yes');
});

test('an Upgrade header without Connection: upgrade is not forwarded on a plain request', async () => {
  const r = await send(gw.port, { path: '/api/upgrade-foo', headers: { upgrade: 'foo' } });
  assert.equal(r.status, 200);
  const rec = received('/api/upgrade-foo');
  assert.ok(rec && !rec.upgrade);
  assert.equal(rec.headers.upgrade, undefined);
});

test('X-Forwarded-For, -Proto and -Host are set for the upstream', async () => {
  await send(gw.port, { path: '/api/xff', headers: { host: 'public.example:8443' } });
  const h = received('/api/xff').headers;
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], 'public.example:8443');
  assert.equal(h.host, 'public.example:8443');
});

test('X-Forwarded-For and Forwarded from a client outside trusted_proxies are not believed', async () => {
  await send(gw.port, {
    path: '/api/spoof',
    headers: { 'x-forwarded-for': '1.2.3.4', forwarded: 'for=5.6.7.8', 'x-real-ip': '1.2.3.4', 'x-forwarded-proto': 'https' },
  });
  const h = received('/api/spoof').headers;
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
  assert.equal(h['x-real-ip'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h.forwarded, undefined);
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/api/spoof'));
  assert.equal(line.client_ip, '127.0.0.1');
});

test('trusted proxies: X-Forwarded-For is walked right to left to the first untrusted hop', async (t) => {
  const g = await startGateway(
    config(up.port, '  - { id: api, uri: /api/*, upstream_id: up }', '  trusted_proxies: [127.0.0.1, 10.0.0.0/8]'),
  );
  t.after(() => g.close());
  await send(g.port, { path: '/api/walk', headers: { 'x-forwarded-for': '9.9.9.9, 10.0.0.1' } });
  const h = received('/api/walk').headers;
  assert.equal(h['x-forwarded-for'], '9.9.9.9, 10.0.0.1, 127.0.0.1');
  assert.equal(h['x-real-ip'], '9.9.9.9');
  const line = await eventually(() => g.log.access().find((l) => l.path === '/api/walk'));
  assert.equal(line.client_ip, '9.9.9.9');

  // A spoofed entry left of an untrusted hop is not believed: the walk stops at 8.8.8.8.
  await send(g.port, { path: '/api/walk2', headers: { 'x-forwarded-for': '1.1.1.1, 8.8.8.8, 10.0.0.1' } });
  assert.equal(received('/api/walk2').headers['x-real-ip'], '8.8.8.8');
  const line2 = await eventually(() => g.log.access().find((l) => l.path === '/api/walk2'));
  assert.equal(line2.client_ip, '8.8.8.8');
});

test('trusted proxies with real_ip_header: forwarded read Forwarded, not X-Forwarded-For', async (t) => {
  const g = await startGateway(
    config(
      up.port,
      '  - { id: api, uri: /api/*, upstream_id: up }',
      '  trusted_proxies: [127.0.0.1, 10.0.0.0/8]\n  real_ip_header: forwarded',
    ),
  );
  t.after(() => g.close());
  await send(g.port, {
    path: '/api/fwd',
    headers: { forwarded: 'for=9.9.9.9;proto=https, for=10.0.0.1', 'x-forwarded-for': '6.6.6.6' },
  });
  const h = received('/api/fwd').headers;
  assert.equal(h['x-real-ip'], '9.9.9.9');
  assert.equal(h['x-forwarded-for'], '9.9.9.9, 10.0.0.1, 127.0.0.1');
  assert.equal(h.forwarded, 'for=9.9.9.9;proto=https, for=10.0.0.1, for=127.0.0.1');
  const line = await eventually(() => g.log.access().find((l) => l.path === '/api/fwd'));
  assert.equal(line.client_ip, '9.9.9.9');
});

test('failover: with nodes [a closed port, a live one] every request answers 200', async () => {
  const n = 6;
  for (let i = 0; i < n; i++) {
    const r = await send(gw.port, { path: `/failover/${i}` });
    assert.equal(r.status, 200, `request ${i}`);
    assert.equal(JSON.parse(r.body).url, `/failover/${i}`);
  }
  for (let i = 0; i < n; i++) assert.ok(received(`/failover/${i}`), `upstream saw /failover/${i}`);
});

test('failover keeps a POST body: the body is sent once, to the node that accepted', async () => {
  const r = await send(gw.port, { method: 'POST', path: '/failover/post', chunks: ['retry-', 'safe'] });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).body, 'retry-safe');
});

test('every node refuses: 502 UPSTREAM_UNAVAILABLE with a JSON error body', async () => {
  const r = await send(gw.port, { path: '/dead/x' });
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-portcullis-error'], 'UPSTREAM_UNAVAILABLE');
  assert.match(r.headers['content-type'], /^application\/json/);
  const body = JSON.parse(r.body);
  assert.equal(body.error.code, 'UPSTREAM_UNAVAILABLE');
  assert.equal(typeof body.error.message, 'string');
  assert.equal(body.error.request_id, r.headers['x-request-id']);
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/dead/x'));
  assert.equal(line.status, 502);
  assert.equal(line.error, 'UPSTREAM_UNAVAILABLE');
});

test('an upstream that accepts but never answers: 504 UPSTREAM_TIMEOUT after timeout.read', async () => {
  const r = await send(gw.port, { path: '/slow/x' });
  assert.equal(r.status, 504);
  assert.equal(r.headers['x-portcullis-error'], 'UPSTREAM_TIMEOUT');
  const body = JSON.parse(r.body);
  assert.equal(body.error.code, 'UPSTREAM_TIMEOUT');
  assert.equal(body.error.request_id, r.headers['x-request-id']);
});

test('pass_host: node sends the node address as Host; X-Forwarded-Host keeps the client\'s', async () => {
  await send(gw.port, { path: '/node-host/x', headers: { host: 'public.example' } });
  const h = received('/node-host/x').headers;
  assert.equal(h.host, `127.0.0.1:${up.port}`);
  assert.equal(h['x-forwarded-host'], 'public.example');
});

test('pass_host: rewrite sends upstream_host as Host', async () => {
  await send(gw.port, { path: '/rewrite-host/x', headers: { host: 'public.example' } });
  const h = received('/rewrite-host/x').headers;
  assert.equal(h.host, 'backend.internal');
  assert.equal(h['x-forwarded-host'], 'public.example');
});

test('an HTTP/1.0 request without Host is sent upstream with the node address as Host', async () => {
  const text = await rawExchange(gw.port, 'GET /api/http10 HTTP/1.0\r\n\r\n');
  assert.equal(statusOf(text), 200);
  const rec = received('/api/http10');
  assert.ok(rec, 'the upstream accepted the request');
  assert.equal(rec.headers.host, `127.0.0.1:${up.port}`);
});

test('no matching route: 404 ROUTE_NOT_FOUND and nothing reaches the upstream', async () => {
  const before = up.requests.length;
  const r = await send(gw.port, { path: '/nowhere' });
  assert.equal(r.status, 404);
  assert.equal(r.headers['x-portcullis-error'], 'ROUTE_NOT_FOUND');
  assert.equal(JSON.parse(r.body).error.code, 'ROUTE_NOT_FOUND');
  assert.equal(up.requests.length, before);
});

test('path normalisation applies to plain HTTP: /a/../b reaches the upstream as /b', async () => {
  const r = await send(gw.port, { path: '/a/../b' });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, '/b');
  const r2 = await send(gw.port, { path: '/api//x/./%79' });
  assert.equal(JSON.parse(r2.body).url, '/api/x/y');
});

test('the query string is forwarded unchanged', async () => {
  const q = '?a=1&b=%2F%20x&c=x+y&a=2&empty=&flag';
  const r = await send(gw.port, { path: `/api/q${q}` });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, `/api/q${q}`);
});

test('an upstream that dies mid-body: the client sees a truncated response, not a complete one', async () => {
  const outcome = await new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: gw.port, path: '/api/dies', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ complete: true, body }));
      res.on('aborted', () => resolve({ complete: false, body }));
      res.on('error', () => resolve({ complete: false, body }));
    });
    req.on('error', () => resolve({ complete: false, body: '' }));
  });
  assert.equal(outcome.complete, false);
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/api/dies'));
  assert.equal(line.error, 'UPSTREAM_CLOSED');
  assert.equal(line.closed_by, 'upstream');
});

test('a client that leaves before the response aborts the upstream request: 499, closed_by client', async () => {
  const req = http.get({ host: '127.0.0.1', port: gw.port, path: '/api/hang', agent: false });
  req.on('error', () => {});
  const rec = await eventually(() => received('/api/hang'));
  assert.ok(rec, 'the upstream received the request');
  req.destroy();
  assert.ok(await eventually(() => rec.closed), 'the upstream sees its request closed');
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/api/hang'));
  assert.equal(line.status, 499);
  assert.equal(line.closed_by, 'client');
});

test('Content-Length with Transfer-Encoding (request smuggling) is refused with 400 and nothing reaches the upstream', async () => {
  const before = up.requests.length;
  const text = await rawExchange(
    gw.port,
    'POST /api/smuggle HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
  );
  assert.equal(statusOf(text), 400);
  assert.equal(up.requests.length, before);
});

test('a pooled upstream connection that fails on reuse is retried once on a fresh one for a GET', async () => {
  // The upstream drops a kept-alive connection on its second request, as a server
  // whose keep-alive timeout just expired does.
  const perSocket = new WeakMap();
  const server = http.createServer((req, res) => {
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    if (n > 1) return req.socket.destroy();
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`ok ${req.url}`);
  });
  const port = await listen(server);
  const g = await startGateway(config(port, '  - { id: all, uri: /*, upstream_id: up }'));
  try {
    const agent = new http.Agent({ keepAlive: false });
    for (const path of ['/one', '/two', '/three']) {
      const body = await new Promise((resolve, reject) => {
        http.get(`${g.http}${path}`, { agent }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve(`${res.statusCode} ${b}`));
        }).on('error', reject);
      });
      assert.equal(body, `200 ok ${path}`);
    }
  } finally {
    await g.close();
    server.closeAllConnections();
    server.close();
  }
});
