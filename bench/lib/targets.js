// The targets every workload is sent to. To add a target, add an entry to
// TARGETS; `kind` picks how it is started (see startTarget below).
//
//   name       shown in the report and selected with --targets=
//   kind       direct | nginx | haproxy | node | portcullis
//   about      one line for the report
//   workloads  the workloads it applies to (default: all); others are
//              reported as skipped with the reason 'not applicable'
//   pending    when set, the target is reported as skipped with this reason
//              unless it is named explicitly in --targets=; delete the line
//              once the feature it needs has landed
//   args       node only: extra arguments to bench/bare-proxy.js
//   config     portcullis only: ({port, up}, auth?) -> YAML text
//   auth       portcullis only: clients send `Authorization: Bearer <ES256 JWT>`
//   tokens     with auth, handshake-rate only: 'reused' (each client loop keeps
//              one token) or 'distinct' (a fresh token per connection); the
//              load generator signs them before the window opens
//   compareTo  another target whose figures this one is also shown as a
//              ratio to (the same route without the feature under test)
//   redis      portcullis only: the target gets its own redis-server (binary
//              and apt as for nginx: Debian's redis-server), started on a free
//              loopback port with nothing persisted before the gateway and
//              stopped by pid after it; its port reaches `config` as `redis`

import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import WebSocket from 'ws';
import {
  nginxConfig,
  haproxyConfig,
  portcullisTunnelConfig,
  portcullisAuthConfig,
  portcullisAuthLimitConfig,
  portcullisValidatedConfig,
  portcullisLimitedConfig,
} from './configs.js';
import { echoPayload } from './payload.js';
import { spawnManaged, stopManaged, waitForPort, freePort, rememberTree, lastLines } from './spawn.js';

export const TARGETS = [
  { name: 'direct', kind: 'direct', about: 'client straight to the upstream (the limit; no proxy process)' },
  { name: 'nginx', kind: 'nginx', binary: 'nginx', apt: 'nginx-light', about: 'NGINX, worker_processes 1, generated config' },
  { name: 'haproxy', kind: 'haproxy', binary: 'haproxy', apt: 'haproxy', about: 'HAProxy, nbthread 1, mode http, generated config' },
  {
    name: 'node-bare',
    kind: 'node',
    about: 'bare Node proxy (no checks, bench/bare-proxy.js): http.Server upgrade → net.connect → pipe; SSE via http.request to the raw client socket; the Node floor',
  },
  {
    // The same, with no HTTP parser on the upgrade path: what two sockets and a
    // pipe cost in Node, the floor under any handshake a Node gateway makes.
    name: 'node-net',
    kind: 'node',
    args: ['--front=net'],
    workloads: ['handshake-rate'],
    about: 'bare Node proxy behind a net.Server (bench/bare-proxy.js --front=net): the request head found by its blank line, no HTTP parser, piped as it came; the floor of two sockets and a pipe',
  },
  {
    name: 'portcullis-tunnel',
    kind: 'portcullis',
    config: portcullisTunnelConfig,
    about: 'Portcullis, WebSocket route without message plugins (byte tunnel)',
  },
  {
    // The same config twice, side by side in every round: clients that reuse
    // their tokens (the verified-token cache at work: a reconnect storm) and
    // clients that present a token never seen before on every connection.
    name: 'portcullis-auth',
    kind: 'portcullis',
    config: portcullisAuthConfig,
    auth: true,
    tokens: 'reused',
    compareTo: 'portcullis-tunnel',
    workloads: ['handshake-rate'],
    about: 'Portcullis, tunnel routes with jwt-auth (consumer-bound, ES256); each of the 50 client loops reuses its own token (verified-token cache hits)',
  },
  {
    name: 'portcullis-auth-distinct',
    kind: 'portcullis',
    config: portcullisAuthConfig,
    auth: true,
    tokens: 'distinct',
    compareTo: 'portcullis-tunnel',
    workloads: ['handshake-rate'],
    about: 'Portcullis, the portcullis-auth config; every connection presents a fresh token (signed before the window), so every handshake verifies an ES256 signature',
  },
  {
    // Issue 6: portcullis-auth (reused tokens) with limit-conn keyed by consumer,
    // conn 10000 so that it never delays or refuses; the slot is taken on every
    // handshake and released on every close, in the process or in Redis.
    name: 'portcullis-auth-limit-local',
    kind: 'portcullis',
    config: portcullisAuthLimitConfig('local'),
    auth: true,
    tokens: 'reused',
    compareTo: 'portcullis-auth',
    workloads: ['handshake-rate'],
    about: 'Portcullis, the portcullis-auth routes (reused tokens) plus limit-conn (conn 10000, burst 0, key consumer_name, policy local)',
  },
  {
    name: 'portcullis-auth-limit-redis',
    kind: 'portcullis',
    config: portcullisAuthLimitConfig('redis'),
    auth: true,
    tokens: 'reused',
    redis: true,
    binary: 'redis-server',
    apt: 'redis-server',
    compareTo: 'portcullis-auth',
    workloads: ['handshake-rate'],
    about: 'Portcullis, as portcullis-auth-limit-local with policy redis: a redis-server of its own on loopback (--save "" --appendonly no), not pinned',
  },
  {
    name: 'portcullis-validated',
    kind: 'portcullis',
    config: portcullisValidatedConfig,
    workloads: ['ws-echo'],
    compareTo: 'portcullis-tunnel',
    about: 'Portcullis, ws route in frame mode: websocket-validator checks every client message against a 6-property JSON Schema (ws-echo-validated)',
  },
  {
    // Issue 6: "a limit check adds no measurable latency to ws-echo". limit-messages
    // with on_exceed close keeps the route in tunnel mode (frame phase): compare with the tunnel.
    name: 'portcullis-limited',
    kind: 'portcullis',
    config: portcullisLimitedConfig,
    workloads: ['ws-echo'],
    compareTo: 'portcullis-tunnel',
    about: 'Portcullis, ws route in tunnel mode: limit-messages counts every client message from frame headers in a per-connection bucket (rate 1,000,000/s: never refuses; scope connection, policy local)',
  },
];

