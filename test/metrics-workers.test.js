// /metrics of a clustered instance (`gateway.workers: 2`, a real `portcullis start`):
// a scrape reaches one worker, which collects every worker's metrics through the
// primary and answers the instance's total: connections and handshake counters sum
// to what the clients did, process metrics come once per worker (`pid` label), and
// `portcullis_workers_scraped` / `portcullis_workers_missing` say what the answer
// covers; on the admin listener and on `metrics.listen`, with or without an admin
// API. A worker that does not answer (stopped with SIGSTOP) is left out after the
// short timeout, and the answer says so. Without workers nothing changes; the merge
// itself (aggregateWorkers) on answers that failed or carry NaN.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { closed, eventually, openWs, startGateway, wsUpstream } from './helpers.js';
import { freePort } from './redis-helpers.js';
import { adminCall, chatConfig, startCli } from './admin-helpers.js';
import { aggregateWorkers } from '../dist/observability/metrics.js';

const ADMIN_KEY = 'adm-metrics-0123456789abcdef';
const ALICE = 'alice-metrics-workers-0123456789';
const BOB = 'bob-metrics-workers-0123456789';

let up;
before(async () => {
  up = await wsUpstream();
});
after(async () => {
  await up.close();
});

/** Parse the Prometheus text format: { samples: [{ name, labels, value }], comments: [line] }. */
function parse(text) {
  const samples = [];
  const comments = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      if (!line.startsWith('# HELP ') && !line.startsWith('# TYPE ')) comments.push(line);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels = {};
    if (m[2]) for (const [, k, v] of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { samples, comments };
}

/** The value of the sample with exactly these labels (undefined when absent). */
function sample(samples, name, labels = {}) {
  const want = JSON.stringify(Object.entries(labels).sort());
  return samples.find((x) => x.name === name && JSON.stringify(Object.entries(x.labels).sort()) === want)?.value;
}

/** GET /metrics with a deadline: resolves { status, body }, or undefined when no answer came in time. */
function scrapeOnce(port, { key, timeoutMs = 6000 } = {}) {
  return new Promise((resolve, reject) => {
    const headers = key ? { 'x-api-key': key } : {};
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() });
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve(undefined);
    }, timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      if (req.destroyed && err.code === 'ECONNRESET') return;
      reject(err);
    });
  });
}

async function scrape(port, key) {
  const r = await scrapeOnce(port, { key });
  assert.ok(r, 'the scrape is answered');
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  return { body: r.body, ...parse(r.body) };
}

/** `portcullis start` with workers: 2; resolves once both workers listen. */
function startCluster(t, { port, admin, metrics }) {
  const yaml = chatConfig({ port, upstreamPort: up.port, alice: ALICE, bob: BOB, workers: 2, admin, adminKey: ADMIN_KEY, metrics });
  return startCli(yaml, { workers: 2, t });
}

async function stop(out) {
  out.child.kill('SIGTERM');
  const [code] = await once(out.child, 'exit');
  assert.equal(code, 0, out.stderr);
}

/** Open n WebSockets one after the other (the primary hands them to the workers in turn). */
async function openMany(port, n, key) {
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const r = await openWs(`ws://127.0.0.1:${port}/chat`, { headers: { apikey: key(i) } });
    assert.ok(r.ws, `connection ${i} opened (${r.status})`);
    sockets.push(r.ws);
  }
  return sockets;
}

