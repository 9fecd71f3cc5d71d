/**
 * Sends one request to an upstream, choosing nodes with the balancer. A node
 * that refuses the connection (or does not accept it within `timeout.connect`)
 * is marked failed and the next node is tried; the request body is only sent
 * once a connection is established, so a retry never loses or repeats bytes.
 */
import http from 'node:http';
import https from 'node:https';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { UpstreamNode } from '../config/types.js';
import { GatewayError } from '../core/errors.js';
import type { Upstream } from './upstream.js';
import { nodeLabel } from './balancer.js';

export interface AttemptHandlers {
  /**
   * The connection to `node` is established: send the body (or end the request).
   * `connectMs`: how long the TCP connect of a new connection took (TLS not
   * included); undefined when a pooled keep-alive connection was reused.
   */
  connected(req: http.ClientRequest, node: UpstreamNode, connectMs: number | undefined): void;
  response(res: http.IncomingMessage, req: http.ClientRequest, node: UpstreamNode): void;
  upgrade?(res: http.IncomingMessage, socket: Socket, head: Buffer, node: UpstreamNode): void;
  /** Every node failed, or the connection broke before a response: answer the client. */
  failed(err: GatewayError): void;
}

export interface AttemptOptions {
  method: string;
  path: string;
  headers: (node: UpstreamNode) => http.OutgoingHttpHeaders;
  /** Use the keep-alive pool (plain HTTP/SSE) or a fresh connection (upgrades). */
  pooled: boolean;
  /** The client request has a body (it cannot be replayed on a stale pooled connection). */
  hasBody?: boolean;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

export class UpstreamAttempt {
  readonly #up: Upstream;
  readonly #opts: AttemptOptions;
  readonly #h: AttemptHandlers;
  readonly #tried = new Set<number>();
  #req: http.ClientRequest | undefined;
  #done = false;
  #timedOut = false;
  #retriedStale = false;

  constructor(up: Upstream, opts: AttemptOptions, handlers: AttemptHandlers) {
    this.#up = up;
    this.#opts = opts;
    this.#h = handlers;
  }

  start(): this {
    this.#next(undefined);
    return this;
  }

  /** Abort whatever is in flight (client went away). */
  abort(): void {
    this.#done = true;
    this.#req?.destroy();
  }

  #next(lastError: GatewayError | undefined): void {
    if (this.#done) return;
    const pick = this.#up.balancer.pick(this.#tried);
    if (!pick) {
      this.#done = true;
      this.#h.failed(lastError ?? new GatewayError('UPSTREAM_UNAVAILABLE', { detail: 'no upstream node available' }));
      return;
    }
    const { node, index } = pick;
    this.#tried.add(index);
    const up = this.#up;
    const cfg = up.config;
    const reqOpts: https.RequestOptions = {
      host: node.host,
      port: node.port,
      method: this.#opts.method,
      path: this.#opts.path,
      headers: this.#opts.headers(node),
      agent: this.#opts.pooled ? up.agent : false,
      setHost: false,
      ...(up.secure && !this.#opts.pooled ? up.tlsOptions() : {}),
    };
    const req = (up.secure ? https : http).request(reqOpts);
    this.#req = req;
    let connected = false;
    let reused = false;
    let connectTimer: NodeJS.Timeout | undefined;
    let connectStart = 0;

    const onConnected = (): void => {
      connected = true;
      const connectMs = reused ? undefined : performance.now() - connectStart;
      if (connectTimer) clearTimeout(connectTimer);
      up.balancer.markOk(index);
      // `send` bounds the gaps while the request is written, `read` the wait for the response.
      req.setTimeout(cfg.timeout.send * 1000, () => {
        this.#timedOut = true;
        req.destroy();
      });
      req.once('finish', () => req.setTimeout(cfg.timeout.read * 1000));
      this.#h.connected(req, node, connectMs);
    };

    req.on('socket', (socket: Socket) => {
      reused = !socket.connecting;
      if (socket.connecting) {
        connectStart = performance.now();
        connectTimer = setTimeout(() => {
          connectTimer = undefined;
          req.destroy(Object.assign(new Error('connect timeout'), { code: 'ECONNTIMEOUT' }));
        }, cfg.timeout.connect * 1000);
        socket.once('connect', onConnected);
      } else {
        onConnected();
      }
    });
    req.on('response', (res) => {
      if (this.#done) return res.destroy();
      this.#done = true;
      this.#h.response(res, req, node);
    });
    if (this.#h.upgrade) {
      const onUpgrade = this.#h.upgrade;
      req.on('upgrade', (res, socket, head) => {
        if (this.#done) return socket.destroy();
        this.#done = true;
        onUpgrade(res, socket, head, node);
      });
    }
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (connectTimer) clearTimeout(connectTimer);
      if (this.#done) return;
      const label = nodeLabel(node);
      if (!connected) {
        up.balancer.markFailed(index);
        const timeout = err.code === 'ECONNTIMEOUT';
        this.#next(
          new GatewayError(timeout ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_UNAVAILABLE', {
            detail: `${timeout ? 'connect timeout' : err.code ?? err.message} to ${label}`,
          }),
        );
        return;
      }
      // A pooled connection the upstream closed while idle fails on first use. For an
      // idempotent request with no body that is safe to try once more, as NGINX does.
      if (reused && !this.#timedOut && !this.#retriedStale && IDEMPOTENT.has(this.#opts.method) && !this.#opts.hasBody) {
        this.#retriedStale = true;
        this.#tried.delete(index);
        this.#next(undefined);
        return;
      }
      this.#done = true;
      this.#h.failed(
        this.#timedOut
          ? new GatewayError('UPSTREAM_TIMEOUT', { detail: `timeout from ${label}` })
          : new GatewayError('UPSTREAM_UNAVAILABLE', { detail: `${err.code ?? err.message} from ${label}` }),
      );
    });
  }
}

