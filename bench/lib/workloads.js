// The workloads, their parameters (full and --quick), the figures each one
// reports, and how one measurement of one target runs.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sampleTree, sampleMachine, CLK_TCK } from './proc.js';
import { spawnManaged, stopManaged, sleep, lastLines } from './spawn.js';

const LOADGEN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'loadgen.js');

export const WORKLOADS = ['ws-echo', 'ws-idle', 'sse-stream', 'handshake-rate'];

/** Source addresses for clients, so that ephemeral ports never run out. */
export const CLIENT_ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7', '127.0.0.8', '127.0.0.9'];

// proxy: true marks a figure of the proxy process itself (none for `direct`).
// headline: shown in the summary table. better: which way is good.
const F = (key, label, unit, digits, extra = {}) => ({ key, label, unit, digits, proxy: false, headline: false, better: 'lower', ...extra });

const ECHO_FIGURES = [
  F('proxy_cpu_us_per_rt', 'proxy CPU', 'µs/round trip', 2, { proxy: true, headline: true }),
  F('rate_per_s', 'round trips', '/s', 0, { better: 'higher' }),
  F('p50_ms', 'p50 RTT', 'ms', 2),
  F('p99_ms', 'p99 RTT', 'ms', 2),
  F('upstream_cpu_us_per_rt', 'upstream CPU', 'µs/round trip', 2),
  F('loadgen_cpu_pct', 'load-gen CPU', '% of a core', 0),
  F('other_cpu_pct', 'other load', '% of a core', 0),
];

const IDLE_FIGURES = [
  F('proxy_kb_per_conn', 'proxy RSS', 'KiB/connection', 2, { proxy: true, headline: true }),
  F('held', 'held', 'connections', 0, { better: 'higher' }),
  F('errors', 'errors', 'count', 0),
  F('proxy_baseline_mb', 'proxy baseline RSS', 'MiB', 1, { proxy: true }),
  F('open_rate_per_s', 'opened', 'connections/s', 0, { better: 'higher' }),
];

const SSE_FIGURES = [
  F('proxy_cpu_us_per_event', 'proxy CPU', 'µs/event', 2, { proxy: true, headline: true }),
  F('proxy_cpu_pct', 'proxy CPU', '% of a core', 1, { proxy: true }),
  F('rate_per_s', 'events', '/s', 0, { better: 'higher' }),
  F('delivered_pct', 'delivered', '%', 2, { better: 'higher' }),
  F('p50_ms', 'p50 delay', 'ms', 2),
  F('p99_ms', 'p99 delay', 'ms', 2),
  F('loadgen_cpu_pct', 'load-gen CPU', '% of a core', 0),
  F('other_cpu_pct', 'other load', '% of a core', 0),
];

const HANDSHAKE_FIGURES = [
  F('proxy_cpu_us_per_conn', 'proxy CPU', 'µs/connection', 1, { proxy: true, headline: true }),
  F('rate_per_s', 'connections', '/s', 0, { better: 'higher' }),
  F('p99_ms', 'p99 cycle', 'ms', 2),
  F('errors', 'errors', 'count', 0),
  F('loadgen_cpu_pct', 'load-gen CPU', '% of a core', 0),
  F('other_cpu_pct', 'other load', '% of a core', 0),
];

export const PROFILES = {
  full: {
    rounds: 3,
    retries: 2,
    budgetSec: 540,
    echo: { conns: 50, inflight: 10, sizes: [64, 1024], warmupMs: 1500, windowMs: 3000 },
    idle: { conns: 10_000, openConcurrency: 200, settleMinMs: 1500, settleMaxMs: 5000 },
    sse: { streams: 500, intervalMs: 20, warmupMs: 1500, windowMs: 3000 },
    // Tokens for the auth targets, signed by the load generator before the
    // warm-up (about 45 µs each on a quiet machine): one per client loop when
    // they are reused, and enough for warm-up + window at 3,750 connections/s
    // (more than twice the fastest Portcullis rate seen) when each connection
    // needs its own. Running out is reported as a failed measurement.
    handshake: { concurrency: 50, warmupMs: 1000, windowMs: 3000, reusedTokens: 50, distinctTokens: 15_000 },
  },
  quick: {
    rounds: 1,
    retries: 0,
    // A safety net, not a target: a quiet quick run measures for about 35 s.
    budgetSec: 120,
    echo: { conns: 50, inflight: 10, sizes: [64, 1024], warmupMs: 400, windowMs: 1000 },
    idle: { conns: 1000, openConcurrency: 200, settleMinMs: 400, settleMaxMs: 1500 },
    sse: { streams: 200, intervalMs: 20, warmupMs: 400, windowMs: 1000 },
    handshake: { concurrency: 50, warmupMs: 400, windowMs: 1000, reusedTokens: 50, distinctTokens: 6_000 },
  },
};

