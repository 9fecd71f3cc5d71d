import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import {
  HOP_BY_HOP,
  buildUpstreamHeaders,
  cleanResponseHeaders,
  hasDuplicateHost,
} from '../dist/transport/http/headers.js';

const BASE = { peer: '203.0.113.9', forwardedFor: [], proto: 'https', host: 'gw.example.com', port: 443, peerTrusted: false };

test('hasDuplicateHost finds two Host lines in any case', () => {
  assert.equal(hasDuplicateHost(['Host', 'a', 'Accept', '*/*']), false);
  assert.equal(hasDuplicateHost(['Host', 'a', 'HOST', 'b']), true);
  assert.equal(hasDuplicateHost(['host', 'a', 'X-Host', 'b', 'hOsT', 'a']), true);
  assert.equal(hasDuplicateHost([]), false);
});

test('hasDuplicateHost sees the duplicate that Node merges away in req.headers', async (t) => {
  let seen;
  const server = http.createServer((req, res) => {
    seen = { merged: req.headers.host, duplicate: hasDuplicateHost(req.rawHeaders) };
    res.end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const { port } = server.address();
  await new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.end('GET / HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\nConnection: close\r\n\r\n');
    });
    s.on('error', reject);
    s.on('close', resolve);
    s.resume();
  });
  assert.equal(seen.duplicate, true);
  assert.equal(seen.merged, 'a.example');
});

test('HOP_BY_HOP lists the fixed hop-by-hop headers', () => {
  for (const h of ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate']) {
    assert.ok(HOP_BY_HOP.has(h), h);
  }
});

test('hop-by-hop headers are stripped, including ones named in Connection', () => {
  const out = buildUpstreamHeaders(
    {
      host: 'gw.example.com',
      connection: 'Upgrade, X-Secret-Hop, keep-alive',
      upgrade: 'websocket',
      'keep-alive': 'timeout=5',
      'proxy-connection': 'keep-alive',
      te: 'trailers',
      trailer: 'x-t',
      'transfer-encoding': 'chunked',
      'proxy-authorization': 'Basic Zm9vOmJhcg==',
      'x-secret-hop': '1',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      authorization: 'Bearer t',
    },
    BASE,
  );
  for (const h of ['connection', 'upgrade', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'proxy-authorization', 'x-secret-hop']) {
    assert.equal(out[h], undefined, h);
  }
  assert.equal(out['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==');
  assert.equal(out.authorization, 'Bearer t');
  assert.equal(out.host, 'gw.example.com');
});

test('Connection cannot strip Host or Content-Length, nor the forwarding headers the gateway sets', () => {
  const out = buildUpstreamHeaders(
    { host: 'gw.example.com', 'content-length': '3', connection: 'host, content-length, x-forwarded-for, x-real-ip' },
    BASE,
  );
  assert.equal(out.host, 'gw.example.com');
  assert.equal(out['content-length'], '3');
  assert.equal(out['x-forwarded-for'], '203.0.113.9');
  assert.equal(out['x-real-ip'], '203.0.113.9');
});

test('spoofed forwarding headers from an untrusted peer are replaced by ours', () => {
  const out = buildUpstreamHeaders(
    {
      host: 'gw.example.com',
      forwarded: 'for=1.1.1.1',
      'x-forwarded-for': '1.1.1.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-port': '1',
      'x-forwarded-prefix': '/admin',
      'x-real-ip': '1.1.1.1',
    },
    BASE,
  );
  assert.equal(out.forwarded, undefined);
  assert.equal(out['x-forwarded-prefix'], undefined);
  assert.equal(out['x-forwarded-for'], '203.0.113.9');
  assert.equal(out['x-real-ip'], '203.0.113.9');
  assert.equal(out['x-forwarded-proto'], 'https');
  assert.equal(out['x-forwarded-host'], 'gw.example.com');
  assert.equal(out['x-forwarded-port'], '443');
});

test('from a trusted proxy: X-Forwarded-For is the believed chain plus the peer, Proto/Host/Port kept as sent', () => {
  const out = buildUpstreamHeaders(
    {
      host: 'gw.internal',
      'x-forwarded-for': '6.6.6.6, 198.51.100.7, 10.0.0.2',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'public.example.com',
      'x-forwarded-port': '8443',
      'x-real-ip': '6.6.6.6',
    },
    { ...BASE, peer: '10.0.0.1', forwardedFor: ['198.51.100.7', '10.0.0.2'], proto: 'http', host: 'gw.internal', port: 80, peerTrusted: true },
  );
  assert.equal(out['x-forwarded-for'], '198.51.100.7, 10.0.0.2, 10.0.0.1');
  assert.equal(out['x-real-ip'], '198.51.100.7');
  assert.equal(out['x-forwarded-proto'], 'https');
  assert.equal(out['x-forwarded-host'], 'public.example.com');
  assert.equal(out['x-forwarded-port'], '8443');
});

test('from a trusted proxy that sent no X-Forwarded-Proto/Host/Port: ours are set', () => {
  const out = buildUpstreamHeaders(
    { host: 'gw.internal' },
    { ...BASE, peer: '10.0.0.1', proto: 'http', host: 'gw.internal', port: 8080, peerTrusted: true },
  );
  assert.equal(out['x-forwarded-for'], '10.0.0.1');
  assert.equal(out['x-forwarded-proto'], 'http');
  assert.equal(out['x-forwarded-host'], 'gw.internal');
  assert.equal(out['x-forwarded-port'], '8080');
});

test('from a trusted proxy, a Forwarded header gets our hop appended', () => {
  const out = buildUpstreamHeaders(
    { forwarded: 'for=198.51.100.7;proto=https' },
    { ...BASE, peer: 'fd00::1', forwardedFor: ['198.51.100.7'], peerTrusted: true },
  );
  assert.equal(out.forwarded, 'for=198.51.100.7;proto=https, for="[fd00::1]"');
});

test('no Host: no X-Forwarded-Host', () => {
  const out = buildUpstreamHeaders({}, { ...BASE, host: undefined });
  assert.equal('x-forwarded-host' in out, false);
});

test('set replaces and null deletes, with case-insensitive names, applied last', () => {
  const out = buildUpstreamHeaders(
    { host: 'gw.example.com', 'x-api-key': 'secret', 'user-agent': 'ua' },
    { ...BASE, set: { 'X-API-Key': null, 'User-Agent': 'portcullis', Host: 'upstream.internal', 'X-Real-IP': null } },
  );
  assert.equal(out['x-api-key'], undefined);
  assert.equal('x-api-key' in out, false);
  assert.equal(out['user-agent'], 'portcullis');
  assert.equal(out.host, 'upstream.internal');
  assert.equal('x-real-ip' in out, false);
});

test('array values such as repeated headers are carried over', () => {
  const out = buildUpstreamHeaders({ 'x-multi': ['a', 'b'] }, BASE);
  assert.deepEqual(out['x-multi'], ['a', 'b']);
});

test('buildUpstreamHeaders adds no Connection or Upgrade', () => {
  const out = buildUpstreamHeaders({ connection: 'Upgrade', upgrade: 'websocket' }, BASE);
  assert.equal(out.connection, undefined);
  assert.equal(out.upgrade, undefined);
});

test('cleanResponseHeaders drops hop-by-hop headers and those the response Connection names', () => {
  const out = cleanResponseHeaders({
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive, X-Upstream-Debug',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    'proxy-authenticate': 'Basic',
    'x-upstream-debug': 'internal',
    'set-cookie': ['a=1', 'b=2'],
  });
  assert.deepEqual(out, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'set-cookie': ['a=1', 'b=2'],
  });
});