/**
 * A running (or skipped) target. `ctx` holds what all targets share:
 * dir (scratch directory), up (upstream ports), nofile, proxyCpus,
 * repoRoot, binaries (Map from install.js), auth ({token, key, publicKeyPem,
 * privateKeyPem}).
 */
export class Target {
  constructor(def, ctx) {
    this.def = def;
    this.name = def.name;
    this.ctx = ctx;
    this.proc = null;
    this.port = null;
    this.status = 'ready';
    this.reason = null;
    this.profileTag = null;
    this.headers = def.auth && ctx.auth ? { authorization: `Bearer ${ctx.auth.token}` } : {};
  }

  /**
   * What the load generator needs to sign this target's handshake-rate tokens,
   * or null: {mode, count, privateKeyPem, key}.
   */
  tokenPlan(params) {
    if (!this.def.auth || !this.def.tokens || !this.ctx.auth) return null;
    const distinct = this.def.tokens === 'distinct';
    return {
      mode: this.def.tokens,
      count: distinct ? params.distinctTokens : params.reusedTokens,
      privateKeyPem: this.ctx.auth.privateKeyPem,
      key: this.ctx.auth.key,
    };
  }

  appliesTo(workload) {
    return !this.def.workloads || this.def.workloads.includes(workload);
  }

  skip(reason) {
    this.status = 'skipped';
    this.reason = reason;
  }

  /** Pid of the proxy process tree root, or null for `direct`. */
  get pid() {
    return this.proc && !this.proc.exited ? this.proc.pid : null;
  }

  get alive() {
    return this.def.kind === 'direct' || (this.proc !== null && !this.proc.exited);
  }

  url(kind) {
    const { up } = this.ctx;
    if (this.def.kind === 'direct') {
      if (kind === 'ws') return `ws://127.0.0.1:${up.ws}/ws`;
      if (kind === 'sse') return `http://127.0.0.1:${up.sse}/sse`;
      return `http://127.0.0.1:${up.http}/`;
    }
    if (kind === 'ws') return `ws://127.0.0.1:${this.port}/ws`;
    if (kind === 'sse') return `http://127.0.0.1:${this.port}/sse`;
    return `http://127.0.0.1:${this.port}/`;
  }

