// Server-Sent Events through the gateway as a client and an upstream observe them:
// unbuffered event-by-event delivery, headers, no compression, heartbeats only
// between events, maximum duration, and both sides ending the stream.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { config, eventually, httpUpstream, listen, startGateway, untilText, within } from './helpers.js';

/**
 * The upstream: every request gets an event stream whose writes the test makes,
 * through `stream(url)`. `/gzip` streams are gzipped whatever the client accepts;
 * `/length` streams declare a Content-Length.
 */
const streams = new Map();

function upstreamHandler(req, res, rec) {
  rec.closed = false;
  res.on('close', () => {
    rec.closed = true;
  });
  if (req.url.endsWith('/gzip')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
    res.flushHeaders();
    const gz = zlib.createGzip();
    gz.pipe(res);
    // Each write is flushed so the gzip stream carries it at once.
    streams.set(req.url, { rec, res, write: (s) => (gz.write(s), gz.flush()), end: () => gz.end() });
    return;
  }
  if (req.url.endsWith('/slow')) {
    // A plain response that takes a while: a request pipelined behind it waits for it.
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 4 });
      res.end('slow');
    }, 150);
    return;
  }
  if (req.url.endsWith('/length')) {
    const body = 'data: sized\n\n';
    res.writeHead(200, { 'content-type': 'text/event-stream', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'public, max-age=60' });
  res.flushHeaders();
  streams.set(req.url, { rec, res, write: (s) => res.write(s), end: () => res.end() });
}

/** The upstream side of the stream for `url`, once its request arrived. */
async function stream(url) {
  const s = await eventually(() => streams.get(url));
  assert.ok(s, `the upstream received ${url}`);
  return s;
}

/** Open an event stream through the gateway; `text` accumulates what the client received. */
function openSse(port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path, agent: false, headers: { accept: 'text/event-stream', ...headers } },
      (res) => {
        const s = { status: res.statusCode, headers: res.headers, text: '', req, res };
        res.setEncoding('utf8');
        res.on('data', (c) => {
          s.text += c;
        });
        res.on('error', () => {});
        s.ended = new Promise((r) => res.on('close', r));
        resolve(s);
      },
    );
    req.on('error', reject);
  });
}



const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let up;
let gw;

before(async () => {
  up = await httpUpstream(upstreamHandler);
  gw = await startGateway(
    config(
      up.port,
      `  - { id: sse, uri: /sse/*, upstream_id: up }
  - { id: heartbeat, uri: /hb/*, upstream_id: up, sse: { heartbeat_interval: 0.2 } }
  - { id: short, uri: /short/*, upstream_id: up, sse: { max_duration: 0.3 } }
  - id: quick-read
    uri: /quick/*
    upstream: { nodes: { "127.0.0.1:${up.port}": 1 }, timeout: { connect: 2, read: 0.3 } }`,
    ),
  );
});

after(async () => {
  await gw.close();
  await up.close();
});

test('events arrive one by one: event 1 reaches the client before the upstream writes event 2', async () => {
  const c = await openSse(gw.port, '/sse/one-by-one');
  const u = await stream('/sse/one-by-one');
  u.write('id: 1\ndata: one\n\n');
  await untilText(c, (t) => t.includes('data: one\n\n'), 'event 1 arrives alone');
  assert.ok(!c.text.includes('two'));
  u.write('id: 2\ndata: two\n\n');
  await untilText(c, (t) => t.includes('data: two\n\n'), 'event 2 arrives');
  u.write('id: 3\ndata: three\n\n');
  await untilText(c, (t) => t.includes('data: three\n\n'), 'event 3 arrives');
  assert.equal(c.text, 'id: 1\ndata: one\n\nid: 2\ndata: two\n\nid: 3\ndata: three\n\n');
  u.end();
  await within(c.ended, 'the client stream ends when the upstream ends');
});

