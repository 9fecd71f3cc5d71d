// Event streams read on a raw upstream socket (transport/http/stream-request.ts):
// a GET that accepts text/event-stream bypasses Node's HTTP client, so its framing
// is ours. What a client and the upstream observe: the request on the wire, every
// body framing an upstream may use, interim 1xx heads, answers that are not a
// stream, broken framing, failover and a TLS upstream.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, listen, startGateway, untilText, within } from './helpers.js';
import { freePort } from './redis-helpers.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A raw TCP upstream: each connection's request head is recorded, then the script
 * for its path (`scripts[path](socket)`) writes whatever bytes the test wants.
 */
const scripts = {};
const requests = [];
let up;
let upPort;
let gw;

function rawUpstream() {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let buf = '';
    socket.on('error', () => {});
    socket.on('data', function onData(d) {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      const [line, ...lines] = buf.slice(0, end).split('\r\n');
      const headers = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      const path = line.split(' ')[1];
      const rec = { line, headers, extra: buf.slice(end + 4), socket, closed: false };
      socket.on('close', () => {
        rec.closed = true;
      });
      requests.push(rec);
      const script = scripts[path.split('?')[0]];
      if (script) script(socket, rec);
      else socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
    });
  });
  return server;
}

function gatewayConfig(upPort, extra = '') {
  return `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  log: { level: debug }
upstreams:
  - id: up
    nodes: { "127.0.0.1:${upPort}": 1 }
    timeout: { connect: 2, send: 5, read: 1 }
routes:
  - { id: s, uri: /s/*, upstream_id: up }
${extra}`;
}

/** Open an event stream; `text` accumulates what the client received. */
function openSse(port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const s = { status: res.statusCode, headers: res.headers, text: '', complete: false };
      res.setEncoding('utf8');
      res.on('data', (c) => {
        s.text += c;
      });
      res.on('error', () => {});
      res.on('end', () => {
        s.complete = true;
      });
      s.ended = new Promise((r) => res.on('close', r));
      resolve(s);
    });
    req.on('error', reject);
  });
}



const STREAM_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n';
const chunk = (s) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;

before(async () => {
  up = rawUpstream();
  upPort = await listen(up);
  gw = await startGateway(gatewayConfig(upPort));
});

after(async () => {
  await gw.close();
  up.closeAllConnections?.();
  for (const r of requests) r.socket.destroy();
  await new Promise((r) => up.close(r));
});

