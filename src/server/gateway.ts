/**
 * The gateway process: listeners, the per-config runtime (router, pipelines,
 * upstreams), the entry points for HTTP requests and WebSocket upgrades, and
 * graceful shutdown.
 *
 *   request  -> checks (Host, path) -> route -> access phase -> transport/http/proxy
 *   upgrade  -> checks (Upgrade, Host, path, handshake) -> route -> access phase -> transport/ws/proxy
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Admin, type ProcessStatus, type RevokeFilter, revokeLocal } from '../admin/index.js';
import { fixedSettingsChanged } from '../config/compare.js';
import { ConfigError } from '../config/errors.js';
import { adoptInstances, configInstances, loadConfigFile } from '../config/load.js';
import type { Config, ListenConfig, RouteConfig } from '../config/types.js';
import { ERRORS, GatewayError, type ErrorCode } from '../core/errors.js';
import { channels, type FinishedEvent } from '../core/events.js';
import { createLogger, type Logger } from '../core/log.js';
import type { Rejection } from '../core/plugin.js';
import type { PluginRegistry } from '../core/registry.js';
import { AccessLog } from '../observability/access-log.js';
import { Metrics } from '../observability/metrics.js';
import { normalizePath, splitTarget } from '../router/normalize.js';
import { hasDuplicateHost } from '../transport/http/headers.js';
import { proxyHttp } from '../transport/http/proxy.js';
import { checkClientHandshake, isWebSocketUpgrade } from '../transport/ws/handshake.js';
import { proxyWebSocket } from '../transport/ws/proxy.js';
import { createRegistry } from '../plugins/index.js';
import { ConsumerBlocks, type BlockInfo } from './blocks.js';
import { Context } from './context.js';
import { Exchange, type ForwardingInfo, type LiveConnection } from './exchange.js';
import { rejectSocket, sendError } from './respond.js';
import { LiveRegistry } from './live.js';
import { ConfigDiff, ConfigWatcher, Holdings, disposeAll, type ReloadReport, type ReloadVerdict } from './reload.js';
import { Runtime } from './runtime.js';

export interface ListenerAddress {
  host: string;
  port: number;
  tls: boolean;
}

export interface GatewayOptions {
  /** Use this logger instead of one built from `gateway.log`. */
  logger?: Logger;
  /** The plugin registry reloads load the config file with (default: the built-in plugins). */
  registry?: PluginRegistry;
}

interface Listener {
  readonly server: http.Server;
  readonly spec: ListenConfig;
  readonly proto: 'http' | 'https';
  /** The bound port (known once listening), so requests need no getsockname. */
  port: number;
}

const kListener = Symbol('listener');
type TaggedServer = http.Server & { [kListener]?: Listener };

export class Gateway {
  readonly log: Logger;
  readonly #listeners: Listener[] = [];
  readonly #live = new LiveRegistry();
  /** WebSocket handshakes in progress (upgrade received, no 101 or refusal yet), by client address. */
  readonly #pending = new Map<string, number>();
  readonly #blocks = new ConsumerBlocks();
  readonly #accessLog: AccessLog;
  /** Prometheus metrics (undefined when metrics.enabled is false); the admin API serves render() at /metrics. */
  readonly metrics: Metrics | undefined;
  #runtime: Runtime;
  #closing: Promise<void> | undefined;
  /** Loads the config file again on reload; custom plugins register here. */
  readonly registry: PluginRegistry;
  /** Which runtimes hold which plugin instances and upstream pools (shared across reloads). */
  readonly #holdings = new Holdings();
  /** The runtime each route object belongs to: the config a connection started under. */
  readonly #runtimeOf = new WeakMap<RouteConfig, Runtime>();
  /** Runtimes swapped out by a reload whose exchanges have not all finished. */
  readonly #retired = new Set<Runtime>();
  /** Reloads run one at a time, in order. */
  #reloads: Promise<unknown> = Promise.resolve();
  /** Diffs for connections that join after a reload, against the runtime they were computed for. */
  #lateDiffs: { readonly now: Runtime; readonly diffs: Map<Config, ConfigDiff> } | undefined;
  #watcher: ConfigWatcher | undefined;
  /** The logger was made here (not given): its level follows gateway.log.level on reload. */
  readonly #ownLogger: boolean;
  /** The admin API, the revoke channel and the worker relay (src/admin/). */
  #admin: Admin | undefined;