test('the stream has Cache-Control: no-cache, no-transform, X-Accel-Buffering: no, no Content-Length, no Content-Encoding', async () => {
  const c = await openSse(gw.port, '/sse/headers', { 'accept-encoding': 'gzip, deflate, br' });
  const u = await stream('/sse/headers');
  assert.equal(c.status, 200);
  assert.match(c.headers['content-type'], /^text\/event-stream/);
  assert.equal(c.headers['cache-control'], 'no-cache, no-transform');
  assert.equal(c.headers['x-accel-buffering'], 'no');
  assert.equal(c.headers['content-length'], undefined);
  assert.equal(c.headers['content-encoding'], undefined);
  // The gateway did not invite the upstream to compress.
  assert.equal(u.rec.headers['accept-encoding'], undefined);
  u.write('data: plain\n\n');
  await untilText(c, (t) => t === 'data: plain\n\n', 'the event arrives as plain text');
  u.end();
  await within(c.ended, 'the client stream ends');
});

/** A raw client connection: `text()` is every byte received so far (latin1), `ended` its close. */
function rawClient(port, data) {
  const sock = net.connect(port, '127.0.0.1', () => sock.write(data));
  const chunks = [];
  sock.on('data', (c) => chunks.push(c));
  sock.on('error', () => {});
  return { sock, text: () => Buffer.concat(chunks).toString('latin1'), ended: new Promise((r) => sock.on('close', r)) };
}