test('workers: 2 — every scrape, on the admin listener and on metrics.listen, sums both workers; process metrics per worker pid', async (t) => {
  const port = await freePort();
  const admin = await freePort();
  const metrics = await freePort();
  const inst = await startCluster(t, { port, admin, metrics });
  const acall = (m, p) => adminCall(admin, m, p, { key: ADMIN_KEY });
  // Both workers take relayed calls once the status counts two.
  assert.ok(await eventually(async () => (await acall('GET', '/admin/status')).json?.workers === 2, { tries: 100, every: 50 }));

  const sockets = await openMany(port, 8, (i) => (i % 2 ? BOB : ALICE));
  const refused = [];
  for (let i = 0; i < 3; i++) refused.push((await openWs(`ws://127.0.0.1:${port}/chat`, { headers: { apikey: 'wrong-key-0123456789' } })).status);
  assert.deepEqual(refused, [401, 401, 401]);

  const list = await acall('GET', '/admin/connections');
  assert.equal(list.json.total, 8);
  const perWorker = new Map();
  for (const c of list.json.connections) perWorker.set(c.worker, (perWorker.get(c.worker) ?? 0) + 1);
  assert.equal(perWorker.size, 2, 'both workers hold connections');
  const pids = [...perWorker.keys()].map(String).sort();

  // Several scrapes on each listener: whichever worker answers, the numbers are the instance's.
  for (let i = 0; i < 3; i++) {
    for (const [where, p, key] of [['admin', admin, ADMIN_KEY], ['metrics.listen', metrics, undefined]]) {
      const { body, samples, comments } = await scrape(p, key);
      const msg = `${where}, scrape ${i}`;
      assert.equal(sample(samples, 'portcullis_connections_active', { route: 'chat', protocol: 'websocket' }), 8, msg);
      assert.equal(sample(samples, 'portcullis_connections_opened_total', { route: 'chat', protocol: 'websocket' }), 8, msg);
      assert.equal(sample(samples, 'portcullis_handshakes_total', { route: 'chat', protocol: 'websocket', outcome: 'accepted', reason: 'none' }), 8, msg);
      assert.equal(sample(samples, 'portcullis_handshakes_total', { route: 'chat', protocol: 'websocket', outcome: 'rejected', reason: 'auth' }), 3, msg);
      assert.equal(sample(samples, 'portcullis_upstream_handshake_seconds_count', { route: 'chat' }), 8, msg);
      assert.equal(sample(samples, 'portcullis_upstream_handshake_seconds_bucket', { route: 'chat', le: '+Inf' }), 8, msg);
      assert.equal(sample(samples, 'portcullis_build_info', { version: samples.find((s) => s.name === 'portcullis_build_info').labels.version }), 1, msg);
      assert.equal(sample(samples, 'portcullis_workers_scraped'), 2, msg);
      assert.equal(sample(samples, 'portcullis_workers_missing'), 0, msg);
      assert.deepEqual(comments, [], msg);
      // Process metrics: one series per worker, told apart by pid, none summed.
      const started = samples.filter((s) => s.name === 'process_start_time_seconds');
      assert.deepEqual(started.map((s) => s.labels.pid).sort(), pids, msg);
      const rss = samples.filter((s) => s.name === 'process_resident_memory_bytes');
      assert.deepEqual(rss.map((s) => s.labels.pid).sort(), pids, msg);
      assert.ok(rss.every((s) => s.value > 0), msg);
      // Each metric family once (Prometheus refuses a family repeated).
      const typeLines = body.split('\n').filter((l) => l.startsWith('# TYPE '));
      assert.equal(new Set(typeLines).size, typeLines.length, msg);
    }
  }

  // Close three: the sums follow whichever workers held them.
  const gone = sockets.splice(0, 3);
  for (const s of gone) s.close();
  await Promise.all(gone.map((s) => closed(s)));
  const after = await eventually(async () => {
    const { samples } = await scrape(metrics);
    return sample(samples, 'portcullis_connections_active', { route: 'chat', protocol: 'websocket' }) === 5 ? samples : undefined;
  });
  assert.ok(after, 'active connections drop to 5');
  const closedTotal = after
    .filter((s) => s.name === 'portcullis_connections_closed_total' && s.labels.route === 'chat')
    .reduce((n, s) => n + s.value, 0);
  assert.equal(closedTotal, 3);

  for (const s of sockets) s.close();
  await Promise.all(sockets.map((s) => closed(s)));
  await stop(inst);
});