  private constructor(config: Config, opts: GatewayOptions) {
    this.log = opts.logger ?? createLogger(config.gateway.log);
    this.#ownLogger = opts.logger === undefined;
    this.registry = opts.registry ?? createRegistry();
    this.#runtime = this.#hold(new Runtime(config));
    this.#live.onAdd = (conn) => this.#joined(conn);
    this.#accessLog = new AccessLog(this, this.log, config.gateway.log);
    this.metrics = config.metrics.enabled ? new Metrics(this, config.metrics, this.log) : undefined;
  }

  /** Start listening on every configured address. Rejects if a port cannot be bound. */
  static async start(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(config, opts);
    try {
      for (const spec of config.gateway.listen) await gw.#listen(spec);
      // The admin side first: with workers it attaches the relay a /metrics scrape collects through.
      gw.#admin = await Admin.start(gw, gw.#live);
      await gw.metrics?.start();
    } catch (err) {
      await gw.close(0);
      throw err;
    }
    for (const [id, p] of gw.#runtime.pipelines) {
      if (p.plugins.length > 0) gw.log.info({ route: id, plugins: p.describe(), mode: p.inspectsMessages ? 'frame' : 'tunnel' }, 'route plugins');
    }
    gw.log.info({ listen: gw.addresses() }, 'portcullis listening');
    await gw.#syncWatcher();
    return gw;
  }

  // ---- reload -------------------------------------------------------------------

  /**
   * Swap in `next` (loaded by loadConfigFile/loadConfigText, ideally with
   * `previous: gw.config`) atomically: new requests and handshakes use it at once;
   * those in flight finish under the config they started with. Live connections of
   * a removed or changed route, or of changed global rules or consumer overrides,
   * are closed with 1012; those of a consumer removed or whose credential changed
   * with 1008 `revoked`; every other connection keeps running untouched, and plugin
   * instances equal to the running ones are kept with their state (limit counters).
   * Resolves once swapped. Throws ConfigError, with nothing changed, when `next`
   * changes a setting fixed for the life of the process (gateway.listen, workers,
   * admin, metrics, log destination). Reloads run one at a time.
   */
  reload(next: Config): Promise<ReloadReport> {
    return this.#serial(() => this.#apply(next));
  }

  /**
   * Re-read the running config's file (SIGHUP, watch_config, the admin API) with
   * this gateway's registry and apply it as reload() does. Throws ConfigError, with
   * nothing changed, when the file is invalid; the error is logged too.
   */
  reloadFile(): Promise<ReloadReport> {
    return this.#serial(async () => {
      const source = this.#runtime.config.source;
      if (source === '<inline>') {
        throw new ConfigError(source, [{ file: source, path: '', message: 'the running config was not loaded from a file: there is nothing to re-read' }]);
      }
      const next = await loadConfigFile(source, { registry: this.registry, previous: this.#runtime.config });
      return this.#apply(next);
    });
  }

