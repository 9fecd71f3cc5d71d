// Reads CPU time and memory of process trees from /proc.
//
// CPU is utime + stime (+ cutime + cstime, so that children which exited and
// were reaped stay counted) of a process and every live descendant. RSS is the
// sum of VmRSS over the same tree. Everything here is synchronous and cheap
// (one scan of /proc per sample), so it can run at the exact moment a
// measurement window opens or closes.

import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Clock ticks per second used by /proc/PID/stat. */
export const CLK_TCK = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** Parses /proc/PID/stat; null when the process is gone. */
export function readStat(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name sits in parentheses and may contain spaces: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field N is rest[N - 3].
  return {
    state: rest[0],
    ppid: Number(rest[1]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    cutime: Number(rest[13]),
    cstime: Number(rest[14]),
  };
}

/** VmRSS of one process in KiB (0 when gone or a zombie). */
export function readRssKb(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return 0;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** The pid and all live descendants of `root` (one scan of /proc). */
export function treePids(root) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const st = readStat(name);
    if (!st) continue;
    const pid = Number(name);
    let list = children.get(st.ppid);
    if (!list) children.set(st.ppid, (list = []));
    list.push(pid);
  }
  const out = [];
  const stack = [root];
  while (stack.length > 0 && out.length < 10_000) {
    const pid = stack.pop();
    out.push(pid);
    const kids = children.get(pid);
    if (kids) stack.push(...kids);
  }
  return out;
}

/**
 * One sample of a process tree: CPU seconds (all threads, live descendants
 * and reaped children), the part of them spent in the kernel (sysSec: stime,
 * which on loopback includes the receiving side of every send) and summed RSS
 * in KiB. `alive` is false when the root process has gone.
 */
export function sampleTree(root) {
  if (!root) return { cpuSec: 0, sysSec: 0, rssKb: 0, pids: [], alive: false, at: performance.now() };
  const pids = treePids(root);
  let ticks = 0;
  let sysTicks = 0;
  let rssKb = 0;
  let alive = false;
  for (const pid of pids) {
    const st = readStat(pid);
    if (!st) continue;
    if (pid === root) alive = st.state !== 'Z';
    ticks += st.utime + st.stime + st.cutime + st.cstime;
    sysTicks += st.stime + st.cstime;
    rssKb += readRssKb(pid);
  }
  return { cpuSec: ticks / CLK_TCK, sysSec: sysTicks / CLK_TCK, rssKb, pids, alive, at: performance.now() };
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
export function sampleMachine() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/** Soft and hard RLIMIT_NOFILE of this process, from /proc/self/limits. */
export function openFileLimits() {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    const num = (s) => (s === 'unlimited' ? Infinity : Number(s));
    if (m) return { soft: num(m[1]), hard: num(m[2]) };
  } catch {
    // fall through
  }
  return { soft: 1024, hard: 1024 };
}
