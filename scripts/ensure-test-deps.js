#!/usr/bin/env node
// Makes sure the system packages the test suite needs are installed. As root it
// installs what is missing with apt-get; otherwise it stops with the exact command.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** binary that must exist -> Debian package that provides it */
const NEEDS = [
  { bin: '/usr/bin/openssl', pkg: 'openssl', why: 'TLS listener and config tests generate certificates' },
  { bin: '/usr/sbin/nginx', pkg: 'nginx-light', why: 'the benchmark smoke test compares against NGINX' },
  { bin: '/usr/sbin/haproxy', pkg: 'haproxy', why: 'the benchmark smoke test compares against HAProxy' },
  { bin: '/usr/bin/redis-server', pkg: 'redis-server', why: 'the store and limit tests run a real Redis (a one-node Redis Cluster, and Sentinel through redis-server --sentinel)' },
  { bin: '/usr/bin/chromium', pkg: 'chromium', why: 'browser tests drive a real headless Chromium' },
];

const missing = NEEDS.filter((n) => !existsSync(n.bin));
if (missing.length === 0) process.exit(0);

const pkgs = [...new Set(missing.map((m) => m.pkg))];
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
if (!isRoot || !hasApt) {
  process.stderr.write(
    `The test suite needs these system packages:\n${missing.map((m) => `  ${m.pkg}  (${m.why})`).join('\n')}\n` +
      `Install them with:\n  sudo apt-get update && sudo apt-get install -y ${pkgs.join(' ')}\n`,
  );
  process.exit(1);
}
process.stderr.write(`installing test dependencies: ${pkgs.join(' ')}\n`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
for (const m of missing) {
  if (!existsSync(m.bin)) {
    process.stderr.write(`installed ${m.pkg} but ${m.bin} is still missing\n`);
    process.exit(1);
  }
}
