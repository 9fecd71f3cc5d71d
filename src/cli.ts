#!/usr/bin/env node
/**
 * The command line: argv -> load config -> start. The only place that calls
 * process.exit. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from './config/index.js';
import type { Config } from './config/types.js';
import { Gateway } from './server/gateway.js';
import { createRegistry } from './plugins/index.js';
import { serveClusterStores } from './store/cluster.js';
import { serveAdminRelay } from './admin/index.js';
import { auditOptions, runAudit } from './audit/command.js';
import { VERSION } from './version.js';

const HELP = `portcullis ${VERSION} - a security gateway for WebSocket and Server-Sent Events

Usage:
  portcullis start -c FILE       start the gateway with the config FILE
  portcullis validate -c FILE    check FILE; exit 0 when valid, 2 when not
  portcullis audit -c FILE       review FILE's security (docs/audit.md); exit 0 clean, 1 findings, 2 invalid
  portcullis --help | --version

Options:
  -c, --config FILE   the YAML config (APISIX standalone style); see docs/configuration.md
  --format FORMAT     audit: text (default), json or sarif
  --fail-on LEVEL     audit: exit 1 on findings at or above LEVEL: critical, high (default),
                      medium, low, info, or none
  --accept FILE       audit: accepted risks (rule, route, reason, expires), reported apart
                      and not counted for --fail-on
  -h, --help          this text
  -v, --version       the version

Signals: SIGTERM/SIGINT stop gracefully (WebSockets get 1001, SSE streams end).
SIGHUP re-reads the config file and applies it without dropping unaffected connections;
an invalid file is logged and the running config stays (docs/operations.md).
With gateway.workers > 1 the primary passes them to every worker and exits when all have.
`;

function usage(message: string): never {
  process.stderr.write(`portcullis: ${message}\n\nRun "portcullis --help" for usage.\n`);
  process.exit(2);
}

async function load(file: string, registry = createRegistry()): Promise<Config> {
  try {
    return await loadConfigFile(file, { registry });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`portcullis: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`portcullis: cannot load ${file}: ${(err as Error).message}\n`);
    process.exit(2);
  }
}

/** What SIGHUP does: nothing until the gateway (or the cluster primary) runs; its default would end the process. */
let onHup = (): void => {};

