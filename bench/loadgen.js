// Load generator: one process per measurement, started by run.js with its
// parameters as JSON in argv[2]. It talks to the harness over IPC:
//   -> {type:'mark', phase:'start'|'end'}   the measurement window opens/closes now
//   -> {type:'opened'|'verified', ...}      ws-idle progress
//   <- {cmd:'verify'|'close'}               ws-idle steps
//   -> {type:'result', result}              then it exits
// It measures its own CPU (process.cpuUsage) over the window, so the report
// can show whether it, rather than the target, was the bottleneck. Every loop
// here is bounded by the window or by an explicit deadline.

import http from 'node:http';
import WebSocket from 'ws';
import { echoPayload } from './lib/payload.js';
import { signTokens } from './lib/jwt.js';

const p = JSON.parse(process.argv[2] ?? '{}');
const send = (msg) => process.send?.(msg);

process.on('disconnect', () => process.exit(2));

// ---- helpers --------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function monoMicros() {
  const [s, ns] = process.hrtime();
  return s * 1e6 + Math.floor(ns / 1e3);
}

/** Latency samples in microseconds, bounded in memory. */
class Samples {
  constructor(cap = 2_000_000) {
    this.buf = new Float64Array(cap);
    this.n = 0;
    this.seen = 0;
  }
  add(v) {
    this.seen += 1;
    if (this.n < this.buf.length) this.buf[this.n++] = v;
    else {
      // Reservoir sampling keeps the distribution once the buffer is full.
      const j = Math.floor(Math.random() * this.seen);
      if (j < this.buf.length) this.buf[j] = v;
    }
  }
  percentiles(...qs) {
    const sorted = this.buf.slice(0, this.n).sort();
    return qs.map((q) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]));
  }
}

class ErrorTally {
  constructor() {
    this.total = 0;
    this.byMessage = new Map();
  }
  add(err) {
    this.total += 1;
    const key = String(err?.code ?? err?.message ?? err).slice(0, 120);
    if (this.byMessage.size < 50 || this.byMessage.has(key)) this.byMessage.set(key, (this.byMessage.get(key) ?? 0) + 1);
  }
  toJSON() {
    const top = [...this.byMessage.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
    return { total: this.total, top: Object.fromEntries(top) };
  }
}

const addrs = p.localAddresses?.length ? p.localAddresses : ['127.0.0.1'];
let addrNext = 0;
const nextAddr = () => addrs[addrNext++ % addrs.length];

const wsOptions = (headers = p.headers ?? {}) => ({
  perMessageDeflate: false,
  maxPayload: 1 << 20,
  handshakeTimeout: 10_000,
  localAddress: nextAddr(),
  headers,
});

function ignoreError() {}

/** Opens one WebSocket; resolves with it or rejects with the error. */
function openWs(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, wsOptions());
    const onError = (err) => {
      ws.off('open', onOpen);
      reject(err);
    };
    const onOpen = () => {
      ws.off('error', onError);
      // Keeps an error between now and the caller's own listener from crashing the process.
      ws.on('error', ignoreError);
      resolve(ws);
    };
    ws.once('open', onOpen);
    ws.once('error', onError);
  });
}