const SSE_GET = (path) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`;

test('on the wire: after the head the client gets exactly the event bytes (no chunk framing), and the connection closes at the end', async () => {
  const c = rawClient(gw.port, SSE_GET('/sse/wire'));
  const u = await stream('/sse/wire');
  u.write('data: one\n\n');
  u.write('data: two\n\n');
  assert.ok(await eventually(() => c.text().endsWith('data: two\n\n')), `both events arrive; got ${JSON.stringify(c.text())}`);
  const [head, body] = c.text().split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 200 /);
  assert.match(head, /\r\nconnection: close/i);
  assert.doesNotMatch(head, /transfer-encoding/i);
  assert.equal(body, 'data: one\n\ndata: two\n\n');
  u.end();
  await within(c.ended, 'the gateway closes the connection when the upstream ends');
  assert.equal(c.text().split('\r\n\r\n')[1], 'data: one\n\ndata: two\n\n');
});

test('a stream pipelined behind a slow response: the slow response first, then the stream head, then its events', async () => {
  const c = rawClient(gw.port, `GET /sse/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n${SSE_GET('/sse/piped')}`);
  const u = await stream('/sse/piped');
  // The event is written while the first response is still pending.
  u.write('data: piped\n\n');
  assert.ok(await eventually(() => c.text().endsWith('data: piped\n\n')), `the event arrives; got ${JSON.stringify(c.text())}`);
  const text = c.text();
  const first = text.indexOf('\r\n\r\nslow');
  const second = text.indexOf('HTTP/1.1 200', 1);
  assert.ok(text.startsWith('HTTP/1.1 200') && first > 0, 'the slow response comes first, whole');
  assert.ok(second > first, 'the stream head follows it');
  assert.equal(text.slice(text.indexOf('\r\n\r\n', second) + 4), 'data: piped\n\n');
  u.end();
  await within(c.ended, 'the connection closes when the stream ends');
});

test('over a TLS listener: the events arrive one by one and the stream ends with the upstream', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-sse-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const g = await startGateway(
    config(up.port, '  - { id: sse, uri: /sse/*, upstream_id: up }').replace(
      'listen: [{ host: 127.0.0.1, port: 0 }]',
      `listen: [{ host: 127.0.0.1, port: 0, tls: { cert: ${join(dir, 'cert.pem')}, key: ${join(dir, 'key.pem')} } }]`,
    ),
  );
  t.after(() => g.close());
  const c = { text: '' };
  const res = await new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port: g.port, path: '/sse/tls', ca: readFileSync(join(dir, 'cert.pem')), agent: false, headers: { accept: 'text/event-stream' } }, resolve)
      .on('error', reject);
  });
  res.setEncoding('utf8');
  res.on('data', (d) => {
    c.text += d;
  });
  res.on('error', () => {});
  const ended = new Promise((r) => res.on('close', r));
  assert.equal(res.statusCode, 200);
  const u = await stream('/sse/tls');
  u.write('data: one\n\n');
  await untilText(c, (t) => t === 'data: one\n\n', 'event 1 arrives');
  u.write('data: two\n\n');
  await untilText(c, (t) => t === 'data: one\n\ndata: two\n\n', 'event 2 arrives');
  u.end();
  await within(ended, 'the client stream ends');
});

test('an upstream that gzips the stream anyway: the client gets plain text, event by event', async () => {
  const c = await openSse(gw.port, '/sse/gzip', { 'accept-encoding': 'gzip' });
  const u = await stream('/sse/gzip');
  assert.equal(c.status, 200);
  assert.equal(c.headers['content-encoding'], undefined);
  u.write('data: first\n\n');
  await untilText(c, (t) => t === 'data: first\n\n', 'event 1 arrives decoded');
  u.write('data: second\n\n');
  await untilText(c, (t) => t === 'data: first\n\ndata: second\n\n', 'event 2 arrives decoded');
  u.end();
  await within(c.ended, 'the client stream ends when the gzip stream ends');
});

test('an upstream Content-Length is not relayed on a stream', async () => {
  const c = await openSse(gw.port, '/sse/length');
  await within(c.ended, 'the stream ends');
  assert.equal(c.headers['content-length'], undefined);
  assert.equal(c.text, 'data: sized\n\n');
});

test('Last-Event-ID is passed to the upstream', async () => {
  const c = await openSse(gw.port, '/sse/resume', { 'last-event-id': '42' });
  const u = await stream('/sse/resume');
  assert.equal(u.rec.headers['last-event-id'], '42');
  u.end();
  await within(c.ended, 'the client stream ends');
});

test('heartbeat comments are sent between events and never inside one', async () => {
  const c = await openSse(gw.port, '/hb/stream');
  const u = await stream('/hb/stream');
  u.write('data: first\n\n');
  await untilText(c, (t) => t.startsWith('data: first\n\n') || /^(:\n\n)+data: first\n\n/.test(t), 'event 1 arrives');
  await untilText(c, (t) => /data: first\n\n(:\n\n)+$/.test(t), 'a heartbeat follows a quiet period between events');
  // Half an event, then silence for several heartbeat intervals, then the rest.
  u.write('data: ha');
  await untilText(c, (t) => t.endsWith('data: ha'), 'the first half arrives');
  await sleep(700);
  u.write('lf\n\n');
  await untilText(c, (t) => t.includes('lf\n\n'), 'the rest of the event arrives');
  assert.match(c.text, /^(:\n\n)*data: first\n\n(:\n\n)+data: half\n\n(:\n\n)*$/);
  await untilText(c, (t) => /data: half\n\n(:\n\n)+$/.test(t), 'heartbeats resume after the event');
  u.end();
  await within(c.ended, 'the client stream ends');
});

test('timeout.read bounds the wait for the headers only: a quiet stream outlives it', async () => {
  const c = await openSse(gw.port, '/quick/stream');
  const u = await stream('/quick/stream');
  assert.equal(c.status, 200);
  u.write('data: one\n\n');
  await untilText(c, (t) => t === 'data: one\n\n', 'event 1 arrives');
  await sleep(900); // three read timeouts of silence
  u.write('data: two\n\n');
  await untilText(c, (t) => t === 'data: one\n\ndata: two\n\n', 'event 2 arrives on the same stream');
  assert.equal(u.rec.closed, false);
  u.end();
  await within(c.ended, 'the client stream ends');
});

test('a POST still sending its body when the stream starts: the stream outlives timeout.read', async (t) => {
  // Answers at once, without waiting for the request body (as a streaming API may).
  let upRes;
  const early = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: one\n\n');
    upRes = res;
  });
  const port = await listen(early);
  const g = await startGateway(
    config(
      port,
      `  - id: early
    uri: /early
    upstream: { nodes: { "127.0.0.1:${port}": 1 }, timeout: { connect: 2, send: 5, read: 0.3 } }`,
    ),
  );
  t.after(async () => {
    await g.close();
    early.closeAllConnections();
    await new Promise((r) => early.close(r));
  });
  const c = await new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: g.port, path: '/early', method: 'POST', agent: false, headers: { accept: 'text/event-stream' } },
      (res) => {
        const s = { status: res.statusCode, text: '', req };
        res.setEncoding('utf8');
        res.on('data', (chunk) => (s.text += chunk));
        res.on('error', () => {});
        s.ended = new Promise((r) => res.on('close', r));
        resolve(s);
      },
    );
    req.on('error', reject);
    req.write('{"prompt": "first half');
  });
  await untilText(c, (t) => t === 'data: one\n\n', 'event 1 arrives while the body is still being sent');
  c.req.end(' second half"}');
  await sleep(900); // three read timeouts of silence after the body is done
  upRes.write('data: two\n\n');
  await untilText(c, (t) => t === 'data: one\n\ndata: two\n\n', 'event 2 arrives on the same stream');
  upRes.end();
  await within(c.ended, 'the client stream ends');
});

test('max_duration ends the stream and the upstream request', async () => {
  const c = await openSse(gw.port, '/short/stream');
  const u = await stream('/short/stream');
  u.write('data: before the limit\n\n');
  await within(c.ended, 'the stream ends at max_duration');
  assert.equal(c.text, 'data: before the limit\n\n');
  assert.ok(await eventually(() => u.rec.closed), 'the upstream sees its request closed');
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/short/stream'));
  assert.equal(line.protocol, 'sse');
  assert.equal(line.closed_by, 'gateway');
  assert.equal(line.error, 'SSE_MAX_DURATION');
});

test('a client that disconnects aborts the upstream request; the access log says closed_by client', async () => {
  const c = await openSse(gw.port, '/sse/leave');
  const u = await stream('/sse/leave');
  u.write('data: hello\n\n');
  await untilText(c, (t) => t === 'data: hello\n\n', 'the event arrives');
  c.req.destroy();
  assert.ok(await eventually(() => u.rec.closed), 'the upstream sees its request closed');
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/sse/leave'));
  assert.equal(line.protocol, 'sse');
  assert.equal(line.status, 200);
  assert.equal(line.closed_by, 'client');
  assert.equal(line.client_ip, '127.0.0.1');
});

test('an upstream that ends its response ends the client stream', async () => {
  const c = await openSse(gw.port, '/sse/upstream-ends');
  const u = await stream('/sse/upstream-ends');
  u.write('data: last\n\n');
  u.end();
  await within(c.ended, 'the client stream ends');
  assert.equal(c.text, 'data: last\n\n');
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/sse/upstream-ends'));
  assert.equal(line.closed_by, 'upstream');
  assert.equal(line.error, null);
});

test('an upstream that dies mid-stream ends the client stream', async () => {
  const c = await openSse(gw.port, '/sse/upstream-dies');
  const u = await stream('/sse/upstream-dies');
  u.write('data: before\n\n');
  await untilText(c, (t) => t === 'data: before\n\n', 'the event arrives');
  u.res.socket.destroy();
  await within(c.ended, 'the client stream ends');
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/sse/upstream-dies'));
  assert.equal(line.closed_by, 'upstream');
  assert.equal(line.error, 'UPSTREAM_CLOSED');
});

test('the gateway ends live streams on shutdown', async (t) => {
  const g = await startGateway(config(up.port, '  - { id: sse, uri: /sse/*, upstream_id: up }'));
  t.after(() => g.close());
  const c = await openSse(g.port, '/sse/shutdown');
  const u = await stream('/sse/shutdown');
  u.write('data: live\n\n');
  await untilText(c, (t) => t === 'data: live\n\n', 'the event arrives');
  await within(g.close(2000), 'the gateway closes');
  await within(c.ended, 'the client stream ends');
  assert.ok(await eventually(() => u.rec.closed), 'the upstream sees its request closed');
});
