// A real redis-server for the tests (Debian package redis-server, installed by
// scripts/ensure-test-deps.js): started on a free loopback port with nothing
// persisted, stoppable and restartable on the same port (outage tests), stopped
// after. Redis has no `--port 0`: a free port is found by binding a server to 0 first.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Redis } from 'ioredis';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** A free loopback TCP port (bound to 0, read, released). */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** True once `PING` gets `+PONG` (a cluster node answers too, before it has slots). */
function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const done = (v) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(500, () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      got += d;
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
    s.on('error', () => done(false));
  });
}

const live = new Set();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/**
 * Start redis-server. `cluster: true` starts a one-node Redis Cluster owning every
 * slot (enough for the cluster client's code path). Returns { port, url, stop(),
 * start(), client(), close() }.
 */
export async function startRedis({ cluster = false } = {}) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-redis-'));
  let proc;
  const clients = new Set();

  async function start() {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', ''];
    if (cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-announce-ip', '127.0.0.1');
    proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(proc);
    const p = proc;
    p.once('exit', () => live.delete(p));
    for (let i = 0; i < 200; i++) {
      if (await ping(port)) break;
      if (p.exitCode !== null) throw new Error(`redis-server exited with ${p.exitCode}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    if (cluster) {
      const c = new Redis({ port, host: '127.0.0.1', lazyConnect: false });
      const info = await c.cluster('INFO');
      if (!/cluster_state:ok/.test(info)) {
        await c.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383').catch(() => undefined);
        for (let i = 0; i < 200 && !/cluster_state:ok/.test(await c.cluster('INFO')); i++) await new Promise((r) => setTimeout(r, 25));
      }
      c.disconnect();
    }
  }

  async function stop(signal = 'SIGTERM') {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    p.kill(signal);
    await exited;
  }

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return proc.pid;
    },
    start,
    stop,
    /** Freeze the server (SIGSTOP) or thaw it (SIGCONT): commands time out, data survives. */
    pause: () => proc.kill('SIGSTOP'),
    resume: () => proc.kill('SIGCONT'),
    /** An inspection client (closed by close()). */
    client() {
      const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
      c.on('error', () => {});
      clients.add(c);
      return c;
    },
    async close() {
      for (const c of clients) c.disconnect();
      proc?.kill('SIGCONT');
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