/** Runs `count` tasks with at most `concurrency` at once; returns settled results. */
async function pool(count, concurrency, task) {
  const results = new Array(count);
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      try {
        results[i] = { ok: true, value: await task(i) };
      } catch (err) {
        results[i] = { ok: false, error: err };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

/** Closes every socket, waiting at most `timeoutMs`, then terminates the rest. */
async function closeAll(sockets, timeoutMs = 5000) {
  const open = sockets.filter((ws) => ws && ws.readyState !== WebSocket.CLOSED);
  await Promise.race([
    Promise.all(
      open.map(
        (ws) =>
          new Promise((resolve) => {
            ws.once('close', resolve);
            ws.on('error', () => {});
            try {
              ws.close(1000);
            } catch {
              ws.terminate();
            }
          }),
      ),
    ),
    sleep(timeoutMs),
  ]);
  for (const ws of open) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
}

/** Opens the window: tells the harness (which samples /proc now) and starts our own clock. */
function windowStart() {
  send({ type: 'mark', phase: 'start' });
  return { t: performance.now(), cpu: process.cpuUsage() };
}

function windowEnd(start) {
  send({ type: 'mark', phase: 'end' });
  const seconds = (performance.now() - start.t) / 1000;
  const cpu = process.cpuUsage(start.cpu);
  return { seconds, loadgenCpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / seconds };
}

// ---- ws-echo --------------------------------------------------------------

async function runEcho() {
  const payload = echoPayload(p.size);
  const K = p.inflight;
  const errors = new ErrorTally();
  const opened = await pool(p.conns, p.conns, () => openWs(p.url));
  const failed = opened.filter((r) => !r.ok);
  if (failed.length > 0) throw new Error(`${failed.length}/${p.conns} connections failed to open: ${failed[0].error?.message}`);
  const sockets = opened.map((r) => r.value);

  let measuring = false;
  let stopping = false;
  let roundTrips = 0;
  let unexpectedCloses = 0;
  let inFlight = 0;
  const rtt = new Samples();

  for (const ws of sockets) {
    const times = new Float64Array(K);
    let head = 0;
    let n = 0;
    ws.on('message', () => {
      const now = performance.now();
      const sent = times[head];
      head = (head + 1) % K;
      n -= 1;
      inFlight -= 1;
      if (measuring) {
        roundTrips += 1;
        rtt.add((now - sent) * 1000);
      }
      if (!stopping) {
        times[(head + n) % K] = now;
        n += 1;
        inFlight += 1;
        ws.send(payload, { binary: false });
      }
    });
    ws.on('error', (err) => errors.add(err));
    ws.on('close', () => {
      if (!stopping) unexpectedCloses += 1;
    });
    const now = performance.now();
    for (let i = 0; i < K; i++) {
      times[(head + n) % K] = now;
      n += 1;
      inFlight += 1;
      ws.send(payload, { binary: false });
    }
  }

  await sleep(p.warmupMs);
  const w = windowStart();
  measuring = true;
  await sleep(p.windowMs);
  measuring = false;
  const win = windowEnd(w);
  stopping = true;
  const drainDeadline = Date.now() + 3000;
  while (inFlight > 0 && Date.now() < drainDeadline) await sleep(20);
  await closeAll(sockets);
  const [p50, p99] = rtt.percentiles(0.5, 0.99);
  return {
    roundTrips,
    seconds: win.seconds,
    ratePerSec: roundTrips / win.seconds,
    p50Ms: p50 === null ? null : p50 / 1000,
    p99Ms: p99 === null ? null : p99 / 1000,
    loadgenCpuPct: win.loadgenCpuPct,
    lostInFlight: inFlight,
    unexpectedCloses,
    errors: errors.toJSON(),
  };
}

// ---- ws-idle --------------------------------------------------------------

function waitForCommand(cmd, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', onMsg);
      reject(new Error(`no '${cmd}' command from the harness within ${timeoutMs} ms`));
    }, timeoutMs);
    function onMsg(msg) {
      if (msg?.cmd === cmd) {
        clearTimeout(timer);
        process.off('message', onMsg);
        resolve(msg);
      }
    }
    process.on('message', onMsg);
  });
}

