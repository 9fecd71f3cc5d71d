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
import type { Config, ListenConfig, PluginInstance, RouteConfig } from '../config/types.js';
import { GatewayError, type ErrorCode } from '../core/errors.js';
import { channels, type FinishedEvent } from '../core/events.js';
import { createLogger, type Logger } from '../core/log.js';
import { Pipeline } from '../core/pipeline.js';
import type { Rejection } from '../core/plugin.js';
import { AccessLog } from '../observability/access-log.js';
import { normalizePath, splitTarget } from '../router/normalize.js';
import { Router } from '../router/router.js';
import { hasDuplicateHost } from '../transport/http/headers.js';
import { proxyHttp } from '../transport/http/proxy.js';
import { checkClientHandshake, isWebSocketUpgrade } from '../transport/ws/handshake.js';
import { proxyWebSocket } from '../transport/ws/proxy.js';
import { Upstream } from '../upstream/upstream.js';
import { ClientIpResolver } from './client-ip.js';
import { Context } from './context.js';
import { Exchange, type ForwardingInfo } from './exchange.js';
import { rejectSocket, sendError } from './respond.js';
import { LiveRegistry } from './live.js';

/** Everything derived from one config. Swapped whole on reload. */
export class Runtime {
  readonly config: Config;
  readonly router: Router;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly clientIp: ClientIpResolver;

  constructor(config: Config) {
    this.config = config;
    this.router = new Router(config.routes);
    const upstreams = new Map<string, Upstream>();
    const pipelines = new Map<string, Pipeline>();
    const consumerPlugins = new Map<string, readonly PluginInstance[]>();
    for (const c of config.consumers) if (c.instances.length > 0) consumerPlugins.set(c.username, c.instances);
    for (const route of config.routes) {
      const id = route.upstream.id;
      if (!upstreams.has(id)) upstreams.set(id, new Upstream(route.upstream));
      pipelines.set(route.id, Pipeline.forRoute(route, config.global_rules, consumerPlugins));
    }
    this.upstreams = upstreams;
    this.pipelines = pipelines;
    this.clientIp = new ClientIpResolver(config.gateway.trusted_proxies, config.gateway.real_ip_header);
  }

  upstreamFor(route: RouteConfig): Upstream {
    return this.upstreams.get(route.upstream.id)!;
  }

  /**
   * Release what the runtime holds: upstream pools, and whatever plugins opened in
   * init() (each instance's `dispose`, once; shared Redis connections close when
   * their last user lets go). Call it after every connection has ended.
   */
  async close(log?: Logger): Promise<void> {
    for (const up of this.upstreams.values()) up.close();
    const c = this.config;
    const seen = new Set<PluginInstance>();
    const all = [
      ...c.routes.flatMap((r) => r.instances),
      ...c.global_rules.flatMap((g) => g.instances),
      ...c.consumers.flatMap((u) => u.instances),
      ...c.consumer_groups.flatMap((g) => g.instances),
    ];
    const waits: Promise<void>[] = [];
    for (const inst of all) {
      if (seen.has(inst) || !inst.def.dispose) continue;
      seen.add(inst);
      const fail = (err: unknown): void => {
        log?.error({ plugin: inst.name, phase: 'dispose', err: err instanceof Error ? err.message : String(err) }, 'plugin failed to dispose');
      };
      try {
        const r = inst.def.dispose(inst.state);
        if (r) waits.push(r.catch(fail));
      } catch (err) {
        fail(err);
      }
    }
    await Promise.all(waits);
  }
}

export interface ListenerAddress {
  host: string;
  port: number;
  tls: boolean;
}

export interface GatewayOptions {
  /** Use this logger instead of one built from `gateway.log`. */
  logger?: Logger;
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
  readonly #accessLog: AccessLog;
  #runtime: Runtime;
  #closing: Promise<void> | undefined;

  private constructor(config: Config, opts: GatewayOptions) {
    this.log = opts.logger ?? createLogger(config.gateway.log);
    this.#runtime = new Runtime(config);
    this.#accessLog = new AccessLog(this, this.log, config.gateway.log.access_log);
  }

  /** Start listening on every configured address. Rejects if a port cannot be bound. */
  static async start(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(config, opts);
    try {
      for (const spec of config.gateway.listen) await gw.#listen(spec);
    } catch (err) {
      await gw.close(0);
      throw err;
    }
    for (const [id, p] of gw.#runtime.pipelines) {
      if (p.plugins.length > 0) gw.log.info({ route: id, plugins: p.describe(), mode: p.inspectsMessages ? 'frame' : 'tunnel' }, 'route plugins');
    }
    gw.log.info({ listen: gw.addresses() }, 'portcullis listening');
    return gw;
  }

  get config(): Config {
    return this.#runtime.config;
  }

  /** Live WebSocket and SSE connections. */
  get connections(): LiveRegistry {
    return this.#live;
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
      maxHeaderSize: g.max_header_size,
      headersTimeout: g.client_header_timeout * 1000,
      requestTimeout: Math.max(300_000, g.client_header_timeout * 1000),
      keepAliveTimeout: g.keepalive_timeout * 1000,
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
    return new Exchange(
      this,
      ctx,
      route,
      runtime.pipelines.get(route.id)!,
      runtime.upstreamFor(route),
      fwd,
      this.log,
      websocket ? 'websocket' : 'http',
    );
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
    x.onFinish = unpend;

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
   * max_pending_handshakes_per_ip in progress (nothing counted then).
   */
  #countPending(ip: string, socket: Socket): (() => void) | false {
    const cap = this.#runtime.config.gateway.max_pending_handshakes_per_ip;
    if (cap <= 0) return ignore;
    const n = this.#pending.get(ip) ?? 0;
    if (n >= cap) return false;
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
    await this.#runtime.close(this.log);
    this.#accessLog.close();
    this.log.info('portcullis stopped');
    await new Promise<void>((resolve) => this.log.flush(() => resolve()));
  }
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