async function start(file: string): Promise<void> {
  process.on('SIGHUP', () => onHup());
  const registry = createRegistry();
  const config = await load(file, registry);
  const workers = config.gateway.workers === 'auto' ? availableParallelism() : config.gateway.workers;
  if (workers > 1 && cluster.isPrimary) return primary(workers);
  let gw: Gateway;
  try {
    gw = await Gateway.start(config, { registry });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied' : e.message;
    process.stderr.write(`portcullis: cannot listen: ${why}\n`);
    process.exit(1);
  }
  for (const a of gw.addresses()) {
    process.stderr.write(`portcullis ${VERSION} listening on ${a.tls ? 'https' : 'http'}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}\n`);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    // A worker's primary passes signals on, and a terminal's Ctrl-C reaches both: once is enough.
    if (stopping && cluster.isWorker) return;
    if (stopping) {
      process.stderr.write(`portcullis: ${signal} again, exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    process.stderr.write(`portcullis: ${signal}, shutting down\n`);
    gw.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`portcullis: shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The gateway logs the outcome too (one line per reload, or the refused file's problems).
  onHup = (): void => {
    if (stopping) return;
    process.stderr.write(`portcullis: SIGHUP, reloading ${file}\n`);
    gw.reloadFile().then(
      (r) => {
        const routes = `${r.routes.added.length} added, ${r.routes.removed.length} removed, ${r.routes.changed.length} changed`;
        process.stderr.write(`portcullis: reloaded (routes: ${routes}; closed: ${r.closed.route_changed} route changed, ${r.closed.revoked} revoked)\n`);
      },
      (err: unknown) => process.stderr.write(`portcullis: reload refused, the running config stays: ${(err as Error).message}\n`),
    );
  };
}

/**
 * `gateway.workers` > 1: fork the workers (each runs the gateway; cluster shares
 * the listening ports), answer their `local` store requests, replace a worker that
 * dies, and pass SIGTERM/SIGINT/SIGHUP on; exit when every worker has exited.
 */
function primary(n: number): void {
  const closeStores = serveClusterStores();
  // Admin calls reach every worker through here (and the workers share one revoke-channel id).
  serveAdminRelay();
  let stopping = false;
  let failed = false;
  const listened = new Set<number>();
  const live = new Map<number, Worker>();
  const fork = (): void => {
    const w = cluster.fork();
    live.set(w.id, w);
  };
  cluster.on('listening', (w) => listened.add(w.id));
  cluster.on('exit', (w, code, signal) => {
    live.delete(w.id);
    const ok = listened.delete(w.id);
    if (stopping) {
      // A worker still starting dies of the signal itself: that is a stop too.
      if (code !== null && code !== 0) failed = true;
      if (live.size === 0) {
        void closeStores().then(() => process.exit(failed ? 1 : 0));
      }
      return;
    }
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (!ok) {
      // It never served: its replacement would fail the same way.
      process.stderr.write(`portcullis: worker ${w.process.pid} exited (${how}) before it listened, stopping\n`);
      failed = true;
      stop('SIGTERM', false);
      return;
    }
    process.stderr.write(`portcullis: worker ${w.process.pid} died (${how}), starting another\n`);
    fork();
  });
  const stop = (signal: NodeJS.Signals, announce = true): void => {
    if (stopping && announce) {
      process.stderr.write(`portcullis: ${signal} again, exiting now\n`);
      for (const w of live.values()) w.process.kill('SIGKILL');
      process.exit(1);
    }
    if (stopping) return;
    stopping = true;
    if (announce) process.stderr.write(`portcullis: ${signal}, shutting down ${live.size} workers\n`);
    if (live.size === 0) void closeStores().then(() => process.exit(failed ? 1 : 0));
    for (const w of live.values()) w.process.kill(signal);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Each worker re-reads the file itself; one still starting reads the new file anyway.
  onHup = (): void => {
    if (stopping) return;
    process.stderr.write(`portcullis: SIGHUP, reloading ${listened.size} workers\n`);
    for (const w of live.values()) if (listened.has(w.id)) w.process.kill('SIGHUP');
  };
  for (let i = 0; i < n; i++) fork();
}

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        format: { type: 'string' },
        'fail-on': { type: 'string' },
        accept: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const [command, ...rest] = positionals;
  if (!command) usage('no command given');
  if (rest.length > 0) usage(`unexpected argument "${rest[0]}"`);
  if (command !== 'audit' && (values.format !== undefined || values['fail-on'] !== undefined || values.accept !== undefined)) {
    usage('--format, --fail-on and --accept are options of audit');
  }
  switch (command) {
    case 'start':
    case 'validate': {
      if (!values.config) usage(`${command} needs a config: -c FILE`);
      if (command === 'validate') {
        const config = await load(values.config);
        process.stdout.write(`${config.source}: valid (${config.routes.length} routes, ${config.upstreams.length} upstreams)\n`);
        return;
      }
      await start(values.config);
      return;
    }
    case 'audit': {
      if (!values.config) usage('audit needs a config: -c FILE');
      const opts = auditOptions(values.format, values['fail-on'], values.accept);
      if (typeof opts === 'string') usage(opts);
      const config = await load(values.config);
      let audited;
      try {
        audited = await runAudit(config, values.config, opts);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`portcullis: ${err.message.replace(/^invalid config/, 'invalid acceptance file')}\n`);
        process.exit(2);
      }
      const { output, failed } = audited;
      process.stdout.write(output);
      if (failed) process.exitCode = 1;
      return;
    }
    default:
      usage(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  // Last resort: never a stack trace for an operator, but say what failed.
  process.stderr.write(`portcullis: ${(err as Error).message ?? String(err)}\n`);
  process.exit(1);
});