test('workers: 2 — a worker that does not answer is left out after the timeout and the answer says so', async (t) => {
  const port = await freePort();
  const admin = await freePort();
  const metrics = await freePort();
  const inst = await startCluster(t, { port, admin, metrics });
  const acall = (m, p) => adminCall(admin, m, p, { key: ADMIN_KEY });
  assert.ok(await eventually(async () => (await acall('GET', '/admin/status')).json?.workers === 2, { tries: 100, every: 50 }));

  const sockets = await openMany(port, 6, () => ALICE);
  const list = await acall('GET', '/admin/connections');
  const perWorker = new Map();
  for (const c of list.json.connections) perWorker.set(c.worker, (perWorker.get(c.worker) ?? 0) + 1);
  assert.equal(perWorker.size, 2, 'both workers hold connections');
  const [stopped, running] = [...perWorker.keys()];

  process.kill(stopped, 'SIGSTOP');
  t.after(() => {
    try {
      process.kill(stopped, 'SIGCONT');
    } catch {
      // already gone
    }
  });
  // The primary may hand a scrape to the stopped worker (once: it is then busy for good); try again.
  let answer;
  for (let i = 0; i < 3 && !answer; i++) answer = await scrapeOnce(metrics, { timeoutMs: 3500 });
  assert.ok(answer, 'a scrape is answered while a worker is stopped');
  assert.equal(answer.status, 200, answer.body);
  const { samples, comments } = parse(answer.body);
  assert.equal(sample(samples, 'portcullis_workers_scraped'), 1);
  assert.equal(sample(samples, 'portcullis_workers_missing'), 1);
  assert.equal(comments.length, 1);
  assert.match(comments[0], /^# portcullis: 1 of 2 workers missing from this answer/);
  // The running worker's share only.
  assert.equal(sample(samples, 'portcullis_connections_active', { route: 'chat', protocol: 'websocket' }), perWorker.get(running));
  assert.deepEqual(
    samples.filter((s) => s.name === 'process_start_time_seconds').map((s) => s.labels.pid),
    [String(running)],
  );

  process.kill(stopped, 'SIGCONT');
  const whole = await eventually(async () => {
    const r = await scrapeOnce(metrics, { timeoutMs: 5000 });
    if (!r || r.status !== 200) return undefined;
    const p = parse(r.body);
    return sample(p.samples, 'portcullis_workers_scraped') === 2 ? p : undefined;
  });
  assert.ok(whole, 'both workers answer again once the stopped one runs');
  assert.equal(sample(whole.samples, 'portcullis_connections_active', { route: 'chat', protocol: 'websocket' }), 6);
  assert.deepEqual(whole.comments, []);

  for (const s of sockets) s.close();
  await Promise.all(sockets.map((s) => closed(s)));
  await stop(inst);
});

test('workers: 2 without an admin API — metrics.listen still answers the whole instance', async (t) => {
  const port = await freePort();
  const metrics = await freePort();
  const inst = await startCluster(t, { port, metrics });
  const sockets = await openMany(port, 6, (i) => (i % 2 ? BOB : ALICE));
  // Both workers are ready for relayed calls once a scrape covers two.
  const got = await eventually(
    async () => {
      const { samples } = await scrape(metrics);
      return sample(samples, 'portcullis_workers_scraped') === 2 ? samples : undefined;
    },
    { tries: 100, every: 50 },
  );
  assert.ok(got, 'a scrape covers both workers');
  assert.equal(sample(got, 'portcullis_connections_active', { route: 'chat', protocol: 'websocket' }), 6);
  assert.equal(sample(got, 'portcullis_handshakes_total', { route: 'chat', protocol: 'websocket', outcome: 'accepted', reason: 'none' }), 6);
  assert.equal(new Set(got.filter((s) => s.name === 'process_start_time_seconds').map((s) => s.labels.pid)).size, 2);

  for (const s of sockets) s.close();
  await Promise.all(sockets.map((s) => closed(s)));
  await stop(inst);
});

test('without workers: no relay, no worker gauges, process metrics without pid', async () => {
  const gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
upstreams:
  - id: up
    nodes: { "127.0.0.1:${up.port}": 1 }
routes:
  - id: chat
    uri: /chat
    enable_websocket: true
    upstream_id: up
`);
  try {
    const { body } = await gw.gw.metrics.render();
    const { samples, comments } = parse(body);
    assert.equal(samples.some((s) => s.name.startsWith('portcullis_workers_')), false);
    assert.deepEqual(comments, []);
    const start = samples.filter((s) => s.name === 'process_start_time_seconds');
    assert.equal(start.length, 1);
    assert.deepEqual(start[0].labels, {});
  } finally {
    await gw.close();
  }
});

test('aggregateWorkers: sums the gateway series, keeps process series per pid, leaves out failed answers, keeps NaN', async () => {
  const gauge = (name, values, aggregator = 'sum') => ({ name, help: name, type: 'gauge', aggregator, values });
  const counter = (name, values) => ({ name, help: name, type: 'counter', aggregator: 'sum', values });
  const snap = (pid, active, opened) => ({
    pid,
    gateway: [
      gauge('portcullis_build_info', [{ value: 1, labels: { version: '1.2.3' } }], 'first'),
      gauge('portcullis_connections_active', [{ value: active, labels: { route: 'r', protocol: 'websocket' } }]),
      counter('portcullis_connections_opened_total', [{ value: opened, labels: { route: 'r', protocol: 'websocket' } }]),
    ],
    process: [
      gauge('process_start_time_seconds', [{ value: 1000 + pid, labels: {} }], 'omit'),
      // NaN arrives as null over the IPC channel.
      gauge('nodejs_eventloop_lag_seconds', [{ value: pid === 11 ? null : 0.5, labels: {} }], 'average'),
    ],
  });
  const r = await aggregateWorkers(
    {
      answers: [
        { pid: 11, value: snap(11, 2, 5) },
        { pid: 12, value: snap(12, 3, 7) },
        { pid: 13, error: 'metrics are disabled' },
      ],
      missing: 1,
    },
    4,
  );
  assert.equal(r.scraped, 2);
  assert.equal(r.failed, 1);
  assert.equal(r.missing, 2);
  const { samples, comments } = parse(r.text);
  assert.deepEqual(comments, [
    '# portcullis: 2 of 4 workers missing from this answer (no answer within 2000 ms, failed, or not running); their counts are not included',
  ]);
  assert.equal(sample(samples, 'portcullis_build_info', { version: '1.2.3' }), 1);
  assert.equal(sample(samples, 'portcullis_connections_active', { route: 'r', protocol: 'websocket' }), 5);
  assert.equal(sample(samples, 'portcullis_connections_opened_total', { route: 'r', protocol: 'websocket' }), 12);
  assert.equal(sample(samples, 'portcullis_workers_scraped'), 2);
  assert.equal(sample(samples, 'portcullis_workers_missing'), 2);
  assert.equal(sample(samples, 'process_start_time_seconds', { pid: '11' }), 1011);
  assert.equal(sample(samples, 'process_start_time_seconds', { pid: '12' }), 1012);
  assert.ok(Number.isNaN(sample(samples, 'nodejs_eventloop_lag_seconds', { pid: '11' })));
  assert.equal(sample(samples, 'nodejs_eventloop_lag_seconds', { pid: '12' }), 0.5);
  // Each family's TYPE line once.
  const typeLines = r.text.split('\n').filter((l) => l.startsWith('# TYPE '));
  assert.equal(new Set(typeLines).size, typeLines.length);
});