const sizeName = (n) => (n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`);

/**
 * The measured cases of a profile. `nofile` clamps the idle connection count:
 * a proxy needs two descriptors per tunnelled connection.
 */
export function makeCases(profile, { nofile }) {
  const cases = [];
  for (const size of profile.echo.sizes) {
    cases.push({
      id: `ws-echo-${size}`,
      workload: 'ws-echo',
      title: `ws-echo, ${sizeName(size)} messages`,
      params: { conns: profile.echo.conns, inflight: profile.echo.inflight, size, warmupMs: profile.echo.warmupMs, windowMs: profile.echo.windowMs },
      describe: `C=${profile.echo.conns} connections, K=${profile.echo.inflight} in flight each, ${sizeName(size)} JSON text messages echoed by the upstream`,
      figures: ECHO_FIGURES,
      measure: measureEcho,
      expectedSec: (profile.echo.warmupMs + profile.echo.windowMs) / 1000 + 1,
    });
  }
  // A proxy holds two descriptors per tunnelled connection, and NGINX starts
  // closing connections that wait for a request once more than 15/16 of its
  // worker_connections are in use (ngx_drain_connections), so stay below that.
  const maxIdle = Math.floor(((nofile - 256) * 15) / 16 / 2 / 100) * 100;
  const idleConns = Math.min(profile.idle.conns, maxIdle);
  cases.push({
    id: 'ws-idle',
    workload: 'ws-idle',
    title: 'ws-idle',
    params: { ...profile.idle, conns: idleConns, requestedConns: profile.idle.conns },
    clamped:
      idleConns < profile.idle.conns
        ? `N clamped from ${profile.idle.conns} to ${idleConns}: the open-file limit is ${nofile} and could not be raised (no CAP_SYS_RESOURCE), a proxy needs two descriptors per connection and NGINX recycles connections above 15/16 of worker_connections`
        : null,
    describe: `N=${idleConns} idle WebSocket connections from ${CLIENT_ADDRESSES.length} source addresses; proxy RSS (VmRSS of its process tree) after opening minus before, per connection; each target restarted fresh before every measurement`,
    figures: IDLE_FIGURES,
    fresh: true,
    measure: measureIdle,
    expectedSec: idleConns / 2500 + (profile.idle.settleMinMs + 1000) / 1000 + 2,
  });
  cases.push({
    id: 'sse-stream',
    workload: 'sse-stream',
    title: 'sse-stream',
    params: { ...profile.sse },
    describe: `C=${profile.sse.streams} SSE streams, one event every ${profile.sse.intervalMs} ms on each (${(profile.sse.streams * 1000) / profile.sse.intervalMs} events/s offered); delay = client receipt - upstream send stamp (CLOCK_MONOTONIC)`,
    figures: SSE_FIGURES,
    measure: measureSse,
    expectedSec: (profile.sse.warmupMs + profile.sse.windowMs) / 1000 + 1.5,
  });
  cases.push({
    id: 'handshake-rate',
    workload: 'handshake-rate',
    title: 'handshake-rate',
    params: { ...profile.handshake },
    describe: `${profile.handshake.concurrency} concurrent loops of: open a WebSocket, send one message, receive the echo, close (1000). Auth targets send \`Authorization: Bearer <ES256 JWT>\`: \`portcullis-auth\` with ${profile.handshake.reusedTokens} tokens, one per loop, reused on every reconnect (verified-token cache hits); \`portcullis-auth-distinct\` with a token never presented before on every connection (from ${profile.handshake.distinctTokens.toLocaleString('en-US')} signed by the load generator before the warm-up, outside the window)`,
    figures: HANDSHAKE_FIGURES,
    measure: measureHandshake,
    // + about 1 s for the load generator to sign the distinct tokens
    expectedSec: (profile.handshake.warmupMs + profile.handshake.windowMs) / 1000 + 1.5,
  });
  return cases;
}

// ---- running the load generator --------------------------------------------

/**
 * Runs one load generator process to completion. `handlers[type](msg, child)`
 * is called for each IPC message; resolves with the result, rejects on error,
 * early exit or timeout (the child is then stopped by its pid).
 */
