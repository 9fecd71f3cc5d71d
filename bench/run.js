#!/usr/bin/env node
// Portcullis benchmark harness: the same workloads sent directly to the
// upstream, through NGINX, through HAProxy, through a bare Node proxy and
// through Portcullis, in alternation, in one run. See docs/BENCHMARKS.md.
//
//   node bench/run.js [--quick] [--only=workload|case,...] [--targets=name,...]
//                     [--json=path] [--rounds=N] [--pin]
//
// Progress goes to stderr; the Markdown report to stdout; the JSON to
// --json=path or bench/results/<timestamp>.json.

import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGETS, Target } from './lib/targets.js';
import { PROFILES, WORKLOADS, makeCases } from './lib/workloads.js';
import { ensureBinaries, versionLine } from './lib/install.js';
import { spawnManaged, stopManaged, stopAll, killAllSync, EFFECTIVE_NOFILE } from './lib/spawn.js';
import { makeAuthMaterial } from './lib/configs.js';
import { summarizeCase, markdown } from './lib/report.js';
import { CLK_TCK } from './lib/proc.js';
import { summarizeProfiles, profileMarkdown } from './lib/profile.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
/** A window in which other processes used more than this (% of a core) is measured again. */
const OTHER_LOAD_RETRY_PCT = 15;
const REPO_ROOT = path.resolve(BENCH_DIR, '..');

const USAGE = `usage: node bench/run.js [options]
  --quick                 short smoke run (1 round, small N, ~1 s windows; under a minute)
  --only=a,b              workloads (${WORKLOADS.join(', ')}) or case ids (e.g. ws-echo-64)
  --targets=a,b           targets (${TARGETS.map((t) => t.name).join(', ')});
                          naming a pending target runs it anyway
  --json=path             write the JSON there instead of bench/results/<timestamp>.json
  --rounds=N              rounds of alternation (default: 3 full, 1 quick)
  --pin                   pin the proxy to the last CPU and upstream + load generator to the others
  --cpu-prof              run Portcullis (and the bare Node proxies) under node --cpu-prof, one fresh process per case, and
                          summarise where its CPU time goes (figures of such a run are inflated)
  --help                  this text`;

function parseArgs(argv) {
  const opts = { quick: false, only: null, targets: null, json: null, rounds: null, pin: false, cpuProf: false };
  for (const arg of argv) {
    const [key, value] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, null];
    const list = () => value.split(',').map((s) => s.trim()).filter(Boolean);
    if (key === '--quick') opts.quick = true;
    else if (key === '--pin') opts.pin = true;
    else if (key === '--cpu-prof') opts.cpuProf = true;
    else if (key === '--only' && value) opts.only = list();
    else if (key === '--targets' && value) opts.targets = list();
    else if (key === '--json' && value) opts.json = path.resolve(value);
    else if (key === '--rounds' && value && /^\d+$/.test(value) && Number(value) >= 1 && Number(value) <= 20) opts.rounds = Number(value);
    else if (key === '--help' || key === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else {
      console.error(`unknown or malformed option: ${arg}\n${USAGE}`);
      process.exit(2);
    }
  }
  return opts;
}

// ---- cleanup on every way out ----------------------------------------------

let scratch = null;
let shuttingDown = false;

