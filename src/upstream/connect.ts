/**
 * Sends one request to an upstream, choosing nodes with the balancer. A node
 * that refuses the connection (or does not accept it within `timeout.connect`)
 * is marked failed and the next node is tried; the request body is only sent
 * once a connection is established, so a retry never loses or repeats bytes.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { UpstreamNode } from '../config/types.js';
import { GatewayError } from '../core/errors.js';
import type { Upstream } from './upstream.js';
import { nodeLabel } from './balancer.js';

export interface AttemptHandlers {
  /** The connection to `node` is established: send the body (or end the request). */
  connected(req: http.ClientRequest, node: UpstreamNode): void;
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
}

export class UpstreamAttempt {
  readonly #up: Upstream;
  readonly #opts: AttemptOptions;
  readonly #h: AttemptHandlers;
  readonly #tried = new Set<number>();
  #req: http.ClientRequest | undefined;
  #done = false;
  #timedOut = false;

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
    let connectTimer: NodeJS.Timeout | undefined;

    const onConnected = (): void => {
      connected = true;
      if (connectTimer) clearTimeout(connectTimer);
      up.balancer.markOk(index);
      // Until the response starts, the read timeout bounds the wait.
      req.setTimeout(cfg.timeout.read * 1000, () => {
        this.#timedOut = true;
        req.destroy();
      });
      this.#h.connected(req, node);
    };

    req.on('socket', (socket: Socket) => {
      if (socket.connecting) {
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
      this.#done = true;
      this.#h.failed(
        this.#timedOut
          ? new GatewayError('UPSTREAM_TIMEOUT', { detail: `read timeout from ${label}` })
          : new GatewayError('UPSTREAM_UNAVAILABLE', { detail: `${err.code ?? err.message} from ${label}` }),
      );
    });
  }
}