/**
 * Open a raw TCP (or TLS) connection to a node of `up`, with the same failover
 * as UpstreamAttempt: a refusal or connect timeout marks the node failed and the
 * next node is tried. Used where a library (ws) speaks the protocol over our
 * socket. Returns an abort function.
 */
export function connectNode(
  up: Upstream,
  servername: (node: UpstreamNode) => string | undefined,
  done: (err: GatewayError | undefined, socket?: Socket, node?: UpstreamNode, connectMs?: number) => void,
): () => void {
  const tried = new Set<number>();
  let current: Socket | undefined;
  let finished = false;
  const next = (last: GatewayError | undefined): void => {
    if (finished) return;
    const pick = up.balancer.pick(tried);
    if (!pick) {
      finished = true;
      done(last ?? new GatewayError('UPSTREAM_UNAVAILABLE', { detail: 'no upstream node available' }));
      return;
    }
    const { node, index } = pick;
    tried.add(index);
    const label = nodeLabel(node);
    const sni = servername(node);
    const socket: Socket = up.secure
      ? tls.connect({ host: node.host, port: node.port, ...up.tlsOptions(), ...(sni ? { servername: sni } : {}) })
      : net.connect({ host: node.host, port: node.port });
    current = socket;
    let connected = false;
    const started = performance.now();
    let connectMs = 0;
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error('connect timeout'), { code: 'ECONNTIMEOUT' }));
    }, up.config.timeout.connect * 1000);
    socket.once('connect', () => {
      connected = true;
      connectMs = performance.now() - started;
      clearTimeout(timer);
      up.balancer.markOk(index);
    });
    socket.once(up.secure ? 'secureConnect' : 'connect', () => {
      if (finished) return socket.destroy();
      finished = true;
      socket.removeListener('error', onError);
      done(undefined, socket, node, connectMs);
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      if (finished) return;
      if (!connected) {
        up.balancer.markFailed(index);
        const timeout = err.code === 'ECONNTIMEOUT';
        next(new GatewayError(timeout ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_UNAVAILABLE', { detail: `${timeout ? 'connect timeout' : err.code ?? err.message} to ${label}` }));
        return;
      }
      // Connected, then failed (a TLS verification error): not the next node's problem.
      finished = true;
      done(new GatewayError('UPSTREAM_UNAVAILABLE', { detail: `${err.code ?? err.message} from ${label}` }));
    };
    socket.on('error', onError);
  };
  next(undefined);
  return () => {
    finished = true;
    current?.destroy();
  };
}
