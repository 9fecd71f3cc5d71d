// Attacks on the handshake: smuggling after a non-101, early bytes, h2c, duplicate
// Host, malformed handshakes, path tricks, slow and oversized headers, a lying
// upstream. Each asserts what the client gets and what the upstream never saw.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  EXAMPLES, closed, config, eventually, handshake, listen, openWs, rawExchange, startGateway, statusOf, wsUpstream,
} from './helpers.js';

/** An upstream that answers every upgrade with 403 but keeps the socket open, recording all bytes after the headers. */
async function refusingUpstream() {
  const seen = { handshakes: [], after: [] };
  const server = http.createServer((req, res) => {
    seen.after.push(`${req.method} ${req.url}`);
    res.end('ok');
  });
  server.on('upgrade', (req, socket, head) => {
    seen.handshakes.push(req.url);
    if (head.length) seen.after.push(head.toString('latin1'));
    socket.on('data', (d) => seen.after.push(d.toString('latin1')));
    socket.write('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nnope!\n');
  });
  const sockets = new Set();
  server.on('connection', (s) => sockets.add(s));
  const port = await listen(server);
  return { port, seen, close: () => { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(r)); } };
}

/** An upstream that answers 101 with a wrong Sec-WebSocket-Accept. */
async function lyingUpstream() {
  const server = net.createServer((s) => {
    s.once('data', () => {
      s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n');
    });
  });
  const port = await listen(server);
  return { port, close: () => new Promise((r) => { server.close(r); }) };
}

let up;
let refusing;
let lying;
let gw;

