// Finds the proxy binaries, installing Debian's packages when they are
// missing and we are root; otherwise says exactly which package to install.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/sbin', '/bin'];

/** Absolute path of `binary`, or null. */
export function findBinary(binary) {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SEARCH_PATH];
  for (const dir of dirs) {
    const file = `${dir}/${binary}`;
    if (existsSync(file)) return file;
  }
  return null;
}

/**
 * Ensures each `{binary, apt}` is present. Returns Map binary -> {path} or
 * {skip: reason}. Runs `apt-get update && apt-get install -y ...` once, for
 * all missing packages together, only when running as root.
 */
export function ensureBinaries(wanted, log) {
  const out = new Map();
  const missing = [];
  for (const w of wanted) {
    const path = findBinary(w.binary);
    if (path) out.set(w.binary, { path });
    else missing.push(w);
  }
  if (missing.length === 0) return out;
  const pkgs = [...new Set(missing.map((w) => w.apt))];
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const aptGet = findBinary('apt-get');
  if (!isRoot || !aptGet) {
    const why = !isRoot ? 'not running as root' : 'apt-get not found';
    for (const w of missing) {
      const reason = `package ${w.apt} is not installed (${why}): install it with 'apt-get install -y ${w.apt}'`;
      log(`skip: ${w.binary}: ${reason}`);
      out.set(w.binary, { skip: reason });
    }
    return out;
  }
  log(`installing ${pkgs.join(' ')} with apt-get (missing: ${missing.map((w) => w.binary).join(', ')}) ...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const run = (args) => spawnSync(aptGet, args, { env, encoding: 'utf8', timeout: 8 * 60_000, maxBuffer: 64 << 20 });
  const upd = run(['update', '-qq']);
  const inst = upd.status === 0 ? run(['install', '-y', '-qq', ...pkgs]) : upd;
  const failure = inst.status === 0 ? null : (inst.error?.message ?? `${(inst.stderr || inst.stdout || '').trim().split('\n').slice(-3).join(' | ')}`);
  for (const w of missing) {
    const path = findBinary(w.binary);
    if (path) {
      out.set(w.binary, { path });
    } else {
      const reason = `package ${w.apt} could not be installed: ${failure ?? 'binary still missing after install'}`;
      log(`skip: ${w.binary}: ${reason}`);
      out.set(w.binary, { skip: reason });
    }
  }
  return out;
}

/** First line of `cmd -v` (nginx prints it on stderr). */
export function versionLine(path, args = ['-v']) {
  if (!path) return null;
  const r = spawnSync(path, args, { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] || null;
}