async function runIdle() {
  const errors = new ErrorTally();
  let closingAll = false;
  let dropped = 0;
  const t0 = performance.now();
  const opened = await pool(p.conns, p.openConcurrency, async () => {
    const ws = await openWs(p.url);
    ws.on('error', (err) => errors.add(err));
    ws.on('close', () => {
      if (!closingAll) dropped += 1;
    });
    return ws;
  });
  const openMs = performance.now() - t0;
  const sockets = [];
  for (const r of opened) {
    if (r.ok) sockets.push(r.value);
    else errors.add(r.error);
  }
  send({ type: 'opened', ok: sockets.length, failed: p.conns - sockets.length, openMs });

  await waitForCommand('verify', 60_000);
  // Every connection that is still there answers a ping through the target.
  let alive = 0;
  await pool(sockets.length, 500, (i) => {
    const ws = sockets[i];
    if (ws.readyState !== WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 5000);
      ws.once('pong', () => {
        alive += 1;
        clearTimeout(timer);
        resolve();
      });
      ws.ping();
    });
  });
  send({ type: 'verified', alive });

  await waitForCommand('close', 60_000);
  closingAll = true;
  await closeAll(sockets, 10_000);
  return {
    requested: p.conns,
    opened: sockets.length,
    alive,
    dropped,
    openMs,
    errors: errors.toJSON(),
  };
}

// ---- sse-stream -----------------------------------------------------------

async function runSse() {
  const url = new URL(p.url);
  const errors = new ErrorTally();
  const delays = new Samples();
  let measuring = false;
  let stopping = false;
  let events = 0;
  let gaps = 0;
  let streamsWithEvents = 0;
  let endedEarly = 0;
  const requests = [];

  for (let i = 0; i < p.streams; i++) {
    const req = http.get({
      host: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      localAddress: nextAddr(),
      agent: false,
      headers: { accept: 'text/event-stream', ...(p.headers ?? {}) },
    });
    requests.push(req);
    req.on('error', (err) => {
      if (!stopping) errors.add(err);
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        errors.add(new Error(`status ${res.statusCode}`));
        res.resume();
        return;
      }
      res.setEncoding('latin1');
      let buf = '';
      let last = -1;
      res.on('data', (chunk) => {
        buf += chunk;
        let end;
        while ((end = buf.indexOf('\n\n')) !== -1) {
          const ev = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const d = ev.indexOf('data: ');
          if (d === -1) continue; // a comment or heartbeat
          const sp = ev.indexOf(' ', d + 6);
          const nl = ev.indexOf('\n', sp);
          const seq = Number(ev.slice(d + 6, sp));
          const stamp = Number(ev.slice(sp + 1, nl === -1 ? undefined : nl));
          if (last === -1) streamsWithEvents += 1;
          else if (measuring && seq > last + 1) gaps += seq - last - 1;
          last = seq;
          if (measuring) {
            events += 1;
            delays.add(monoMicros() - stamp);
          }
        }
      });
      res.on('end', () => {
        if (!stopping) endedEarly += 1;
      });
      res.on('error', () => {});
    });
  }

  const deadline = Date.now() + 15_000;
  while (streamsWithEvents < p.streams && Date.now() < deadline) await sleep(20);
  if (streamsWithEvents < p.streams) {
    stopping = true;
    for (const req of requests) req.destroy();
    throw new Error(`only ${streamsWithEvents}/${p.streams} streams delivered an event within 15 s (errors: ${JSON.stringify(errors.toJSON().top)})`);
  }
  await sleep(p.warmupMs);
  const w = windowStart();
  measuring = true;
  await sleep(p.windowMs);
  measuring = false;
  const win = windowEnd(w);
  stopping = true;
  for (const req of requests) req.destroy();
  const [p50, p99] = delays.percentiles(0.5, 0.99);
  return {
    streams: p.streams,
    events,
    gaps,
    deliveredPct: events + gaps === 0 ? 0 : (100 * events) / (events + gaps),
    nominalPerSec: (p.streams * 1000) / p.intervalMs,
    ratePerSec: events / win.seconds,
    seconds: win.seconds,
    p50Ms: p50 === null ? null : p50 / 1000,
    p99Ms: p99 === null ? null : p99 / 1000,
    endedEarly,
    loadgenCpuPct: win.loadgenCpuPct,
    errors: errors.toJSON(),
  };
}

