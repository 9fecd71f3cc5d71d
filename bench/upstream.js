// The upstreams every target proxies to, in one process started by run.js:
//   ws   WebSocket echo (any path), permessage-deflate off
//   sse  /sse: one event every `interval` ms on every open stream, each event
//        stamped with the monotonic clock (CLOCK_MONOTONIC is system-wide on
//        Linux, so the load generator can compute the delay in another process)
//   http any path: a small 200 response with keep-alive
// It reports its ports over IPC and exits when the IPC channel closes, so it
// can never outlive the harness.

import http from 'node:http';
import { WebSocketServer } from 'ws';

const SSE_INTERVAL_MS = Number(process.env.BENCH_SSE_INTERVAL_MS ?? 20);
const MAX_PAYLOAD = 1 << 20;

function monoMicros() {
  const [s, ns] = process.hrtime();
  return s * 1e6 + Math.floor(ns / 1e3);
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => resolve(server.address().port));
  });
}

// ---- WebSocket echo -------------------------------------------------------

function onEchoMessage(data, isBinary) {
  this.send(data, { binary: isBinary });
}

function onEchoError() {
  // A client that vanished: nothing to do, 'close' follows.
}

function onEchoConnection(ws) {
  ws.on('message', onEchoMessage);
  ws.on('error', onEchoError);
}

const wsHttp = http.createServer((req, res) => {
  res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
  res.end('websocket only\n');
});
const wss = new WebSocketServer({
  server: wsHttp,
  perMessageDeflate: false,
  maxPayload: MAX_PAYLOAD,
  clientTracking: false,
});
wss.on('connection', onEchoConnection);

// ---- SSE source -----------------------------------------------------------

const streams = new Set(); // { res, seq }

const sseHttp = http.createServer((req, res) => {
  if (!req.url.startsWith('/sse')) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  const stream = { res, seq: 0 };
  streams.add(stream);
  res.on('close', () => streams.delete(stream));
});

// Drift-free schedule: tick k fires at start + k * interval.
let tickNo = 0;
const tickStart = performance.now();
function tick() {
  for (const s of streams) {
    s.seq += 1;
    s.res.write(`id: ${s.seq}\ndata: ${s.seq} ${monoMicros()}\n\n`);
  }
  tickNo += 1;
  const next = tickStart + tickNo * SSE_INTERVAL_MS;
  setTimeout(tick, Math.max(0, next - performance.now()));
}

// ---- plain HTTP -----------------------------------------------------------

const OK = Buffer.from('ok\n');
const plainHttp = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': OK.length });
  res.end(OK);
});
plainHttp.keepAliveTimeout = 60_000;

// ---- start ----------------------------------------------------------------

const ports = {
  ws: await listen(wsHttp),
  sse: await listen(sseHttp),
  http: await listen(plainHttp),
};
setTimeout(tick, SSE_INTERVAL_MS);

if (process.send) {
  process.send({ type: 'ready', ports, pid: process.pid });
  process.on('disconnect', () => process.exit(0));
} else {
  console.log(JSON.stringify(ports));
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