  #serial(run: () => Promise<ReloadReport>): Promise<ReloadReport> {
    const p = this.#reloads.then(run).catch((err: unknown) => {
      this.#reloadFailed(err);
      throw err;
    });
    this.#reloads = p.catch(ignore);
    return p;
  }

  #reloadFailed(err: unknown): void {
    if (err instanceof ConfigError) {
      this.log.error({ file: err.file, issues: err.format().split('\n') }, 'config reload refused; the running config stays');
    } else {
      this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'config reload failed; the running config stays');
    }
  }

  async #apply(next: Config): Promise<ReloadReport> {
    if (this.#closing) throw new Error('the gateway is shutting down');
    const prev = this.#runtime;
    const fixed = fixedSettingsChanged(prev.config, next);
    const stale = [...configInstances(next)].some((i) => this.#holdings.disposed(i));
    if (fixed.length > 0 || stale) {
      // Whatever init() opened for `next` and no running config uses is let go.
      await disposeAll([...configInstances(next)].filter((i) => !this.#holdings.holds(i) && !this.#holdings.disposed(i)), this.log);
      if (stale) throw new Error('the config was loaded against a config that is no longer running: load it again');
      throw new ConfigError(next.source, fixed.map((f) => ({ file: next.source, path: f.path, message: f.message })));
    }
    // A config loaded without `previous`: keep the running instances it equals (their state), drop its fresh copies.
    if (next !== prev.config) void disposeAll(adoptInstances(next, prev.config), this.log);

    // The swap: synchronous from here to the report, so no request sees half of it.
    const runtime = this.#hold(new Runtime(next, prev));
    this.#runtime = runtime;
    this.#applySettings(next);
    this.#retired.add(prev);
    prev.whenIdle(() => {
      this.#retired.delete(prev);
      void this.#holdings.release(prev, this.log);
    });
    const diffs = new Map<Config, ConfigDiff>();
    const diff = new ConfigDiff(prev.config, next);
    diffs.set(prev.config, diff);
    const closed = { route_changed: 0, revoked: 0 };
    for (const conn of [...this.#live]) {
      const v = this.#verdict(conn, runtime, diffs);
      if (v === undefined) continue;
      if (v === 'revoked') closed.revoked++;
      else closed.route_changed++;
      closeFor(conn, v);
    }
    const report: ReloadReport = { routes: diff.routes, consumers: diff.consumers, closed };
    this.log.info({ reload: report, ...(diff.globalRulesChanged ? { global_rules_changed: true } : {}) }, 'config reloaded');
    void this.#syncWatcher();
    return report;
  }

  #hold(runtime: Runtime): Runtime {
    this.#holdings.hold(runtime);
    for (const r of runtime.config.routes) this.#runtimeOf.set(r, runtime);
    return runtime;
  }

  /** What a reload to `now` means for a connection that started under an earlier runtime. */
  #verdict(conn: LiveConnection, now: Runtime, diffs: Map<Config, ConfigDiff>): ReloadVerdict | undefined {
    const x = conn.exchange;
    const from = this.#runtimeOf.get(x.route);
    if (!from || from === now) return undefined;
    let d = diffs.get(from.config);
    if (!d) {
      d = new ConfigDiff(from.config, now.config);
      diffs.set(from.config, d);
    }
    return d.verdict(x.route.id, x.ctx.consumer?.username);
  }

  /**
   * A connection joined (101 sent, SSE stream started). One whose handshake began
   * before a reload ran under the old config: closed now if that reload would have
   * closed it, so a revoked consumer cannot slip in while its handshake is in flight.
   */
  #joined(conn: LiveConnection): void {
    // A handshake that passed its access phase just before its consumer was blocked.
    const consumer = conn.exchange.ctx.consumer;
    if (consumer && this.#blocks.remaining(consumer.username) > 0) {
      setImmediate(() => {
        if (this.#live.has(conn)) closeFor(conn, 'revoked');
      });
      return;
    }
    const now = this.#runtime;
    if (this.#runtimeOf.get(conn.exchange.route) === now) return;
    if (this.#lateDiffs?.now !== now) this.#lateDiffs = { now, diffs: new Map() };
    const v = this.#verdict(conn, now, this.#lateDiffs.diffs);
    if (v === undefined) return;
    this.log.info({ request_id: conn.exchange.ctx.id, route: conn.exchange.route.id, reason: v }, 'connection opened under a replaced config: closed');
    setImmediate(() => {
      if (this.#live.has(conn)) closeFor(conn, v);
    });
  }

  /** Settings that apply to what comes next: listener timeouts and header size, log level, the admin key. */
  #applySettings(next: Config): void {
    const g = next.gateway;
    for (const l of this.#listeners) Object.assign(l.server, liveServerOptions(g));
    if (this.#ownLogger) this.log.level = g.log.level;
    this.#admin?.setKey(next.admin?.key);
  }

  /** Start or stop watching the config file, as gateway.watch_config says. */
  async #syncWatcher(): Promise<void> {
    const c = this.#runtime.config;
    const want = c.gateway.watch_config && c.source !== '<inline>' && !this.#closing;
    if (want && !this.#watcher) {
      this.#watcher = new ConfigWatcher(c.source, () => void this.reloadFile().catch(ignore), this.log);
      await this.#watcher.start();
    } else if (!want && this.#watcher) {
      this.#watcher.close();
      this.#watcher = undefined;
    }
  }

  get config(): Config {
    return this.#runtime.config;
  }

  /** Live WebSocket and SSE connections. */
  get connections(): LiveRegistry {
    return this.#live;
  }

  /** Where the admin API listens (undefined without `admin`). */
  adminAddress(): ListenerAddress | undefined {
    return this.#admin?.address();
  }

  /** This process's state for the admin API: uptime, connection counts, Redis store health. */
  status(): ProcessStatus {
    return this.#admin?.status() ?? Admin.processStatus(this);
  }

  /**
   * Close this process's live connections matching `filter` now (WebSocket 1008
   * `revoked`, SSE stream ended, upstream side closed); returns how many. The admin
   * API also relays it to the other workers and broadcasts it over Redis.
   */
  revoke(filter: RevokeFilter): number {
    return revokeLocal(this.#live, filter);
  }

  /**
   * Refuse `consumer` for `seconds` (403 REVOKED with Retry-After on every request
   * and handshake it authenticates) in this process; false when the block list is
   * full. The admin API closes its connections, relays and broadcasts the block.
   */
  block(consumer: string, seconds: number): boolean {
    return this.#blocks.block(consumer, seconds);
  }

  /** Block `consumer` until `until` (ms since the epoch): a block learnt from Redis at start. */
  blockUntil(consumer: string, until: number): boolean {
    return this.#blocks.blockUntil(consumer, until);
  }

  /** Lift a block in this process; true when there was one. */
  unblock(consumer: string): boolean {
    return this.#blocks.unblock(consumer);
  }

  /** The blocks in force in this process. */
  blocks(): BlockInfo[] {
    return this.#blocks.list();
  }

  addresses(): ListenerAddress[] {
    return this.#listeners.map((l) => {
      const a = l.server.address() as AddressInfo;
      return { host: a.address, port: a.port, tls: l.proto === 'https' };
    });
  }

  #listen(spec: ListenConfig): Promise<void> {
    const g = this.#runtime.config.gateway;
    const common: http.ServerOptions = {
      ...liveServerOptions(g),
      connectionsCheckingInterval: Math.min(1000, g.client_header_timeout * 1000),
      insecureHTTPParser: false,
      requireHostHeader: true,
      noDelay: true,
    };
    const server: TaggedServer = spec.tls
      ? https.createServer({ ...common, cert: spec.tls.certPem, key: spec.tls.keyPem })
      : http.createServer(common);
    const listener: Listener = { server, spec, proto: spec.tls ? 'https' : 'http', port: spec.port };
    server[kListener] = listener;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(listener, req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.#onUpgrade(listener, req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#onClientError(err, socket));
    this.#listeners.push(listener);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: spec.host, port: spec.port }, () => {
        server.off('error', reject);
        listener.port = (server.address() as AddressInfo).port;
        server.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
        resolve();
      });
    });
  }

  #forwarding(listener: Listener, req: IncomingMessage): { fwd: ForwardingInfo; clientIp: string } {
    const peer = normalizePeer(req.socket.remoteAddress);
    const resolver = this.#runtime.clientIp;
    const { clientIp, forwardedFor } = resolver.resolve(peer, req.headers);
    return {
      clientIp,
      fwd: {
        peer,
        peerTrusted: forwardedFor.length > 0 || resolver.isTrusted(peer),
        forwardedFor,
        proto: listener.proto,
        port: listener.port,
      },
    };
  }

  /** Shared by both entry points: Host, path, route. Throws GatewayError. */
  #route(req: IncomingMessage, websocket: boolean, listener: Listener, id: string, startedAt: number): Exchange {
    if (hasDuplicateHost(req.rawHeaders)) throw new GatewayError('DUPLICATE_HOST');
    const target = splitTarget(req.url ?? '');
    const norm = normalizePath(target.path);
    if (!norm.ok) throw new GatewayError('BAD_PATH', { detail: norm.reason });
    const runtime = this.#runtime;
    const method = req.method ?? 'GET';
    const match = runtime.router.match(method, req.headers.host, norm.path);
    if (!match) throw new GatewayError('ROUTE_NOT_FOUND', { detail: `${method} ${norm.path}` });
    const route = match.route;
    if (websocket && !route.enable_websocket) {
      throw new GatewayError('WS_NOT_ENABLED', { detail: `route ${route.id}` });
    }
    const { fwd, clientIp } = this.#forwarding(listener, req);
    const ctx = new Context({
      id,
      routeId: route.id,
      method,
      path: norm.path,
      query: target.query,
      host: req.headers.host ?? '',
      scheme: fwd.proto,
      headers: req.headers,
      clientIp,
      websocket,
      startedAt,
      params: match.params,
      log: this.log,
    });
    const x = new Exchange(
      this,
      ctx,
      route,
      runtime.pipelines.get(route.id)!,
      runtime.upstreamFor(route),
      fwd,
      this.log,
      websocket ? 'websocket' : 'http',
    );
    x.blocks = this.#blocks;
    return x;
  }

  /**
   * An exchange that will finish (routed, handshake well-formed) keeps the runtime it
   * was routed by (pipeline, upstream pool) until then, whatever reloads happen meanwhile.
   */
  #track(x: Exchange): void {
    const runtime = this.#runtimeOf.get(x.route)!;
    runtime.enter();
    x.onFinish = runtime.leave;
  }

  #onRequest(listener: Listener, req: IncomingMessage, res: ServerResponse): void {
    const startedAt = Date.now();
    const id = requestId(req);
    if (this.#closing) res.setHeader('connection', 'close');
    let x: Exchange;
    try {
      x = this.#route(req, false, listener, id, startedAt);
    } catch (err) {
      const e = asGatewayError(err);
      sendError(res, e, id);
      this.#early(req, listener, id, startedAt, e, 'http');
      return;
    }
    this.#track(x);
    const verdict = x.runAccess();
    if (verdict === undefined) return proxyHttp(x, req, res, this.#live);
    if (!(verdict instanceof Promise)) return this.#rejectHttp(x, res, verdict);
    verdict.then(
      (v) => {
        if (res.destroyed) return x.clientLeft('client left during the access phase');
        if (v) this.#rejectHttp(x, res, v);
        else proxyHttp(x, req, res, this.#live);
      },
      (err: unknown) => this.#rejectHttp(x, res, { reject: 'PLUGIN_ERROR', detail: String(err) }),
    );
  }

  #rejectHttp(x: Exchange, res: ServerResponse, r: Rejection): void {
    const err = fromRejection(r);
    sendError(res, err, x.ctx.id, r.body);
    this.#finishRejected(x, err);
  }

  #finishRejected(x: Exchange, err: GatewayError): void {
    x.summary.status = err.status;
    x.summary.error = err.code;
    x.summary.closedBy = 'gateway';
    x.finish(err.detail);
  }

  #onUpgrade(listener: Listener, req: IncomingMessage, socket: Socket, head: Buffer): void {
    const startedAt = Date.now();
    const id = requestId(req);
    socket.on('error', ignore);
    let x: Exchange;
    let key: string;
    try {
      if (this.#closing) throw new GatewayError('SHUTTING_DOWN');
      if (!isWebSocketUpgrade(req.headers.upgrade)) {
        throw new GatewayError('UPGRADE_NOT_SUPPORTED', { detail: `Upgrade: ${String(req.headers.upgrade).slice(0, 64)}` });
      }
      // A client must wait for the 101 before sending frames (RFC 6455 4.1).
      if (head.length > 0) throw new GatewayError('WS_EARLY_DATA', { detail: `${head.length} bytes with the handshake` });
      x = this.#route(req, true, listener, id, startedAt);
      key = checkClientHandshake(req);
    } catch (err) {
      const e = asGatewayError(err);
      rejectSocket(socket, e, id);
      this.#early(req, listener, id, startedAt, e, 'websocket');
      return;
    }
    this.#track(x);

    // gateway.max_pending_handshakes_per_ip: counted from here until the 101 or the refusal
    // (release() below, the exchange finishing, or the socket closing, whichever comes first; exactly once).
    const unpend = this.#countPending(x.ctx.clientIp, socket);
    if (unpend === false) {
      const e = new GatewayError('TOO_MANY_PENDING_HANDSHAKES', {
        headers: { 'retry-after': '1' },
        detail: `${this.#runtime.config.gateway.max_pending_handshakes_per_ip} handshakes from this address already in progress`,
      });
      rejectSocket(socket, e, id);
      this.#finishRejected(x, e);
      return;
    }
    // Built outside this scope: a closure made here would keep the request and this
    // handshake's state alive for the connection's whole life.
    x.onFinish = inTurn(unpend, x.onFinish);

    // Until the upstream accepted, nothing the client sends is forwarded: a byte now is a protocol violation.
    let released = false;
    const onEarly = (): void => {
      if (released || x.finished) return;
      released = true;
      unpend();
      socket.pause();
      const e = new GatewayError('WS_EARLY_DATA', { detail: 'data before the 101' });
      rejectSocket(socket, e, id);
      this.#finishRejected(x, e);
    };
    socket.on('data', onEarly);
    // The HTTP server's sockets allow half-open connections, so a client that gives up
    // (FIN) only shows as 'end': before the 101 that is the client leaving. Closing the
    // socket lets every stage of the handshake see it ('close'), abort the upstream
    // connection and uncount the handshake now rather than at handshake_timeout.
    const onEnd = (): void => {
      if (!released && !x.finished) socket.destroy();
    };
    socket.on('end', onEnd);
    const timer = setTimeout(() => {
      if (released || x.finished) return;
      released = true;
      unpend();
      socket.off('data', onEarly);
      const e = new GatewayError('HANDSHAKE_TIMEOUT');
      this.#finishRejected(x, e);
      rejectSocket(socket, e, id);
    }, this.#runtime.config.gateway.handshake_timeout * 1000);
    timer.unref();
    const release = (): void => {
      released = true;
      unpend();
      clearTimeout(timer);
      socket.off('data', onEarly);
      socket.off('end', onEnd);
    };

    const go = (v: Rejection | undefined): void => {
      if (x.finished) return;
      if (socket.destroyed) {
        clearTimeout(timer);
        return x.clientLeft('client left during the access phase');
      }
      if (v) {
        release();
        const e = fromRejection(v);
        rejectSocket(socket, e, id, v.body);
        this.#finishRejected(x, e);
        return;
      }
      proxyWebSocket({ x, req, socket, key, live: this.#live, release });
    };
    const verdict = x.runAccess();
    if (verdict instanceof Promise) {
      verdict.then(go, (err: unknown) => go({ reject: 'PLUGIN_ERROR', detail: String(err) }));
    } else {
      go(verdict);
    }
  }

  /**
   * Count a handshake in progress for `ip`. Returns the function that uncounts it
   * (idempotent; also run when the socket closes), or false when `ip` already has
   * max_pending_handshakes_per_ip in progress (nothing counted then). Counted with
   * the cap off (0) too: the admin API's status reports the count.
   */
  #countPending(ip: string, socket: Socket): (() => void) | false {
    const cap = this.#runtime.config.gateway.max_pending_handshakes_per_ip;
    const n = this.#pending.get(ip) ?? 0;
    if (cap > 0 && n >= cap) return false;
    this.#pending.set(ip, n + 1);
    let counted = true;
    const unpend = (): void => {
      if (!counted) return;
      counted = false;
      socket.off('close', unpend);
      const m = (this.#pending.get(ip) ?? 1) - 1;
      if (m <= 0) this.#pending.delete(ip);
      else this.#pending.set(ip, m);
    };
    socket.once('close', unpend);
    return unpend;
  }

  /** WebSocket handshakes in progress: of one client address, or of all. */
  pendingHandshakes(ip?: string): number {
    if (ip !== undefined) return this.#pending.get(ip) ?? 0;
    let n = 0;
    for (const v of this.#pending.values()) n += v;
    return n;
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const code: ErrorCode =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? 'HEADERS_TOO_LARGE'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? 'REQUEST_TIMEOUT'
          : 'BAD_REQUEST';
    this.log.debug({ err: err.code ?? err.message, error: code }, 'client error');
    rejectSocket(socket, new GatewayError(code), undefined);
  }

  /** Publish a request that ended before it had a route (bad path, no route, bad handshake). */
  #early(req: IncomingMessage, listener: Listener, id: string, startedAt: number, err: GatewayError, protocol: 'http' | 'websocket'): void {
    if (!channels.finished.hasSubscribers) return;
    const ev: FinishedEvent = {
      source: this,
      ctx: undefined,
      summary: {
        protocol,
        status: err.status,
        durationMs: Date.now() - startedAt,
        bytesIn: 0,
        bytesOut: 0,
        messagesIn: null,
        messagesOut: null,
        closedBy: 'gateway',
        error: err.code,
      },
      method: req.method ?? '',
      path: splitTarget(req.url ?? '').path.slice(0, 256),
      routeId: undefined,
      clientIp: this.#forwarding(listener, req).clientIp,
      requestId: id,
      ...(err.detail ? { detail: err.detail } : {}),
    };
    channels.finished.publish(ev);
  }

  /**
   * Graceful shutdown: stop accepting, close WebSockets with 1001 and end SSE
   * streams, let in-flight requests finish, cut whatever is left after `graceMs`.
   */
  close(graceMs = this.#runtime.config.gateway.shutdown_timeout * 1000): Promise<void> {
    this.#closing ??= this.#close(graceMs);
    return this.#closing;
  }

  async #close(graceMs: number): Promise<void> {
    const closed = this.#listeners.map(
      (l) => new Promise<void>((resolve) => (l.server.listening ? l.server.close(() => resolve()) : resolve())),
    );
    for (const l of this.#listeners) l.server.closeIdleConnections();
    this.#watcher?.close();
    const adminClosed = this.#admin?.closeListener();
    for (const conn of [...this.#live]) conn.shutdown(1001, 'going away');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([Promise.all(closed), deadline]);
    clearTimeout(timer);
    for (const conn of [...this.#live]) conn.destroy();
    for (const l of this.#listeners) l.server.closeAllConnections();
    await Promise.all(closed);
    // Let the connections just cut finish (their log phases give back limit slots)
    // before plugins dispose of their stores.
    const until = Date.now() + 1000;
    while (this.#live.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setImmediate(r));
    await adminClosed;
    await this.#admin?.close();
    // The running runtime and any a reload replaced whose connections were still open.
    for (const rt of [this.#runtime, ...this.#retired]) await this.#holdings.release(rt, this.log);
    this.#retired.clear();
    await this.#accessLog.close();
    await this.metrics?.close();
    this.log.info('portcullis stopped');
    await new Promise<void>((resolve) => this.log.flush(() => resolve()));
  }
}

/** The listener settings that can follow a reload (Node reads them per connection). */
function liveServerOptions(g: Config['gateway']): Pick<http.ServerOptions, 'maxHeaderSize' | 'headersTimeout' | 'requestTimeout' | 'keepAliveTimeout'> {
  return {
    maxHeaderSize: g.max_header_size,
    headersTimeout: g.client_header_timeout * 1000,
    requestTimeout: Math.max(300_000, g.client_header_timeout * 1000),
    keepAliveTimeout: g.keepalive_timeout * 1000,
  };
}

/** Close a connection a reload affects: 1008 `revoked`, or 1012 with the reason. */
function closeFor(conn: LiveConnection, v: ReloadVerdict): void {
  if (v === 'revoked') conn.close(ERRORS.REVOKED.close, 'revoked', 'REVOKED');
  else conn.close(ERRORS.ROUTE_CHANGED.close, v, 'ROUTE_CHANGED');
}

function requestId(_req: IncomingMessage): string {
  return randomUUID();
}

function normalizePeer(addr: string | undefined): string {
  if (!addr) return '0.0.0.0';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

function fromRejection(r: Rejection): GatewayError {
  return new GatewayError(r.reject, {
    ...(r.status !== undefined ? { status: r.status } : {}),
    ...(r.message !== undefined ? { message: r.message } : {}),
    ...(r.headers !== undefined ? { headers: r.headers } : {}),
    ...(r.detail !== undefined ? { detail: r.detail } : {}),
  });
}

function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('INTERNAL_ERROR', { detail: err instanceof Error ? err.message : String(err) });
}

function ignore(): void {}

/** A function that runs `first`, then `then` when there is one; it holds nothing else. */
function inTurn(first: () => void, then: (() => void) | undefined): () => void {
  return then === undefined
    ? first
    : () => {
        first();
        then();
      };
}