async function runLoadgen(ctx, params, handlers, timeoutMs) {
  const child = spawnManaged('loadgen', process.execPath, [LOADGEN, JSON.stringify(params)], { ipc: true, cpus: ctx.clientCpus });
  let timer;
  try {
    return await new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`load generator did not finish within ${timeoutMs} ms`)), timeoutMs);
      child.child.on('message', (msg) => {
        if (msg?.type === 'result') resolve(msg.result);
        else if (msg?.type === 'error') reject(new Error(`load generator: ${String(msg.message).split('\n')[0]}`));
        else {
          try {
            handlers[msg?.type]?.(msg, child.child);
          } catch (err) {
            reject(err);
          }
        }
      });
      child.exitPromise.then(() => reject(new Error(`load generator exited early (code ${child.exitCode}): ${lastLines(child.tail, 3)}`)));
    });
  } finally {
    clearTimeout(timer);
    await stopManaged(child, { graceMs: 1000 });
  }
}

/** Samples the target, the upstream and the machine at both ends of the window. */
function windowSampler(ctx, target) {
  const s = { start: null, end: null };
  const take = (loadgenPid) => ({
    proxy: sampleTree(target.pid),
    upstream: sampleTree(ctx.upstreamPid),
    loadgen: sampleTree(loadgenPid),
    machine: sampleMachine(),
  });
  return {
    s,
    mark(msg, child) {
      if (msg.phase === 'start') s.start = take(child.pid);
      else s.end = take(child.pid);
    },
    deltas() {
      if (!s.start || !s.end) throw new Error('measurement window was not marked');
      if (target.pid !== null && !s.end.proxy.alive) throw new Error(`target died during the window: ${target.describeFailure()}`);
      const seconds = (s.end.proxy.at - s.start.proxy.at) / 1000;
      const busySec = (s.end.machine.busy - s.start.machine.busy) / CLK_TCK;
      const proxyCpuSec = target.pid === null ? 0 : s.end.proxy.cpuSec - s.start.proxy.cpuSec;
      const upstreamCpuSec = s.end.upstream.cpuSec - s.start.upstream.cpuSec;
      const loadgenCpuSec = s.end.loadgen.cpuSec - s.start.loadgen.cpuSec;
      return {
        seconds,
        proxyCpuSec: target.pid === null ? null : proxyCpuSec,
        // The kernel's part of proxyCpuSec (system time), kept in the JSON only.
        proxySysSec: target.pid === null ? null : s.end.proxy.sysSec - s.start.proxy.sysSec,
        proxyRssKb: target.pid === null ? null : s.end.proxy.rssKb,
        upstreamCpuSec,
        loadgenCpuSec,
        machineBusySec: busySec,
        // CPU used on this machine by anything other than the benchmark's own processes.
        otherCpuPct: Math.max(0, (100 * (busySec - proxyCpuSec - upstreamCpuSec - loadgenCpuSec)) / seconds),
      };
    },
  };
}

const nullIfNoProxy = (target, v) => (target.pid === null ? null : v);

async function measureEcho(c, target, ctx) {
  const w = windowSampler(ctx, target);
  const params = { mode: 'echo', url: target.url('ws'), headers: target.headers, localAddresses: CLIENT_ADDRESSES, ...c.params };
  const r = await runLoadgen(ctx, params, { mark: w.mark }, c.params.warmupMs + c.params.windowMs + 30_000);
  const d = w.deltas();
  if (r.roundTrips === 0) throw new Error(`no round trip completed (errors: ${JSON.stringify(r.errors.top)})`);
  return {
    figures: {
      proxy_cpu_us_per_rt: nullIfNoProxy(target, (d.proxyCpuSec * 1e6) / r.roundTrips),
      rate_per_s: r.ratePerSec,
      p50_ms: r.p50Ms,
      p99_ms: r.p99Ms,
      upstream_cpu_us_per_rt: (d.upstreamCpuSec * 1e6) / r.roundTrips,
      loadgen_cpu_pct: r.loadgenCpuPct,
      other_cpu_pct: d.otherCpuPct,
    },
    raw: { loadgen: r, window: d },
  };
}