// ---- handshake-rate -------------------------------------------------------

/**
 * The Authorization headers of the auth targets, all signed here before the
 * warm-up so that signing costs nothing inside the window. 'reused': loop i
 * sends token i on every connection; 'distinct': every connection takes the
 * next unused token. Returns null without a token plan (p.headers apply).
 */
function handshakeTokens(plan) {
  if (!plan) return null;
  const t0 = performance.now();
  const headers = signTokens(plan.privateKeyPem, plan.count, { key: plan.key }).map((t) => ({ authorization: `Bearer ${t}` }));
  const state = { mode: plan.mode, generated: headers.length, used: 0, signMs: performance.now() - t0, exhausted: false, exhaustedInWindow: false };
  return {
    state,
    /** Headers for the next connection of loop `i`, or null once distinct tokens are used up. */
    next(i) {
      if (state.mode === 'reused') {
        state.used = Math.min(headers.length, Math.max(state.used, i + 1));
        return headers[i % headers.length];
      }
      if (state.used >= headers.length) return null;
      return headers[state.used++];
    },
  };
}

async function runHandshake() {
  const errors = new ErrorTally();
  const cycle = new Samples();
  const hello = Buffer.from('{"op":"echo","pad":"hello"}');
  const tokens = handshakeTokens(p.tokens);
  let measuring = false;
  let stopping = false;
  let windowClosed = false;
  let completed = 0;
  let failedInWindow = 0;

  function loop(_, i) {
    return new Promise((resolve) => {
      const step = () => {
        if (stopping) {
          resolve();
          return;
        }
        const headers = tokens ? tokens.next(i) : undefined;
        if (headers === null) {
          // Out of distinct tokens: stop this loop rather than reuse one.
          tokens.state.exhausted = true;
          if (!windowClosed) tokens.state.exhaustedInWindow = true;
          resolve();
          return;
        }
        const t = performance.now();
        let failed = false;
        const ws = new WebSocket(p.url, wsOptions(headers));
        ws.on('open', () => ws.send(hello, { binary: false }));
        ws.on('message', () => ws.close(1000));
        ws.on('error', (err) => {
          failed = true;
          if (measuring) failedInWindow += 1;
          errors.add(err);
        });
        ws.on('close', () => {
          if (!failed && measuring) {
            completed += 1;
            cycle.add((performance.now() - t) * 1000);
          }
          if (failed) setTimeout(step, 20);
          else setImmediate(step);
        });
      };
      step();
    });
  }

  const loops = Array.from({ length: p.concurrency }, loop);
  await sleep(p.warmupMs);
  const w = windowStart();
  measuring = true;
  await sleep(p.windowMs);
  measuring = false;
  const win = windowEnd(w);
  windowClosed = true;
  stopping = true;
  await Promise.race([Promise.all(loops), sleep(10_000)]);
  const [p50, p99] = cycle.percentiles(0.5, 0.99);
  return {
    tokens: tokens?.state ?? null,
    completed,
    failedInWindow,
    ratePerSec: completed / win.seconds,
    seconds: win.seconds,
    p50Ms: p50 === null ? null : p50 / 1000,
    p99Ms: p99 === null ? null : p99 / 1000,
    loadgenCpuPct: win.loadgenCpuPct,
    errors: errors.toJSON(),
  };
}

// ---- main -----------------------------------------------------------------

const modes = { echo: runEcho, idle: runIdle, sse: runSse, handshake: runHandshake };

async function main() {
  const run = modes[p.mode];
  if (!run) throw new Error(`unknown mode ${p.mode}`);
  const result = await run();
  send({ type: 'result', result });
}

main().then(
  () => setTimeout(() => process.exit(0), 50),
  (err) => {
    send({ type: 'error', message: err?.stack ?? String(err) });
    setTimeout(() => process.exit(1), 50);
  },
);