  /** Starts the proxy and checks that it carries ws, sse and http; throws with a reason otherwise. */
  async start() {
    if (this.def.kind === 'direct') return;
    this.port = await freePort();
    const { dir, up, nofile, proxyCpus, repoRoot } = this.ctx;
    const work = path.join(dir, `${this.name}-${this.port}`);
    mkdirSync(work, { recursive: true });
    const kind = this.def.kind;
    if (kind === 'nginx') {
      for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(work, sub), { recursive: true });
      const conf = path.join(work, 'nginx.conf');
      writeFileSync(conf, nginxConfig({ dir: work, port: this.port, up, nofile }));
      const bin = this.ctx.binaries.get('nginx').path;
      this.proc = spawnManaged(this.name, bin, ['-e', path.join(work, 'error.log'), '-p', work, '-c', conf], { cpus: proxyCpus });
    } else if (kind === 'haproxy') {
      const conf = path.join(work, 'haproxy.cfg');
      writeFileSync(conf, haproxyConfig({ port: this.port, up, nofile }));
      const bin = this.ctx.binaries.get('haproxy').path;
      this.proc = spawnManaged(this.name, bin, ['-db', '-f', conf], { cpus: proxyCpus });
    } else if (kind === 'node') {
      const script = path.join(repoRoot, 'bench', 'bare-proxy.js');
      const args = [script, `--port=${this.port}`, `--ws=${up.ws}`, `--sse=${up.sse}`, `--http=${up.http}`, ...(this.def.args ?? [])];
      this.proc = spawnManaged(this.name, process.execPath, [...this.#profileArgs(), ...args], { cpus: proxyCpus, cwd: repoRoot });
    } else if (kind === 'portcullis') {
      const cli = path.join(repoRoot, 'dist', 'cli.js');
      if (!existsSync(cli)) throw new Error(`${path.relative(repoRoot, cli)} not found: the gateway is not built (npm run build)`);
      let redis;
      if (this.def.redis) {
        redis = await freePort();
        const bin = this.ctx.binaries.get(this.def.binary).path;
        const args = ['--port', String(redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', work, '--logfile', ''];
        this.redisProc = spawnManaged(`${this.name}-redis-server`, bin, args);
        await waitForPort('127.0.0.1', redis, { timeoutMs: 10_000, managed: this.redisProc });
      }
      const conf = path.join(work, 'portcullis.yaml');
      writeFileSync(conf, this.def.config({ port: this.port, up, redis }, this.ctx.auth));
      this.proc = spawnManaged(this.name, process.execPath, [...this.#profileArgs(), cli, 'start', '-c', conf], { cpus: proxyCpus, cwd: repoRoot });
    } else {
      throw new Error(`unknown target kind ${kind}`);
    }
    await waitForPort('127.0.0.1', this.port, { timeoutMs: 15_000, managed: this.proc });
    await this.probe();
    rememberTree(this.proc);
  }

  /** With run.js --cpu-prof, `profileTag` names the case and V8 writes a profile when the (node) process exits. */
  #profileArgs() {
    if (!this.profileTag || !this.ctx.cpuProfDir) return [];
    this.profileSeq = (this.profileSeq ?? 0) + 1;
    const name = `${this.profileTag}.${this.name}.${this.profileSeq}.cpuprofile`;
    return ['--cpu-prof', `--cpu-prof-dir=${this.ctx.cpuProfDir}`, `--cpu-prof-name=${name}`];
  }

  async stop() {
    if (this.proc) await stopManaged(this.proc);
    this.proc = null;
    if (this.redisProc) await stopManaged(this.redisProc);
    this.redisProc = null;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  /** One ws echo, one SSE event and one HTTP 200 through the target. */
  async probe() {
    try {
      await probeWs(this.url('ws'), this.headers);
      await probeSse(this.url('sse'), this.headers);
      await probeHttp(this.url('http'));
    } catch (err) {
      const tail = this.proc ? ` (process output: ${lastLines(this.proc.tail, 3)})` : '';
      throw new Error(`probe failed: ${err.message}${tail}`);
    }
  }

  describeFailure() {
    if (!this.proc) return 'not running';
    if (this.proc.exited) return `exited (code ${this.proc.exitCode}, signal ${this.proc.exitSignal}): ${lastLines(this.proc.tail, 3)}`;
    return 'running';
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

function probeWs(url, headers) {
  const msg = echoPayload(64);
  let ws;
  const p = new Promise((resolve, reject) => {
    ws = new WebSocket(url, { perMessageDeflate: false, headers, handshakeTimeout: 5000 });
    ws.on('open', () => ws.send(msg, { binary: false }));
    ws.on('message', (data) => {
      if (Buffer.compare(Buffer.from(data), msg) !== 0) reject(new Error('ws echo returned different bytes'));
      else resolve();
      ws.close(1000);
    });
    ws.on('unexpected-response', (req, res) => reject(new Error(`ws handshake answered ${res.statusCode}`)));
    ws.on('error', (err) => reject(new Error(`ws: ${err.message}`)));
  });
  return withTimeout(p, 5000, `ws echo via ${url}`).finally(() => ws?.terminate());
}

function probeSse(url, headers) {
  let req;
  const p = new Promise((resolve, reject) => {
    req = http.get(url, { agent: false, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`sse answered ${res.statusCode}`));
        res.resume();
        return;
      }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        if (/data: \d+ \d+\n\n/.test(buf)) resolve();
      });
    });
    req.on('error', (err) => reject(new Error(`sse: ${err.message}`)));
  });
  return withTimeout(p, 5000, `sse via ${url}`).finally(() => req?.destroy());
}

function probeHttp(url) {
  let req;
  const p = new Promise((resolve, reject) => {
    req = http.get(url, { agent: false }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`http answered ${res.statusCode}`));
    });
    req.on('error', (err) => reject(new Error(`http: ${err.message}`)));
  });
  return withTimeout(p, 5000, `http via ${url}`).finally(() => req?.destroy());
}

