/**
 * The admin listener: its own node:http (or https) server, separate from the
 * proxy's listeners and their timeouts, so it keeps answering while the proxy is
 * busy. Every call is authenticated first (X-API-KEY, auth.ts), then routed
 * (unknown path 404, wrong method 405 with Allow), its body read within the
 * endpoint's bound (413), and answered with JSON. Errors are catalogue codes in
 * the usual body, `{"error":{"code":"...","message":"..."}}`; never a stack trace.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenConfig } from '../config/types.js';
import { ERRORS, GatewayError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { KeyCheck } from './auth.js';
import { ROUTES, type AdminAnswer, type AdminContext, type AdminRequest } from './handlers.js';

export interface AdminServerOptions {
  listen: ListenConfig;
  /** The key every call must send (undefined: none; only allowed on loopback). A reload may replace it (setKey). */
  key: string | undefined;
  log: Logger;
  context: AdminContext;
}

/** Calls that change the config run one at a time. */
const SERIAL = new Set(['PUT /admin/config', 'POST /admin/reload']);
/** Connections the admin listener accepts at once. */
const MAX_CONNECTIONS = 256;
/** How long a refused oversized body may keep arriving before the socket is cut. */
const DISCARD_MS = 5000;

export class AdminServer {
  readonly #server: http.Server;
  readonly #opts: AdminServerOptions;
  readonly #log: Logger;
  #check: KeyCheck;
  #serial: Promise<unknown> = Promise.resolve();

  /** Rotate the key: calls from now on must send the new one (a reload or PUT /admin/config). */
  setKey(key: string | undefined): void {
    this.#check = new KeyCheck(key);
  }

  constructor(opts: AdminServerOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#check = new KeyCheck(opts.key);
    const common: http.ServerOptions = {
      maxHeaderSize: 16 * 1024,
      headersTimeout: 10_000,
      requestTimeout: 60_000,
      keepAliveTimeout: 5_000,
      connectionsCheckingInterval: 1_000,
      insecureHTTPParser: false,
      noDelay: true,
    };
    const tls = opts.listen.tls;
    this.#server = tls ? https.createServer({ ...common, cert: tls.certPem, key: tls.keyPem }) : http.createServer(common);
    this.#server.maxConnections = MAX_CONNECTIONS;
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    this.#server.on('upgrade', (_req: IncomingMessage, socket: Socket) => rejectRaw(socket, 'ADMIN_BAD_REQUEST'));
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (err.code === 'ECONNRESET' || !socket.writable) socket.destroy();
      else rejectRaw(socket, err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST');
    });
  }

  listen(): Promise<void> {
    const { host, port } = this.#opts.listen;
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', reject);
        this.#server.on('error', (err) => this.#log.error({ err: err.message }, 'admin listener error'));
        resolve();
      });
    });
  }

  address(): { host: string; port: number; tls: boolean } | undefined {
    const a = this.#server.address() as AddressInfo | null;
    return a ? { host: a.address, port: a.port, tls: this.#opts.listen.tls !== undefined } : undefined;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
      // Admin calls are short: nothing worth waiting for.
      setTimeout(() => this.#server.closeAllConnections(), 1000).unref();
    });
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      return this.#fail(req, res, new GatewayError('ADMIN_BAD_REQUEST', { message: 'Bad request target' }));
    }
    const auth = this.#check.check(req.headers['x-api-key']);
    if (!auth.ok) {
      this.#log.warn(
        { admin: true, method, path: url.pathname.slice(0, 128), ip: req.socket.remoteAddress, error: 'ADMIN_UNAUTHORIZED', reason: auth.reason },
        'admin call refused',
      );
      return this.#fail(req, res, new GatewayError('ADMIN_UNAUTHORIZED', { headers: { 'www-authenticate': 'X-API-KEY' } }));
    }
    const methods = ROUTES.get(url.pathname);
    if (!methods) return this.#fail(req, res, new GatewayError('ADMIN_NOT_FOUND'));
    const route = Object.hasOwn(methods, method) ? methods[method] : undefined;
    if (!route) {
      return this.#fail(req, res, new GatewayError('ADMIN_METHOD_NOT_ALLOWED', { headers: { allow: Object.keys(methods).join(', ') } }));
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > route.bodyLimit) return this.#tooLarge(req, res, route.bodyLimit);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > route.bodyLimit) {
        over = true;
        req.off('data', onData);
        this.#tooLarge(req, res, route.bodyLimit);
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (over || res.destroyed) return;
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      if (body.length > 0 && !Buffer.from(text, 'utf8').equals(body)) {
        return this.#fail(req, res, new GatewayError('ADMIN_BAD_REQUEST', { message: 'The body is not UTF-8 text' }));
      }
      const areq: AdminRequest = { method, url, body: text, contentType: req.headers['content-type'] };
      const run = (): Promise<AdminAnswer> => route.handler(this.#opts.context, areq);
      let answer: Promise<AdminAnswer>;
      if (SERIAL.has(`${method} ${url.pathname}`)) {
        answer = this.#serial.then(run, run);
        this.#serial = answer.catch(() => undefined);
      } else {
        answer = run();
      }
      answer.then(
        (a) => this.#send(res, a),
        (err: unknown) => this.#fail(req, res, err),
      );
    });
  }

  #tooLarge(req: IncomingMessage, res: ServerResponse, limit: number): void {
    res.setHeader('connection', 'close');
    this.#fail(req, res, new GatewayError('ADMIN_BODY_TOO_LARGE', { detail: `over ${limit} bytes` }));
    // Read and drop the rest for a while, so the client sees the answer rather than a reset.
    req.resume();
    setTimeout(() => req.socket.destroy(), DISCARD_MS).unref();
  }

  #send(res: ServerResponse, a: AdminAnswer): void {
    if (res.headersSent || res.destroyed) return;
    if (a.raw) {
      res.writeHead(a.status, { 'content-type': a.raw.contentType, 'cache-control': 'no-store' });
      res.end(a.raw.body);
      return;
    }
    const body = `${JSON.stringify(a.json ?? {})}\n`;
    res.writeHead(a.status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    res.end(body);
  }

  #fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const e = err instanceof GatewayError ? err : new GatewayError('INTERNAL_ERROR', { detail: err instanceof Error ? err.message : String(err) });
    if (e.code === 'INTERNAL_ERROR' || e.code === 'ADMIN_UNAVAILABLE') {
      this.#log.error({ admin: true, method: req.method, path: (req.url ?? '').split('?')[0]!.slice(0, 128), error: e.code, detail: e.detail }, 'admin call failed');
    }
    if (res.headersSent || res.destroyed) return;
    for (const [k, v] of Object.entries(e.headers ?? {})) res.setHeader(k, v);
    // A body not read (refused before reading it) is not waited for: the connection ends.
    if (!req.complete) res.setHeader('connection', 'close');
    this.#send(res, { status: e.status, json: { error: { code: e.code, message: e.message } } });
  }
}

/** Answer on a raw socket (no response object: parse errors, upgrades) and close it. */
function rejectRaw(socket: Duplex, code: ErrorCode): void {
  const spec = ERRORS[code];
  const body = JSON.stringify({ error: { code, message: spec.message } });
  const reason = http.STATUS_CODES[spec.status] ?? 'Error';
  socket.end(
    `HTTP/1.1 ${spec.status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}
