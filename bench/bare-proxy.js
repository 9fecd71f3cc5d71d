// The `node-bare` and `node-net` targets: the least a Node process can do as a
// reverse proxy for the bench's three routes, with no checks at all, so that
// what Node itself costs is a figure of every run (docs/BENCHMARKS.md, "Where
// the time goes").
//
//   node bench/bare-proxy.js --port=N --ws=N --sse=N --http=N [--front=net]
//
// --port is where it listens (127.0.0.1); --ws, --sse and --http are the
// upstream's ports (`up` in bench/lib/configs.js). Routes as the nginx target:
//   /ws...   WebSocket: http.Server 'upgrade' → net.connect → the request head
//            in one write → pipe both ways. With --front=net (`node-net`) the
//            listener is a net.Server and no HTTP parser ever sees an upgrade:
//            the first request head is found by its blank line (at most 16 KiB),
//            a /ws request is written upstream as it came and piped; any other
//            connection is handed to the http.Server below. What is left is
//            the cost of two sockets and a pipe.
//   /sse...  http.request upstream; the response head through ServerResponse,
//            then every upstream chunk straight to the client's socket
//   else     plain HTTP: http.request, bodies piped both ways
// Plain Node, no dependencies. Exits on SIGTERM and SIGINT.

import http from 'node:http';
import net from 'node:net';

function parseArgs(argv) {
  const opts = { front: 'http' };
  for (const arg of argv) {
    if (arg === '--front=net' || arg === '--front=http') {
      opts.front = arg.slice(8);
      continue;
    }
    const m = /^--(port|ws|sse|http)=(\d+)$/.exec(arg);
    if (!m) throw new Error(`unknown or malformed argument: ${arg}`);
    opts[m[1]] = Number(m[2]);
  }
  for (const key of ['port', 'ws', 'sse', 'http']) {
    if (!opts[key]) throw new Error(`usage: node bench/bare-proxy.js --port=N --ws=N --sse=N --http=N (missing --${key})`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const HOST = '127.0.0.1';
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

/** The upstream port for a request path, by prefix as nginx's `location`s. */
function upstreamPort(url) {
  if (url.startsWith('/ws')) return opts.ws;
  if (url.startsWith('/sse')) return opts.sse;
  return opts.http;
}

// ---- upgrade: a byte pipe once the head is written -----------------------------

function onUpgrade(req, socket, head) {
  const raw = req.rawHeaders;
  let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  for (let i = 0; i < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`;
  text += '\r\n';
  const bytes = Buffer.from(text, 'latin1');
  pipeUpstream(socket, upstreamPort(req.url), head.length > 0 ? Buffer.concat([bytes, head]) : bytes);
}

/** Connect to `port`, write `first`, then pipe both ways; either side's end ends both. */
function pipeUpstream(socket, port, first) {
  const up = net.connect({ host: HOST, port });
  socket.setNoDelay(true);
  up.setNoDelay(true);
  up.once('connect', () => {
    up.write(first);
    socket.pipe(up);
    up.pipe(socket);
  });
  const both = () => {
    socket.destroy();
    up.destroy();
  };
  socket.on('error', both);
  socket.on('close', both);
  up.on('error', both);
  up.on('close', both);
}

// ---- plain requests: SSE and HTTP ------------------------------------------------

const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'proxy-connection', 'upgrade', 'te', 'trailer'];

function endToEndHeaders(headers, keep = []) {
  const out = { ...headers };
  for (const name of HOP_BY_HOP) if (!keep.includes(name)) delete out[name];
  return out;
}

function onRequest(req, res) {
  const sse = req.url.startsWith('/sse');
  const upReq = http.request(
    { host: HOST, port: upstreamPort(req.url), method: req.method, path: req.url, headers: endToEndHeaders(req.headers, ['content-length', 'transfer-encoding']), agent },
    (upRes) => (sse ? streamEvents(res, upRes) : relay(res, upRes)),
  );
  upReq.on('error', () => {
    if (res.headersSent) res.destroy();
    else {
      res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
      res.end('bad gateway\n');
    }
  });
  // A client gone before the end: the upstream stops producing for nobody.
  res.on('close', () => {
    if (!res.writableFinished) upReq.destroy();
  });
  req.pipe(upReq);
}

function relay(res, upRes) {
  res.writeHead(upRes.statusCode, endToEndHeaders(upRes.headers, ['content-length']));
  upRes.pipe(res);
}

/**
 * The head through ServerResponse, delimited by the connection's close (no
 * chunked framing), then every chunk to the client's socket itself, as
 * src/transport/http/sse.ts does.
 */
function streamEvents(res, upRes) {
  res.useChunkedEncodingByDefault = false;
  res.writeHead(upRes.statusCode, { ...endToEndHeaders(upRes.headers), connection: 'close' });
  res.flushHeaders();
  const socket = res.socket;
  const out = socket && res.writableLength === socket.writableLength ? socket : res;
  upRes.on('data', (chunk) => {
    if (!out.write(chunk)) upRes.pause();
  });
  out.on('drain', () => upRes.resume());
  upRes.on('end', () => res.end());
  upRes.on('close', () => {
    if (!upRes.complete) res.destroy();
  });
}

// ---- start -------------------------------------------------------------------------

// --front=net: the first request head, read by hand; /ws piped as it came, the rest to `server`.
const MAX_HEAD = 16 * 1024;

function onNetConnection(socket) {
  let buf = null;
  const onData = (chunk) => {
    buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
    if (buf.indexOf('\r\n\r\n') < 0) {
      if (buf.length > MAX_HEAD) socket.destroy();
      return;
    }
    socket.off('data', onData);
    socket.off('error', onError);
    const space = buf.indexOf(' ');
    if (buf.subarray(space + 1, space + 4).toString('latin1') === '/ws') return pipeUpstream(socket, opts.ws, buf);
    socket.pause();
    socket.unshift(buf);
    server.emit('connection', socket);
    socket.resume();
  };
  const onError = () => socket.destroy();
  socket.on('data', onData);
  socket.on('error', onError);
}

const server = http.createServer({ noDelay: true }, onRequest);
server.on('upgrade', onUpgrade);
server.on('clientError', (err, socket) => socket.destroy());
server.keepAliveTimeout = 60_000;
const listener = opts.front === 'net' ? net.createServer({ noDelay: true }, onNetConnection) : server;
listener.listen({ host: HOST, port: opts.port, backlog: 4096 }, () => {
  console.log(`bare-proxy (${opts.front} front): 127.0.0.1:${opts.port} → ws :${opts.ws}, sse :${opts.sse}, http :${opts.http}`);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