// Progress lines; quiet once a signal has started the shutdown.
const log = (msg) => {
  if (!shuttingDown) process.stderr.write(`${msg}\n`);
};
process.on('exit', () => {
  killAllSync();
  if (scratch && !process.env.BENCH_KEEP_SCRATCH) rmSync(scratch, { recursive: true, force: true });
  else if (scratch) process.stderr.write(`scratch directory kept: ${scratch}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (shuttingDown) return;
    shuttingDown = true;
    process.stderr.write(`\n${sig}: stopping every process the harness started ...\n`);
    stopAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

// ---- facts about the machine ------------------------------------------------

function machineFacts() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: (cpus[0]?.model ?? 'unknown CPU').trim(),
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    clkTck: CLK_TCK,
    nofile: EFFECTIVE_NOFILE,
  };
}

function gitCommit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function wsVersion() {
  try {
    return JSON.parse(readFileSync(path.join(REPO_ROOT, 'node_modules', 'ws', 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

// ---- the upstream process ----------------------------------------------------

async function startUpstream(cpus) {
  const proc = spawnManaged('upstream', process.execPath, [path.join(BENCH_DIR, 'upstream.js')], { ipc: true, cpus });
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('upstream did not report ready within 10 s')), 10_000);
    proc.child.on('message', (msg) => {
      if (msg?.type === 'ready') {
        clearTimeout(timer);
        resolve(msg);
      }
    });
    proc.exitPromise.then(() => reject(new Error(`upstream exited: ${proc.tail}`)));
  });
  return { proc, ports: ready.ports };
}

// ---- main ------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const profileName = opts.quick ? 'quick' : 'full';
  const profile = PROFILES[profileName];
  const rounds = opts.rounds ?? profile.rounds;
  const startedAt = new Date();
  const warnings = [];

  // Targets: all by default (pending ones reported as skipped), or the named ones.
  let defs = TARGETS;
  if (opts.targets) {
    const unknown = opts.targets.filter((n) => !TARGETS.some((t) => t.name === n));
    if (unknown.length > 0) {
      console.error(`unknown target(s): ${unknown.join(', ')}; known: ${TARGETS.map((t) => t.name).join(', ')}`);
      process.exit(2);
    }
    defs = TARGETS.filter((t) => opts.targets.includes(t.name));
  }

  const machine = machineFacts();
  let cases = makeCases(profile, { nofile: EFFECTIVE_NOFILE });
  if (opts.only) {
    const known = new Set([...WORKLOADS, ...cases.map((c) => c.id)]);
    const unknown = opts.only.filter((n) => !known.has(n));
    if (unknown.length > 0) {
      console.error(`unknown workload(s): ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
      process.exit(2);
    }
    cases = cases.filter((c) => opts.only.includes(c.workload) || opts.only.includes(c.id));
  }
  for (const c of cases) if (c.clamped) warnings.push(`${c.id}: ${c.clamped}`);

  const pinning =
    opts.pin && machine.cpus >= 2 ? { proxy: String(machine.cpus - 1), client: machine.cpus === 2 ? '0' : `0-${machine.cpus - 2}` } : null;
  log(`portcullis bench: ${profileName}, ${rounds} round(s), ${cases.length} case(s), targets ${defs.map((d) => d.name).join(', ')}`);
  log(`machine: ${machine.cpus} × ${machine.cpuModel}, open-file limit for children ${EFFECTIVE_NOFILE}${pinning ? `, proxy on CPU ${pinning.proxy}` : ', no pinning'}`);

  // Binaries of the proxies we will run (installed with apt-get when root).
  const wantedBins = defs.filter((d) => d.binary && !(d.pending && !opts.targets)).map((d) => ({ binary: d.binary, apt: d.apt }));
  const binaries = ensureBinaries(wantedBins, log);

  scratch = mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-'));
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const cpuProfDir = opts.cpuProf ? path.join(BENCH_DIR, 'results', `profiles-${stamp}`) : null;
  if (cpuProfDir) {
    mkdirSync(cpuProfDir, { recursive: true });
    warnings.push('this run profiled Portcullis with --cpu-prof: its CPU figures include the profiler overhead');
  }
  const upstream = await startUpstream(pinning?.client);
  log(`upstream: pid ${upstream.proc.pid}, ws :${upstream.ports.ws}, sse :${upstream.ports.sse}, http :${upstream.ports.http}`);

  const ctx = {
    dir: scratch,
    up: upstream.ports,
    upstreamPid: upstream.proc.pid,
    nofile: EFFECTIVE_NOFILE,
    proxyCpus: pinning?.proxy,
    clientCpus: pinning?.client,
    repoRoot: REPO_ROOT,
    cpuProfDir,
    binaries,
    auth: defs.some((d) => d.auth) ? makeAuthMaterial() : null,
  };

  // Start every target once; a failure becomes a skip reason, not an abort.
  const targets = defs.map((d) => new Target(d, ctx));
  for (const t of targets) {
    if (t.def.pending && !opts.targets) {
      t.skip(`pending: ${t.def.pending}`);
      log(`skip: ${t.name}: ${t.reason}`);
      continue;
    }
    const bin = t.def.binary ? binaries.get(t.def.binary) : null;
    if (bin?.skip) {
      t.skip(bin.skip);
      log(`skip: ${t.name}: ${t.reason}`);
      continue;
    }
    try {
      await t.start();
      log(`ready: ${t.name}${t.pid ? ` (pid ${t.pid}, port ${t.port})` : ''}`);
    } catch (err) {
      t.skip(`did not start: ${err.message}`);
      log(`skip: ${t.name}: ${t.reason}`);
      await t.stop();
    }
  }

  // Measure: for each case, rounds of A B C ..., so drift hits every target alike.
  const budgetEnd = Date.now() + profile.budgetSec * 1000 * Math.max(1, rounds / profile.rounds);
  // Seconds the measurements still to come are expected to take, so that a
  // retry never pushes a later measurement out of the budget.
  const runnable = (c) => targets.filter((t) => t.status === 'ready' && t.appliesTo(c.workload)).length;
  let plannedSec = cases.reduce((sum, c) => sum + c.expectedSec * rounds * runnable(c), 0);
  const results = [];
  for (const c of cases) {
    const cells = {};
    for (const t of targets) {
      if (t.status === 'skipped') cells[t.name] = { status: 'skipped', reason: t.reason };
      else if (!t.appliesTo(c.workload)) cells[t.name] = { status: 'skipped', reason: `not applicable: ${t.name} runs ${t.def.workloads.join(', ')} only` };
      else cells[t.name] = { status: 'ok', rounds: [], errors: [], noProxy: t.def.kind === 'direct', compareTo: t.def.compareTo };
    }
    if (cpuProfDir) {
      // One fresh profiled process per case, so each profile shows one workload.
      for (const t of targets) {
        if ((t.def.kind !== 'portcullis' && t.def.kind !== 'node') || t.status !== 'ready' || cells[t.name].status !== 'ok') continue;
        t.profileTag = c.id;
        await t.restart().catch((err) => log(`${t.name}: restart for profiling failed: ${err.message}`));
      }
    }
    for (let round = 1; round <= rounds; round++) {
      for (const t of targets) {
        const cell = cells[t.name];
        if (cell.status !== 'ok') continue;
        if (t.status === 'skipped') {
          cell.errors.push(t.reason);
          continue;
        }
        if (Date.now() > budgetEnd) {
          cell.errors.push(`time budget of ${profile.budgetSec} s used up before this round`);
          continue;
        }
        const label = `[${c.id} ${round}/${rounds}] ${t.name}`;
        try {
          // A window disturbed by processes outside the benchmark is measured
          // again (at most profile.retries times, within the budget); the least
          // disturbed attempt is kept and the others are listed in the JSON.
          const t0 = Date.now();
          let best = null;
          const disturbed = [];
          plannedSec -= c.expectedSec;
          for (let attempt = 0; attempt <= profile.retries; attempt++) {
            if (attempt > 0 && Date.now() + (c.expectedSec + plannedSec) * 1000 > budgetEnd) break;
            if ((c.fresh && t.def.kind !== 'direct') || !t.alive) await t.restart();
            const m = await c.measure(c, t, ctx);
            const other = m.figures.other_cpu_pct;
            if (best === null || (typeof other === 'number' && other < best.figures.other_cpu_pct)) {
              if (best) disturbed.push(best.figures.other_cpu_pct);
              best = m;
            } else {
              disturbed.push(other);
            }
            if (typeof other !== 'number' || other <= OTHER_LOAD_RETRY_PCT) break;
            log(`${label}: other processes used ${other.toFixed(0)}% of a core during the window`);
          }
          const m = best;
          cell.rounds.push({ round, figures: m.figures, raw: m.raw, discardedOtherLoadPct: disturbed, seconds: (Date.now() - t0) / 1000 });
          log(`${label}: ${c.figures.slice(0, 4).map((f) => `${f.label} ${m.figures[f.key] === null ? 'n/a' : m.figures[f.key].toFixed(f.digits)} ${f.unit}`).join(', ')}`);
        } catch (err) {
          cell.errors.push(err.message);
          cell.rounds.push({ round, error: err.message });
          log(`${label}: FAILED: ${err.message}`);
          if (!t.alive) {
            try {
              await t.restart();
            } catch (restartErr) {
              t.skip(`stopped working and did not restart: ${restartErr.message}`);
              await t.stop();
            }
          }
        }
      }
    }
    if (cpuProfDir) {
      for (const t of targets) {
        if (t.profileTag !== c.id) continue;
        await t.stop(); // writes the profile
        t.profileTag = null;
        if (t.status === 'ready') await t.start().catch((err) => t.skip(`did not restart: ${err.message}`));
      }
    }
    results.push({
      id: c.id,
      workload: c.workload,
      title: c.title,
      describe: c.describe,
      clamped: c.clamped ?? null,
      params: c.params,
      figures: c.figures.map(({ key, label, unit, digits, proxy, headline, better }) => ({ key, label, unit, digits, proxy, headline, better })),
      results: summarizeCase(c, cells),
    });
  }

  for (const t of targets) await t.stop();
  await stopManaged(upstream.proc);

  let profiles = null;
  if (cpuProfDir) {
    const files = readdirSync(cpuProfDir).filter((f) => f.endsWith('.cpuprofile'));
    const groups = new Map();
    for (const f of files) {
      const key = f.split('.').slice(0, 2).join('.');
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(path.join(cpuProfDir, f));
    }
    profiles = { dir: path.relative(REPO_ROOT, cpuProfDir), summaries: [] };
    const md = [];
    for (const [key, list] of [...groups.entries()].sort()) {
      const [caseId, target] = key.split('.');
      const summary = summarizeProfiles(list, REPO_ROOT);
      profiles.summaries.push({ case: caseId, target, ...summary });
      md.push(profileMarkdown(`${target}, ${caseId}`, summary));
    }
    writeFileSync(path.join(cpuProfDir, 'summary.md'), md.join('\n'));
    log(`CPU profiles and summary: ${profiles.dir}/summary.md`);
  }

  // Windows disturbed by processes outside the benchmark are worth knowing about.
  for (const c of results) {
    for (const [name, cell] of Object.entries(c.results)) {
      const other = cell.status === 'ok' ? cell.median.other_cpu_pct : null;
      if (typeof other === 'number' && other > 20) {
        warnings.push(`${c.id} / ${name}: processes outside the benchmark used ${other.toFixed(0)}% of a core during the windows (median); its figures are less reliable`);
      }
    }
  }

  const finishedAt = new Date();
  const doc = {
    schema: 1,
    profile: profileName,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSec: (finishedAt - startedAt) / 1000,
    rounds,
    pinning: pinning ? `proxy on CPU ${pinning.proxy}, upstream and load generator on CPU ${pinning.client}` : 'none (all processes share all CPUs)',
    machine,
    versions: {
      node: process.version,
      ws: wsVersion(),
      nginx: versionLine(binaries.get('nginx')?.path),
      haproxy: versionLine(binaries.get('haproxy')?.path),
      portcullis: JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version,
      commit: gitCommit(),
    },
    targets: targets.map((t) => ({ name: t.name, kind: t.def.kind, about: t.def.about, status: t.status, reason: t.reason, ...(t.def.compareTo ? { compareTo: t.def.compareTo } : {}) })),
    cases: results,
    profiles,
    warnings,
  };

  const jsonPath = opts.json ?? path.join(BENCH_DIR, 'results', `${stamp}.json`);
  mkdirSync(path.dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(doc, null, 2)}\n`);
  process.stdout.write(`${markdown(doc)}\n`);
  log(`\nJSON: ${path.relative(process.cwd(), jsonPath) || jsonPath} (${doc.durationSec.toFixed(0)} s)`);
}

main().then(
  () => process.exit(0),
  async (err) => {
    log(`bench failed: ${err?.stack ?? err}`);
    await stopAll();
    process.exit(1);
  },
);