test('the upstream gets one GET head: forwarding headers, Connection: close, no Accept-Encoding, no body', async () => {
  scripts['/s/wire'] = (sock) => sock.write(STREAM_HEAD + chunk('data: hi\n\n'));
  const c = await openSse(gw.port, '/s/wire?room=1', { 'accept-encoding': 'gzip', 'last-event-id': '41' });
  await untilText(c, (t) => t === 'data: hi\n\n', 'the event arrives');
  const r = requests.find((q) => q.line.startsWith('GET /s/wire'));
  assert.equal(r.line, 'GET /s/wire?room=1 HTTP/1.1');
  assert.equal(r.headers.connection, 'close');
  assert.equal(r.headers['accept-encoding'], undefined);
  assert.equal(r.headers['last-event-id'], '41');
  assert.equal(r.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(r.extra, '');
  assert.equal(c.status, 200);
  assert.equal(c.headers['content-type'], 'text/event-stream');
  assert.equal(c.headers['transfer-encoding'], undefined);
  r.socket.end(chunk('data: bye\n\n') + '0\r\n\r\n');
  await within(c.ended, 'the stream ends with the upstream');
  assert.equal(c.text, 'data: hi\n\ndata: bye\n\n');
});

test('chunk framing split at awkward places across reads: every event intact, in order', async () => {
  scripts['/s/split'] = async (sock) => {
    const bytes = STREAM_HEAD + chunk('data: one\n\n') + chunk('data: two\n\n') + '0\r\n\r\n';
    // One segment per piece: the head split mid-line, then the size line, data and CRLFs apart.
    for (const cut of [20, 40, 70, 71, 72, 75, 85, 86, 87, 90, 101, 102, 103, 104]) {
      sock.write(bytes.slice(0, cut).slice(sock.sent ?? 0));
      sock.sent = cut;
      await sleep(15);
    }
    sock.write(bytes.slice(sock.sent));
  };
  const c = await openSse(gw.port, '/s/split');
  await within(c.ended, 'the stream ends');
  assert.equal(c.text, 'data: one\n\ndata: two\n\n');
  assert.equal(c.complete, true);
});

test('a stream delimited by the connection close (no chunked, no length) ends cleanly when the upstream closes', async () => {
  scripts['/s/close'] = async (sock) => {
    sock.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: a\n\n');
    await sleep(20);
    sock.end('data: b\n\n');
  };
  const c = await openSse(gw.port, '/s/close');
  await within(c.ended, 'the stream ends');
  assert.equal(c.text, 'data: a\n\ndata: b\n\n');
  const entry = await eventually(() => gw.log.access().find((l) => l.path === '/s/close'));
  assert.equal(entry.closed_by, 'upstream');
  assert.equal(entry.error, null);
});

test('interim 103 Early Hints and 100 heads are skipped: the client gets the stream that follows', async () => {
  scripts['/s/hints'] = (sock) =>
    sock.write('HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n' + STREAM_HEAD + chunk('data: after hints\n\n'));
  const c = await openSse(gw.port, '/s/hints');
  assert.equal(c.status, 200);
  await untilText(c, (t) => t === 'data: after hints\n\n', 'the event arrives');
});

test('an answer that is not a stream is relayed as it is: status, both Set-Cookies, body by its framing', async () => {
  scripts['/s/denied'] = (sock) =>
    sock.write('HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 17\r\n\r\n{"error":"login"}');
  scripts['/s/chunked404'] = (sock) => sock.write('HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n' + chunk('no such ') + chunk('room') + '0\r\n\r\n');
  const denied = await openSse(gw.port, '/s/denied');
  await within(denied.ended, 'the 401 ends');
  assert.equal(denied.status, 401);
  assert.deepEqual(denied.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(denied.text, '{"error":"login"}');
  assert.equal(denied.complete, true);
  const missing = await openSse(gw.port, '/s/chunked404');
  await within(missing.ended, 'the 404 ends');
  assert.equal(missing.status, 404);
  assert.equal(missing.text, 'no such room');
  assert.equal(missing.complete, true);
});

test('broken chunk framing mid-stream ends that stream (UPSTREAM_CLOSED) and no other', async () => {
  let steady;
  scripts['/s/steady'] = (sock) => {
    steady = sock;
    sock.write(STREAM_HEAD + chunk('data: 1\n\n'));
  };
  scripts['/s/broken'] = async (sock) => {
    sock.write(STREAM_HEAD + chunk('data: ok\n\n'));
    await sleep(20);
    sock.write('zz\r\ngarbage\r\n');
  };
  const other = await openSse(gw.port, '/s/steady');
  await untilText(other, (t) => t === 'data: 1\n\n', 'the other stream runs');
  const c = await openSse(gw.port, '/s/broken');
  await within(c.ended, 'the broken stream ends');
  assert.equal(c.text, 'data: ok\n\n');
  const entry = await eventually(() => gw.log.access().find((l) => l.path === '/s/broken'));
  assert.equal(entry.error, 'UPSTREAM_CLOSED');
  steady.write(chunk('data: 2\n\n'));
  await untilText(other, (t) => t === 'data: 1\n\ndata: 2\n\n', 'the other stream goes on');
  steady.destroy();
});

test('an upstream that closes before answering is a 502, one that never answers a 504, a garbled head a 502', async () => {
  scripts['/s/hangup'] = (sock) => sock.destroy();
  scripts['/s/silent'] = () => {};
  scripts['/s/garbled'] = (sock) => sock.write('HTTP/9 what\r\n\r\n');
  for (const [path, status, code] of [
    ['/s/hangup', 502, 'UPSTREAM_UNAVAILABLE'],
    ['/s/silent', 504, 'UPSTREAM_TIMEOUT'],
    ['/s/garbled', 502, 'UPSTREAM_UNAVAILABLE'],
  ]) {
    const c = await openSse(gw.port, path);
    await within(c.ended, `${path} is answered`);
    assert.equal(c.status, status, path);
    assert.match(c.text, new RegExp(code), path);
    assert.doesNotMatch(c.text, /at .*\.js/, 'no stack trace');
  }
});

test('the client going away closes the upstream connection', async () => {
  let rec;
  scripts['/s/leave'] = (sock, r) => {
    rec = r;
    sock.write(STREAM_HEAD + chunk('data: x\n\n'));
  };
  const req = http.get({ host: '127.0.0.1', port: gw.port, path: '/s/leave', agent: false, headers: { accept: 'text/event-stream' } });
  const res = await new Promise((r) => req.on('response', r));
  await new Promise((r) => res.once('data', r));
  req.destroy();
  assert.ok(await eventually(() => rec.closed), 'the upstream connection is closed');
});

test('a refused first node: the stream comes from the next one', async (t) => {
  const dead = await freePort();
  scripts['/s/failover'] = (sock) => sock.write(STREAM_HEAD + chunk('data: from the live node\n\n'));
  const g = await startGateway(
    gatewayConfig(upPort).replace(`nodes: { "127.0.0.1:${upPort}": 1 }`, `nodes: { "127.0.0.1:${dead}": 100, "127.0.0.1:${upPort}": 1 }`),
  );
  t.after(() => g.close());
  const c = await openSse(g.port, '/s/failover');
  assert.equal(c.status, 200);
  await untilText(c, (t2) => t2 === 'data: from the live node\n\n', 'the event arrives');
});

test('a TLS upstream (scheme https, verified against its CA): the stream arrives event by event', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-sse-up-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  let res;
  const server = https.createServer({ cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) }, (_req, r) => {
    res = r;
    r.writeHead(200, { 'content-type': 'text/event-stream' });
    r.write('data: sealed\n\n');
  });
  const tlsPort = await listen(server);
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const g = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
upstreams:
  - id: up
    scheme: https
    nodes: { "127.0.0.1:${tlsPort}": 1 }
    tls: { ca: ${join(dir, 'cert.pem')} }
routes:
  - { id: s, uri: /s/*, upstream_id: up }
`);
  t.after(() => g.close());
  const c = await openSse(g.port, '/s/tls');
  assert.equal(c.status, 200);
  await untilText(c, (t2) => t2 === 'data: sealed\n\n', 'event 1 arrives');
  res.write('data: again\n\n');
  await untilText(c, (t2) => t2 === 'data: sealed\n\ndata: again\n\n', 'event 2 arrives');
  res.end();
  await within(c.ended, 'the stream ends with the upstream');
});
