// Shared test helpers: real upstream servers on port 0, the gateway started from
// the compiled public API with its log captured, and raw-socket clients.
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { WebSocketServer, WebSocket } from 'ws';
import { Gateway, createLogger, createRegistry, loadConfigText } from '../dist/index.js';

export const EXAMPLES = new URL('../examples/', import.meta.url).pathname;

/** Listen on 127.0.0.1:0 and return the port. */
export async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server.address().port;
}

/**
 * A WebSocket echo upstream that records every handshake it accepted and every
 * message it received. `opts.handleProtocols`, `opts.onConnection` customise it.
 */
export async function wsUpstream(opts = {}) {
  const handshakes = [];
  const received = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    received.push({ http: true, method: req.method, url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'text/plain' }).end('plain http\n');
  });
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: opts.perMessageDeflate ?? false,
    ...(opts.handleProtocols ? { handleProtocols: opts.handleProtocols } : {}),
    ...(opts.verifyClient ? { verifyClient: opts.verifyClient } : {}),
  });
  server.on('connection', (s) => sockets.add(s));
  wss.on('connection', (ws, req) => {
    handshakes.push({ url: req.url, headers: req.headers });
    if (opts.onConnection) return opts.onConnection(ws, req);
    ws.on('message', (data, isBinary) => {
      received.push({ data: isBinary ? data : data.toString(), isBinary });
      if (!isBinary && data.toString() === 'close-me') return ws.close(4001, 'asked to close');
      ws.send(data, { binary: isBinary });
    });
  });
  const port = await listen(server);
  return {
    port,
    server,
    wss,
    handshakes,
    received,
    async close() {
      for (const c of wss.clients) c.terminate();
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A plain HTTP upstream; `handler(req, res)` answers, every request is recorded. */
export async function httpUpstream(handler) {
  const requests = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rec = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() };
      requests.push(rec);
      if (handler) handler(req, res, rec);
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, url: req.url }));
    });
  });
  server.on('connection', (s) => sockets.add(s));
  server.on('upgrade', (req, socket) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers, upgrade: true });
    socket.destroy();
  });
  const port = await listen(server);
  return {
    port,
    server,
    requests,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A capturing log stream: lines parsed as JSON. */
export function logSink() {
  const lines = [];
  return {
    lines,
    write(s) {
      for (const l of String(s).split('\n')) if (l) lines.push(JSON.parse(l));
    },
    raw() {
      return lines.map((l) => JSON.stringify(l)).join('\n');
    },
    access() {
      return lines.filter((l) => l.type === 'access');
    },
  };
}

/**
 * Start a gateway on a YAML config (text). Writes it to a temp dir so relative
 * paths work; `files` are written beside it. Returns the gateway, its base URLs
 * and the captured log.
 */
export async function startGateway(yaml, { files = {}, env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-test-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  const config = await loadConfigText(yaml, file, { registry: createRegistry(), env: { ...process.env, ...env } });
  const sink = logSink();
  const gw = await Gateway.start(config, { logger: createLogger({ ...config.gateway.log, level: 'debug' }, sink) });
  const addr = gw.addresses()[0];
  return {
    gw,
    dir,
    port: addr.port,
    http: `http://127.0.0.1:${addr.port}`,
    ws: `ws://127.0.0.1:${addr.port}`,
    log: sink,
    close: (grace = 500) => gw.close(grace),
  };
}

/** Minimal config around one upstream port with the given routes (YAML list items). */
export function config(upstreamPort, routesYaml, extra = '') {
  return `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  log: { level: debug }
${extra}
upstreams:
  - id: up
    nodes: { "127.0.0.1:${upstreamPort}": 1 }
    timeout: { connect: 2, send: 5, read: 5 }
routes:
${routesYaml}
`;
}

/** Open a WebSocket; resolves with { ws, res } on open, or { status, headers, body } on a refused handshake. */
export function openWs(url, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? [], { perMessageDeflate: false, ...opts });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    ws.once('error', (err) => reject(err));
  });
}

/** Wait for the next message (as string unless binary). */
export async function nextMessage(ws) {
  const [data, isBinary] = await once(ws, 'message');
  return isBinary ? data : data.toString();
}

/** Collect the next `n` messages (a listener, so messages emitted in one tick are not missed). */
export function collect(ws, n) {
  return new Promise((resolve) => {
    const got = [];
    const on = (data, isBinary) => {
      got.push(isBinary ? data : data.toString());
      if (got.length === n) {
        ws.off('message', on);
        resolve(got);
      }
    };
    ws.on('message', on);
  });
}

/** Wait for close; resolves { code, reason }. */
export async function closed(ws) {
  if (ws.readyState === ws.CLOSED) return { code: ws._closeCode, reason: '' };
  const [code, reason] = await once(ws, 'close');
  return { code, reason: reason.toString() };
}

/**
 * Send raw bytes on a TCP connection and collect everything until the server
 * closes (or `untilMs` of silence after the first byte, for keep-alive).
 */
export function rawExchange(port, data, { waitForClose = true, idleMs = 300 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    let timer;
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    sock.on('connect', () => {
      for (const d of Array.isArray(data) ? data : [data]) sock.write(d);
    });
    sock.on('data', (c) => {
      chunks.push(c);
      if (!waitForClose) {
        clearTimeout(timer);
        timer = setTimeout(done, idleMs);
      }
    });
    sock.on('close', done);
    sock.on('error', (e) => (chunks.length ? done() : reject(e)));
  });
}

/** A valid client handshake request (raw text) for `path`. */
export function handshake(path, extra = '', host = '127.0.0.1') {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
}

/** Status code of a raw HTTP response text. */
export function statusOf(text) {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Poll `fn` until it returns truthy (bounded); for effects that land asynchronously. */
export async function eventually(fn, { tries = 100, every = 20 } = {}) {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, every));
  }
  return fn();
}

/** GET with node:http, collecting the body. */
export function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      })
      .on('error', reject);
  });
}

/** Bounded wait for a promise; rejects naming `what` if it does not settle within `ms`. */
export function within(promise, what, ms = 3000) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/** Bounded wait until a stream client's received `text` satisfies `pred`. */
export async function untilText(s, pred, what) {
  const ok = await eventually(() => pred(s.text));
  if (!ok) throw new Error(`${what}; the client received ${JSON.stringify(s.text)}`);
}