async function measureSse(c, target, ctx) {
  const w = windowSampler(ctx, target);
  const params = { mode: 'sse', url: target.url('sse'), headers: target.headers, localAddresses: CLIENT_ADDRESSES, ...c.params };
  const r = await runLoadgen(ctx, params, { mark: w.mark }, c.params.warmupMs + c.params.windowMs + 45_000);
  const d = w.deltas();
  if (r.events === 0) throw new Error('no event arrived in the window');
  return {
    figures: {
      proxy_cpu_us_per_event: nullIfNoProxy(target, (d.proxyCpuSec * 1e6) / r.events),
      proxy_cpu_pct: nullIfNoProxy(target, (100 * d.proxyCpuSec) / d.seconds),
      rate_per_s: r.ratePerSec,
      delivered_pct: r.deliveredPct,
      p50_ms: r.p50Ms,
      p99_ms: r.p99Ms,
      loadgen_cpu_pct: r.loadgenCpuPct,
      other_cpu_pct: d.otherCpuPct,
    },
    raw: { loadgen: r, window: d },
  };
}

async function measureHandshake(c, target, ctx) {
  const w = windowSampler(ctx, target);
  const tokens = target.tokenPlan(c.params);
  const params = {
    mode: 'handshake',
    url: target.url('ws'),
    // With a token plan the load generator sets Authorization per connection.
    headers: tokens ? {} : target.headers,
    tokens,
    localAddresses: CLIENT_ADDRESSES,
    ...c.params,
  };
  const r = await runLoadgen(ctx, params, { mark: w.mark }, c.params.warmupMs + c.params.windowMs + 30_000);
  const d = w.deltas();
  if (r.completed === 0) throw new Error(`no connection completed (errors: ${JSON.stringify(r.errors.top)})`);
  if (r.tokens?.exhaustedInWindow) {
    throw new Error(`the ${r.tokens.generated} pre-signed distinct tokens ran out before the window closed (raise handshake.distinctTokens)`);
  }
  return {
    figures: {
      proxy_cpu_us_per_conn: nullIfNoProxy(target, (d.proxyCpuSec * 1e6) / r.completed),
      rate_per_s: r.ratePerSec,
      p99_ms: r.p99Ms,
      errors: r.failedInWindow,
      loadgen_cpu_pct: r.loadgenCpuPct,
      other_cpu_pct: d.otherCpuPct,
    },
    raw: { loadgen: r, window: d },
  };
}

/** Waits until the tree's RSS stops moving (or maxMs), returns the last sample in KiB. */
async function settledRss(pid, minMs, maxMs) {
  const t0 = Date.now();
  let prev = sampleTree(pid).rssKb;
  await sleep(Math.min(minMs, 250));
  for (;;) {
    await sleep(250);
    const cur = sampleTree(pid).rssKb;
    const stable = Math.abs(cur - prev) <= Math.max(64, prev * 0.002);
    prev = cur;
    if ((stable && Date.now() - t0 >= minMs) || Date.now() - t0 >= maxMs) return cur;
  }
}

async function measureIdle(c, target, ctx) {
  const pid = target.pid;
  const baselineKb = pid === null ? null : await settledRss(pid, 300, 1500);
  let afterKb = null;
  let opened = null;
  let verified = null;
  const params = {
    mode: 'idle',
    url: target.url('ws'),
    headers: target.headers,
    localAddresses: CLIENT_ADDRESSES,
    conns: c.params.conns,
    openConcurrency: c.params.openConcurrency,
  };
  const r = await runLoadgen(
    ctx,
    params,
    {
      opened(msg, child) {
        opened = msg;
        // Measure once the proxy's RSS has settled, then ask for the liveness check.
        (pid === null ? Promise.resolve(null) : settledRss(pid, c.params.settleMinMs, c.params.settleMaxMs)).then((kb) => {
          afterKb = kb;
          if (pid !== null && !target.alive) {
            child.kill('SIGTERM');
            return;
          }
          child.send({ cmd: 'verify' });
        });
      },
      verified(msg, child) {
        verified = msg;
        child.send({ cmd: 'close' });
      },
    },
    240_000,
  );
  if (pid !== null && !target.alive) throw new Error(`target died holding idle connections: ${target.describeFailure()}`);
  const errors = r.requested - r.alive;
  return {
    figures: {
      proxy_kb_per_conn: pid === null || r.opened === 0 ? null : (afterKb - baselineKb) / r.opened,
      held: r.alive,
      errors,
      proxy_baseline_mb: pid === null ? null : baselineKb / 1024,
      open_rate_per_s: r.opened / (r.openMs / 1000),
    },
    raw: { loadgen: r, opened, verified, baselineKb, afterKb },
  };
}
