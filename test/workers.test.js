/**
 * `gateway.workers`: `portcullis start` forks workers that share the listening
 * port; `policy: local` limits stay exact for the instance (the primary holds the
 * counts); SIGTERM to the primary stops every worker and exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { closed, config, eventually, openWs, wsUpstream } from './helpers.js';
import { startCli } from './admin-helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

async function openMany(url, n) {
  return Promise.all(Array.from({ length: n }, () => openWs(url).catch((err) => ({ error: err }))));
}
const opened = (rs) => rs.filter((r) => r.ws).map((r) => r.ws);
async function closeAll(sockets) {
  await Promise.all(
    sockets.map(async (ws) => {
      if (ws.readyState === ws.OPEN) ws.close();
      await closed(ws);
    }),
  );
}

test('workers: 2 share the port; local limit-conn is exact across them; a dead worker is replaced and its slots released; SIGTERM exits 0', async (t) => {
  const upstream = await wsUpstream();
  t.after(() => upstream.close());
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-workers-'));
  const file = join(dir, 'config.yaml');
  const yaml = config(
    upstream.port,
    `  - id: w
    uri: /w/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-conn: { conn: 5, burst: 0, default_conn_delay: 0.1, policy: local }
`,
    '  workers: 2\n  max_pending_handshakes_per_ip: 0',
  ).replace('log: { level: debug }', 'log: { level: info, access_log: true }');
  writeFileSync(file, yaml);

  const child = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.exitCode === null && child.kill('SIGKILL'));
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', (d) => (stdout += d));
  // Both workers listen (each prints its address).
  const ok = await eventually(() => (stderr.match(/listening on http:\/\/127\.0\.0\.1:\d+/g) ?? []).length >= 2, { tries: 300 });
  assert.ok(ok, `two workers listening: ${stderr}`);
  const ports = [...stderr.matchAll(/listening on http:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => m[1]);
  assert.equal(new Set(ports).size, 1, 'one port shared by the workers');
  const url = `ws://127.0.0.1:${ports[0]}/w/echo`;

  // Exactly 5 of 20 concurrent handshakes from one key.
  const first = await openMany(url, 20);
  const open = opened(first);
  assert.equal(open.length, 5, JSON.stringify(first.filter((r) => !r.ws).map((r) => r.status ?? String(r.error))));
  for (const r of first.filter((x) => !x.ws)) assert.equal(r.status, 503);
  await closeAll(open);

  // The slots come back: 5 more open (released through the primary).
  const again = await eventually(async () => {
    const rs = await openMany(url, 20);
    const o = opened(rs);
    if (o.length === 5) return o;
    await closeAll(o);
    return undefined;
  }, { tries: 50, every: 50 });
  assert.ok(again, '5 more open once the first 5 closed');
  await closeAll(again);

  // Both workers served: access-log lines carry two distinct pids.
  const pids = await eventually(() => {
    const s = new Set();
    for (const line of stdout.split('\n')) {
      if (!line.includes('"type":"access"')) continue;
      try {
        s.add(JSON.parse(line).pid);
      } catch {}
    }
    return s.size >= 2 ? s : undefined;
  }, { tries: 100, every: 20 });
  assert.ok(pids, 'two workers served requests');
  assert.ok(!pids.has(child.pid), 'the primary serves nothing');

  // A worker killed while its connections hold slots: the primary releases them and forks another.
  // (The slots of the connections just closed come back once each tunnel has finished and the
  // release reached the primary, a moment after the client saw its close: ask until all 5 open.)
  const held = await eventually(async () => {
    const o = opened(await openMany(url, 5));
    if (o.length === 5) return o;
    await closeAll(o);
    return undefined;
  }, { tries: 50, every: 50 });
  assert.ok(held, '5 connections held when the worker is killed');
  process.kill([...pids][0], 'SIGKILL');
  assert.ok(await eventually(() => /died \(signal SIGKILL\), starting another/.test(stderr), { tries: 200 }), stderr);
  assert.ok(await eventually(() => (stderr.match(/listening on/g) ?? []).length >= 3, { tries: 300 }), `replacement listening: ${stderr}`);
  await closeAll(held);
  const after = await eventually(async () => {
    const rs = await openMany(url, 20);
    const o = opened(rs);
    if (o.length === 5) return o;
    await closeAll(o);
    return undefined;
  }, { tries: 50, every: 50 });
  assert.ok(after, 'the dead worker\'s slots were released');
  await closeAll(after);

  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, stderr);
});

test('workers: local limits stay exact after a reload and a worker replaced after it (the primary\'s counts are named by scope, not by creation order)', async (t) => {
  const upstream = await wsUpstream();
  t.after(() => upstream.close());
  const yaml = (conn) =>
    config(
      upstream.port,
      `  - id: w
    uri: /w/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-conn: { conn: ${conn}, burst: 0, default_conn_delay: 0.1, policy: local }
`,
      '  workers: 2\n  max_pending_handshakes_per_ip: 0',
    ).replace('log: { level: debug }', 'log: { level: info, access_log: true }');
  const cli = await startCli(yaml(2), { workers: 2, t });
  const { child, file } = cli;
  const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(cli.stderr)[1];
  const url = `ws://127.0.0.1:${port}/w/echo`;
  const exactly = async (n, what) => {
    for (let i = 0; i < 3; i++) {
      const o = opened(await openMany(url, 20));
      assert.equal(o.length, n, `${what}, attempt ${i + 1}`);
      await closeAll(o);
    }
  };
  await exactly(2, 'conn: 2');

  // The changed limit-conn gets a new plugin instance in each worker (the unchanged
  // plugins are carried over), so creation order now differs from a fresh worker's.
  writeFileSync(file, yaml(3));
  child.kill('SIGHUP');
  assert.ok(await eventually(() => (cli.stdout.match(/"msg":"config reloaded"/g) ?? []).length >= 2, { tries: 300 }), cli.stdout);
  await exactly(3, 'conn: 3 after the reload');

  const pids = new Set();
  for (const line of cli.stdout.split('\n')) {
    try {
      const pid = JSON.parse(line).pid;
      if (pid && pid !== child.pid) pids.add(pid);
    } catch {}
  }
  process.kill([...pids][0], 'SIGKILL');
  assert.ok(await eventually(() => (cli.stderr.match(/listening on/g) ?? []).length >= 3, { tries: 300 }), cli.stderr);
  await exactly(3, 'conn: 3 with a worker forked after the reload');

  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, cli.stderr);
});

test('workers: 2 — limit-count, limit-req and per-key limit-messages (policy local) are exact for the instance, not per worker', async (t) => {
  const upstream = await wsUpstream();
  t.after(() => upstream.close());
  const yaml = config(
    upstream.port,
    `  - id: counted
    uri: /counted/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-count: { count: 5, time_window: 60, key: remote_addr, policy: local }
  - id: paced
    uri: /paced/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-req: { rate: 0.1, burst: 2, nodelay: true, key: remote_addr, policy: local }
  - id: talk
    uri: /talk/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-messages: { rate: 0.1, burst: 5, scope: key, key: remote_addr, policy: local }
`,
    '  workers: 2\n  max_pending_handshakes_per_ip: 0',
  ).replace('log: { level: debug }', 'log: { level: info, access_log: true }');
  const cli = await startCli(yaml, { workers: 2, t });
  const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(cli.stderr)[1];

  // One handshake at a time, each on a new connection: the cluster hands them to the workers in turn.
  const oneByOne = async (path, n) => {
    const statuses = [];
    for (let i = 0; i < n; i++) {
      const r = await openWs(`ws://127.0.0.1:${port}${path}`);
      statuses.push(r.ws ? 101 : r.status);
      if (r.ws) {
        r.ws.close();
        await closed(r.ws);
      }
    }
    return statuses;
  };
  const counted = await oneByOne('/counted/x', 12);
  assert.deepEqual(counted.slice(0, 5), [101, 101, 101, 101, 101]);
  assert.deepEqual(counted.slice(5), Array(7).fill(503), `limit-count: 5 for the instance, then 503: ${counted}`);
  // Leaky bucket at 0.1/s with burst 2 and nodelay: 3 at once (one more only after 10 s).
  const paced = await oneByOne('/paced/x', 8);
  assert.deepEqual(paced, [101, 101, 101, 503, 503, 503, 503, 503], `limit-req: ${paced}`);

  // Both workers answered those handshakes (access-log lines of two pids).
  const pids = await eventually(() => {
    const s = new Set();
    for (const line of cli.stdout.split('\n')) {
      if (!line.includes('"type":"access"') || !line.includes('"route":"counted"')) continue;
      try {
        s.add(JSON.parse(line).pid);
      } catch {}
    }
    return s.size >= 2 ? s : undefined;
  });
  assert.ok(pids, 'both workers served /counted');

  // limit-messages per key: 5 tokens (rate 0.1 + burst 5 = 5.1, the next whole one 9 s away) for all of the key's connections, on
  // whichever worker they are. Four connections (opened in turn: both workers hold some) send
  // until each is closed; all of them together pass exactly 5 messages.
  const sockets = [];
  for (let i = 0; i < 4; i++) {
    const r = await openWs(`ws://127.0.0.1:${port}/talk/${i}`);
    assert.ok(r.ws, `talk connection ${i}`);
    sockets.push(r.ws);
  }
  let passed = 0;
  for (const ws of sockets) {
    const c = closed(ws);
    for (let i = 0; i < 10; i++) {
      ws.send(`m${i}`);
      const got = await Promise.race([new Promise((r) => ws.once('message', () => r(true))), c.then(() => false)]);
      if (!got) break;
      passed++;
    }
    assert.equal((await c).code, 1008);
  }
  assert.equal(passed, 5, 'the key passed its 5 tokens once for the instance');
});

test('workers: auto starts one worker per CPU (os.availableParallelism()); SIGTERM exits 0', async (t) => {
  const upstream = await wsUpstream();
  t.after(() => upstream.close());
  const n = availableParallelism();
  const yaml = config(
    upstream.port,
    `  - id: w
    uri: /w/*
    enable_websocket: true
    upstream_id: up
`,
    '  workers: auto',
  );
  const cli = await startCli(yaml, { workers: n, t });
  // It serves; and no worker beyond the CPU count announced itself meanwhile.
  const r = await openWs(`ws://127.0.0.1:${/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(cli.stderr)[1]}/w/echo`);
  assert.ok(r.ws);
  r.ws.close();
  await closed(r.ws);
  assert.equal((cli.stderr.match(/listening on/g) ?? []).length, n, cli.stderr);
  cli.child.kill('SIGTERM');
  const [code] = await once(cli.child, 'exit');
  assert.equal(code, 0, cli.stderr);
});
