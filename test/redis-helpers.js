// A real redis-server for the tests (Debian package redis-server, installed by
// scripts/ensure-test-deps.js): started on a free loopback port with nothing
// persisted, stoppable and restartable on the same port (outage tests), stopped
// after. Redis has no `--port 0`: a free port is found by binding a server to 0 first.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

/** True once `PING` gets `+PONG` (a cluster node answers too, before it has slots; a server with a password says NOAUTH). */
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
      if (got.includes('\r\n')) done(got.startsWith('+PONG') || got.startsWith('-NOAUTH'));
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
 * slot (enough for the cluster client's code path). `replicaOf: PORT` starts a
 * replica of the server on that loopback port. `password`: the server requires it
 * (`requirepass`; client() authenticates). Returns { port, url, stop(), start(),
 * client(), close() }.
 */
export async function startRedis({ cluster = false, replicaOf, password } = {}) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-redis-'));
  let proc;
  const clients = new Set();

  async function start() {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', ''];
    if (cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-announce-ip', '127.0.0.1');
    if (replicaOf) args.push('--replicaof', '127.0.0.1', String(replicaOf));
    if (password !== undefined) args.push('--requirepass', password);
    // A replica gets its first copy at once, not after the default 5 s wait for more replicas.
    args.push('--repl-diskless-sync-delay', '0');
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
    /** A replica: true once its link to the master is up (it has a first copy). */
    async synced() {
      const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
      c.on('error', () => {});
      try {
        return /master_link_status:up/.test(await c.info('replication'));
      } catch {
        return false;
      } finally {
        c.disconnect();
      }
    },
    /** Freeze the server (SIGSTOP) or thaw it (SIGCONT): commands time out, data survives. */
    pause: () => proc.kill('SIGSTOP'),
    resume: () => proc.kill('SIGCONT'),
    /** An inspection client (closed by close()). */
    client() {
      const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, ...(password !== undefined ? { password } : {}) });
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

/**
 * A Redis Sentinel (redis-server in sentinel mode, quorum 1) watching the master
 * on loopback `masterPort` as group `name`. Its config file lives in a scratch
 * directory of its own: a sentinel rewrites it. Returns { port, address, name,
 * masterPort(), replicas(), failover(), stop(), start(), close() }.
 */
export async function startSentinel({ masterPort, name = 'mymaster', downAfterMs = 1000 }) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-sentinel-'));
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      'logfile ""',
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
      `sentinel failover-timeout ${name} 10000`,
      '',
    ].join('\n'),
  );
  let proc;
  const admin = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1, enableReadyCheck: false });
  admin.on('error', () => {});

  async function start() {
    proc = spawn(REDIS_SERVER, [conf, '--sentinel'], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(proc);
    const p = proc;
    p.once('exit', () => live.delete(p));
    for (let i = 0; i < 200; i++) {
      if (await ping(port)) return;
      if (p.exitCode !== null) throw new Error(`redis-server --sentinel exited with ${p.exitCode}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error('the sentinel did not answer PING');
  }

  async function stop() {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    p.kill('SIGTERM');
    await exited;
  }

  /** The master's port as the sentinel names it now. */
  async function currentMaster() {
    const [, p] = await admin.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name);
    return Number(p);
  }

  await start();
  return {
    port,
    address: `127.0.0.1:${port}`,
    name,
    start,
    stop,
    masterPort: currentMaster,
    /** Replicas the sentinel knows and considers healthy: their ports. */
    async replicas() {
      const rows = await admin.call('SENTINEL', 'REPLICAS', name);
      const healthy = [];
      for (const row of rows) {
        const f = {};
        for (let i = 0; i < row.length; i += 2) f[row[i]] = row[i + 1];
        if (!/s_down|o_down|disconnected/.test(f.flags ?? '')) healthy.push(Number(f.port));
      }
      return healthy;
    },
    /** SENTINEL FAILOVER, then wait until the sentinel names another master; its port. */
    async failover() {
      const before = await currentMaster();
      await admin.call('SENTINEL', 'FAILOVER', name);
      for (let i = 0; i < 400; i++) {
        const now = await currentMaster();
        if (now !== before) return now;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error('no new master after SENTINEL FAILOVER');
    },
    async close() {
      admin.disconnect();
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
