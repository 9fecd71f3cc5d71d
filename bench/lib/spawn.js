// Starting and stopping every process the harness owns.
//
// Children are started through `sh -c 'ulimit -n ...; exec "$@"'`, so the fd
// limit is raised (as far as the hard limit allows) and the pid we hold is the
// real program after `exec`. Every child is remembered until it has exited;
// `stopAll()` (on normal end, error and SIGINT) stops each one by its pid, and
// an 'exit' hook SIGKILLs whatever is still left, descendants included.

import { spawn, execFileSync } from 'node:child_process';
import net from 'node:net';
import { treePids } from './proc.js';

export const WANTED_NOFILE = 65536;
const ULIMIT_SH = `ulimit -n ${WANTED_NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`;

/** The fd limit a child started through `spawnManaged` gets. */
export const EFFECTIVE_NOFILE = (() => {
  try {
    const out = execFileSync('sh', ['-c', ULIMIT_SH, 'sh', 'sh', '-c', 'ulimit -n'], { encoding: 'utf8' });
    const n = Number(out.trim());
    return Number.isFinite(n) ? n : 1024;
  } catch {
    return 1024;
  }
})();

const live = new Map(); // pid -> ManagedChild

/**
 * Spawns `cmd args` through sh with the raised fd limit, optionally pinned to
 * CPUs with taskset. stdout/stderr are kept as a bounded tail for error
 * messages. `ipc: true` opens a Node IPC channel (fd 3 survives the exec).
 */
export function spawnManaged(name, cmd, args, { cpus, ipc = false, env, cwd } = {}) {
  const argv = cpus ? ['taskset', '-c', cpus, cmd, ...args] : [cmd, ...args];
  const child = spawn('sh', ['-c', ULIMIT_SH, name, ...argv], {
    stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    env: env ?? process.env,
    cwd,
    serialization: 'json',
  });
  const managed = {
    name,
    child,
    pid: child.pid,
    tail: '',
    exited: false,
    exitCode: null,
    exitSignal: null,
    exitPromise: null,
    knownPids: new Set([child.pid]),
  };
  const keep = (chunk) => {
    managed.tail = (managed.tail + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  managed.exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      managed.exited = true;
      managed.exitCode = code;
      managed.exitSignal = signal;
      live.delete(child.pid);
      resolve();
    });
    child.on('error', (err) => {
      keep(`spawn error: ${err.message}\n`);
      managed.exited = true;
      live.delete(child.pid);
      resolve();
    });
  });
  if (child.pid) live.set(child.pid, managed);
  return managed;
}

/** Records the current descendants so they can be killed even if the root dies first. */
export function rememberTree(managed) {
  if (managed.exited) return;
  for (const pid of treePids(managed.pid)) managed.knownPids.add(pid);
}

function killPid(pid, signal) {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops one managed child by its pid: SIGTERM, then after `graceMs` SIGKILL
 * to it and to every descendant we have seen.
 */
export async function stopManaged(managed, { graceMs = 3000, signal = 'SIGTERM' } = {}) {
  if (!managed) return;
  rememberTree(managed);
  if (!managed.exited) {
    killPid(managed.pid, signal);
    await Promise.race([managed.exitPromise, sleep(graceMs)]);
    if (!managed.exited) {
      killPid(managed.pid, 'SIGKILL');
      await Promise.race([managed.exitPromise, sleep(1000)]);
    }
  }
  // Descendants that outlived their parent (e.g. an nginx worker after a SIGKILLed master).
  for (const pid of managed.knownPids) {
    if (pid !== managed.pid && isAlive(pid)) killPid(pid, 'SIGKILL');
  }
}

/** Stops every child that is still running, each by its pid. */
export async function stopAll() {
  await Promise.all([...live.values()].map((m) => stopManaged(m, { graceMs: 2000 })));
}

/** Last resort on process exit: SIGKILL by pid, synchronously. */
export function killAllSync() {
  for (const m of live.values()) {
    for (const pid of m.knownPids) killPid(pid, 'SIGKILL');
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves when host:port accepts a TCP connection; rejects on timeout or when `managed` exits. */
export async function waitForPort(host, port, { timeoutMs = 10_000, managed } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (managed?.exited) {
      throw new Error(`${managed.name} exited (code ${managed.exitCode}, signal ${managed.exitSignal}) before listening on ${host}:${port}: ${lastLines(managed.tail)}`);
    }
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host, port });
      s.setTimeout(500);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.once('timeout', () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing accepted connections on ${host}:${port} within ${timeoutMs} ms${managed ? `: ${lastLines(managed.tail)}` : ''}`);
}

export function lastLines(text, n = 6) {
  const lines = String(text).trim().split('\n').filter(Boolean);
  return lines.slice(-n).join(' | ') || '(no output)';
}
