// The benchmark harness must not rot: run `bench/run.js --quick` end to end
// and check that it reports a figure (or a skip with its reason) for every
// workload and every target. No timing is asserted here: the figures are
// judged in docs/BENCHMARKS.md, never in a unit test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGETS as TARGET_DEFS } from '../bench/lib/targets.js';
import { WORKLOADS } from '../bench/lib/workloads.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TARGETS = TARGET_DEFS.map((t) => t.name);
const TIMEOUT_MS = 9 * 60_000; // a fresh machine may first install nginx-light and haproxy

function runQuick(jsonPath) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bench', 'run.js'), '--quick', `--json=${jsonPath}`], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr = (stderr + c).slice(-20_000)));
    const timer = setTimeout(() => {
      // SIGINT lets the harness stop every process it started, by pid.
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    }, TIMEOUT_MS - 30_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

test('bench --quick completes and reports every workload × target, figure by figure', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-test-'));
  try {
    const jsonPath = path.join(dir, 'bench.json');
    const run = await runQuick(jsonPath);
    assert.equal(run.code, 0, `bench/run.js --quick exited with ${run.code ?? run.signal}:\n${run.stderr.slice(-4000)}`);
    assert.ok(existsSync(jsonPath), 'the JSON report was written where --json said');

    const doc = JSON.parse(readFileSync(jsonPath, 'utf8'));
    assert.equal(doc.profile, 'quick');
    for (const name of ['direct', 'nginx', 'haproxy', 'portcullis-tunnel']) assert.ok(TARGETS.includes(name), `target ${name} is defined`);
    assert.deepEqual(doc.targets.map((x) => x.name), TARGETS, 'every target is listed, skipped ones included');
    for (const x of doc.targets) {
      if (x.status !== 'skipped') continue;
      assert.ok(typeof x.reason === 'string' && x.reason.length > 0, `${x.name} is skipped with a reason`);
      t.diagnostic(`skipped target ${x.name}: ${x.reason}`);
    }

    assert.deepEqual([...new Set(doc.cases.map((c) => c.workload))].sort(), [...WORKLOADS].sort(), 'every workload ran');
    const echoSizes = doc.cases.filter((c) => c.workload === 'ws-echo').map((c) => c.params.size);
    assert.deepEqual(echoSizes, [64, 1024], 'ws-echo runs with 64 B and 1 KiB messages');

    for (const c of doc.cases) {
      assert.ok(c.figures.length > 0, `${c.id} declares its figures`);
      for (const name of TARGETS) {
        const cell = c.results[name];
        assert.ok(cell, `${c.id} has a cell for ${name}`);
        if (cell.status === 'skipped') {
          assert.ok(typeof cell.reason === 'string' && cell.reason.length > 0, `${c.id} / ${name}: a skip carries its reason`);
          continue;
        }
        assert.equal(cell.status, 'ok', `${c.id} / ${name}: status is ok or skipped`);
        for (const f of c.figures) {
          assert.ok(f.key in cell.median, `${c.id} / ${name}: figure ${f.key} is present`);
          const v = cell.median[f.key];
          if (v === null) {
            assert.ok(cell.notes?.[f.key], `${c.id} / ${name}: ${f.key} is null only with a note (${JSON.stringify(cell.notes)})`);
          } else {
            assert.ok(Number.isFinite(v), `${c.id} / ${name}: ${f.key} is a number`);
          }
          assert.ok(f.key in cell.ratios, `${c.id} / ${name}: ${f.key} has its ratios to direct and nginx`);
        }
      }
    }

    // `direct` needs nothing but the harness itself, so it is always measured.
    for (const c of doc.cases) assert.equal(c.results.direct.status, 'ok', `${c.id} / direct was measured: ${c.results.direct.reason ?? ''}`);

    // Measured targets really produced proxy figures (direct has none by definition).
    for (const c of doc.cases) {
      for (const [name, cell] of Object.entries(c.results)) {
        if (name === 'direct' || cell.status !== 'ok') continue;
        for (const f of c.figures.filter((x) => x.proxy)) {
          assert.equal(typeof cell.median[f.key], 'number', `${c.id} / ${name}: proxy figure ${f.key} was measured`);
        }
      }
    }

    assert.match(run.stdout, /\| target \|/, 'a Markdown table was printed');
    assert.match(run.stdout, /\| direct \|/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