before(async () => {
  up = await wsUpstream({
    verifyClient: (info, cb) => setTimeout(() => cb(true), info.req.url.startsWith('/ws/slow') ? 300 : 0),
  });
  refusing = await refusingUpstream();
  lying = await lyingUpstream();
  gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  client_header_timeout: 0.5
  max_header_size: 2048
  custom_plugins: [${EXAMPLES}plugins/tenant-header.js]
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: refusing, nodes: { "127.0.0.1:${refusing.port}": 1 } }
  - { id: lying, nodes: { "127.0.0.1:${lying.port}": 1 } }
routes:
  - { id: ws, uri: /ws/*, enable_websocket: true, upstream_id: up }
  - { id: refused, uri: /refused, enable_websocket: true, upstream_id: refusing }
  - { id: lying, uri: /lying, enable_websocket: true, upstream_id: lying }
  - id: admin
    uri: /admin/*
    enable_websocket: true
    upstream_id: up
    plugins: { tenant-header: { allow: [root] } }
`);
});

after(async () => {
  await gw.close();
  await Promise.all([up.close(), refusing.close(), lying.close()]);
});

test('a request pipelined after a handshake the upstream refused never reaches the upstream', async () => {
  const smuggled = 'GET /internal/secret HTTP/1.1\r\nHost: x\r\n\r\n';
  const text = await rawExchange(gw.port, [handshake('/refused'), smuggled]);
  assert.equal(statusOf(text), 400, 'bytes before the 101 are refused');
  await sleep(100);
  assert.ok(!refusing.seen.after.some((s) => s.includes('/internal/secret')), 'upstream saw the smuggled request');
});

test('a non-101 answer is relayed and the connection closed: a request sent after it goes nowhere', async () => {
  const sock = net.connect(gw.port, '127.0.0.1');
  const gone = new Promise((r) => sock.once('close', r));
  sock.on('error', () => {});
  await new Promise((r) => sock.once('connect', r));
  sock.write(handshake('/refused'));
  let text = '';
  sock.on('data', (d) => (text += d.toString('latin1')));
  await eventually(() => text.includes('nope!'));
  assert.equal(statusOf(text), 403);
  assert.match(text, /connection: close/i);
  if (!sock.destroyed) sock.write('GET /internal/secret HTTP/1.1\r\nHost: x\r\n\r\n');
  await gone;
  await sleep(100);
  assert.equal(refusing.seen.after.length, 0, `upstream saw bytes after its 403: ${refusing.seen.after}`);
});

test('data sent with the handshake is refused with 400 WS_EARLY_DATA and reaches nothing', async () => {
  const before = up.handshakes.length;
  const text = await rawExchange(gw.port, handshake('/ws/early') + '\x81\x05hello');
  assert.equal(statusOf(text), 400);
  assert.match(text, /WS_EARLY_DATA/);
  assert.equal(up.handshakes.length, before);
});

test('data sent before the 101 arrives is refused and never forwarded', async () => {
  const before = up.received.length;
  const text = await rawExchange(gw.port, [handshake('/ws/slow'), '\x81\x85\x00\x00\x00\x00hello']);
  assert.equal(statusOf(text), 400);
  await sleep(400);
  assert.equal(up.received.length, before);
});

test('Upgrade: h2c is refused with 400 UPGRADE_NOT_SUPPORTED before any upstream', async () => {
  const before = up.handshakes.length + up.received.length;
  const text = await rawExchange(
    gw.port,
    'GET /ws/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
  );
  assert.equal(statusOf(text), 400);
  assert.match(text, /UPGRADE_NOT_SUPPORTED/);
  assert.equal(up.handshakes.length + up.received.length, before);
});

test('a duplicate Host header is refused with 400 DUPLICATE_HOST, on handshakes and plain requests', async () => {
  const ws = await rawExchange(gw.port, handshake('/ws/a', 'Host: evil.example\r\n'));
  assert.equal(statusOf(ws), 400);
  assert.match(ws, /DUPLICATE_HOST/);
  const plain = await rawExchange(gw.port, 'GET /ws/a HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(plain), 400);
  assert.match(plain, /DUPLICATE_HOST/);
});

test('a handshake without Sec-WebSocket-Key is refused with 400 WS_BAD_KEY', async () => {
  const text = await rawExchange(gw.port, 'GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n');
  assert.equal(statusOf(text), 400);
  assert.match(text, /WS_BAD_KEY/);
});

test('a handshake with two Sec-WebSocket-Key headers is refused with 400', async () => {
  const text = await rawExchange(gw.port, handshake('/ws/a', 'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n'));
  assert.equal(statusOf(text), 400);
  assert.match(text, /WS_BAD_KEY/);
});

test('a handshake with version 8 gets 426 and Sec-WebSocket-Version: 13', async () => {
  const text = await rawExchange(gw.port, handshake('/ws/a').replace('Version: 13', 'Version: 8'));
  assert.equal(statusOf(text), 426);
  assert.match(text, /sec-websocket-version: 13/i);
});

test('a POST handshake is refused with 405 and Allow: GET', async () => {
  const text = await rawExchange(gw.port, handshake('/ws/a').replace(/^GET/, 'POST'));
  assert.equal(statusOf(text), 405);
  assert.match(text, /allow: GET/i);
});

for (const path of ['/ws/../admin/x', '/ws/%2e%2e/admin/x', '/ws/%2E%2e/admin/x', '/ws/.%2e/admin/x', '//ws/../admin/x']) {
  test(`${path} is routed as /admin/x, so the admin route's plugin refuses it`, async () => {
    const before = up.handshakes.length;
    const text = await rawExchange(gw.port, handshake(path));
    assert.equal(statusOf(text), 403);
    assert.match(text, /ACCESS_DENIED/);
    assert.equal(up.handshakes.length, before);
  });
}

for (const [path, why] of [['/ws/%2Fadmin', 'encoded slash'], ['/ws/a%5cb', 'encoded backslash'], ['/ws/a%00', 'NUL'], ['/ws/%zz', 'bad escape']]) {
  test(`${path} (${why}) is refused with 400 BAD_PATH`, async () => {
    const text = await rawExchange(gw.port, handshake(path));
    assert.equal(statusOf(text), 400);
    assert.match(text, /BAD_PATH/);
  });
}

test('a slow handshake is cut with 408 after client_header_timeout', async () => {
  const text = await rawExchange(gw.port, 'GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n');
  assert.equal(statusOf(text), 408);
});

test('oversized headers get 431', async () => {
  const text = await rawExchange(gw.port, handshake('/ws/a', `X-Big: ${'a'.repeat(4096)}\r\n`));
  assert.equal(statusOf(text), 431);
});

test('a 101 with a wrong Sec-WebSocket-Accept is answered 502 WS_UPSTREAM_BAD_HANDSHAKE', async () => {
  const r = await openWs(`${gw.ws}/lying`);
  assert.equal(r.status, 502);
  assert.equal(JSON.parse(r.body).error.code, 'WS_UPSTREAM_BAD_HANDSHAKE');
});

test('error answers carry a code and no stack trace', async () => {
  const r = await openWs(`${gw.ws}/nowhere`);
  assert.equal(r.status, 404);
  const body = JSON.parse(r.body);
  assert.equal(body.error.code, 'ROUTE_NOT_FOUND');
  assert.ok(!r.body.includes('    at '), 'no stack trace');
});
