/**
 * Joins an accepted client handshake to an upstream WebSocket.
 *
 * The client's handshake was checked and passed the access phase; its socket is
 * held with every byte it sends discarded (never forwarded). The handshake is
 * forwarded to an upstream node; only a `101` with a correct
 * `Sec-WebSocket-Accept` joins the two. Any other answer is relayed to the
 * client and both connections are closed, so nothing the client sent after the
 * handshake (a smuggled request) ever reaches the upstream.
 *
 * Tunnel mode (no message plugin on the route): the 101 is relayed and the
 * sockets are piped. Frame mode: `ws` terminates both sides and messages pass
 * through the pipeline.
 */
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocket, WebSocketServer, type ClientOptions, type PerMessageDeflateOptions } from 'ws';
import type { WebSocketSettings } from '../../config/types.js';
import { GatewayError } from '../../core/errors.js';
import type { EffectiveFrameLimits } from '../../core/pipeline.js';
import type { Exchange } from '../../server/exchange.js';
import { rejectSocket } from '../../server/respond.js';
import { connectNode } from '../../upstream/connect.js';
import { nodeLabel } from '../../upstream/balancer.js';
import { buildUpstreamHeaders, cleanResponseHeaders } from '../http/headers.js';
import type { LiveRegistry } from '../http/sse.js';
import { FrameBridge } from './frame.js';
import { hardenReceiver } from './harden.js';
import { checkUpstreamHandshake, offeredProtocols } from './handshake.js';
import { Tunnel } from './tunnel.js';
import { BodyDecoder } from '../http/body.js';
import { buildRequestHead, HeadParseError, readResponseHead, type UpstreamResponseHead } from '../http/raw.js';

export interface WsJob {
  readonly x: Exchange;
  readonly req: IncomingMessage;
  readonly socket: Socket;
  readonly key: string;
  readonly live: LiveRegistry;
  /** Called when the client's socket is handed on: stop discarding its bytes. */
  readonly release: () => void;
}

export function proxyWebSocket(job: WsJob): void {
  if (job.x.pipeline.inspectsMessages) frameMode(job);
  else tunnelMode(job);
}

function upstreamHeaders(job: WsJob, host: string | undefined, keepExtensions: boolean): OutgoingHttpHeaders {
  const { x, req } = job;
  const set = x.ctx.upstreamSet();
  // Subprotocols that carry credentials are never offered upstream.
  if (x.ctx.droppedProtocols()) {
    const kept = upstreamProtocols(job);
    set['sec-websocket-protocol'] = kept.length > 0 ? kept.join(', ') : null;
  }
  if (host !== req.headers.host) set.host = host ?? null;
  const h: OutgoingHttpHeaders = buildUpstreamHeaders(req.headers, {
    peer: x.fwd.peer,
    forwardedFor: x.fwd.forwardedFor,
    proto: x.fwd.proto,
    host: req.headers.host,
    port: x.fwd.port,
    peerTrusted: x.fwd.peerTrusted,
    set,
  });
  if (!keepExtensions) delete h['sec-websocket-extensions'];
  return h;
}

/** The client's subprotocol offer minus the ones that carry credentials. */
function upstreamProtocols(job: WsJob): string[] {
  const all = offeredProtocols(job.req.headers);
  const drop = job.x.ctx.droppedProtocols();
  return drop === undefined ? all : all.filter((p) => !drop.has(p));
}

function fail(job: WsJob, err: GatewayError): void {
  const { x, socket } = job;
  if (x.finished) return;
  rejectSocket(socket, err, x.ctx.id);
  x.summary.status = err.status;
  x.summary.error = err.code;
  x.summary.closedBy = 'gateway';
  x.finish(err.detail);
}

/**
 * Relay a non-101 answer to the client with `Connection: close`, then close both
 * connections. The client socket is never read again.
 */
function relayRefusal(job: WsJob, res: IncomingMessage): void {
  const { x, socket } = job;
  const status = res.statusCode ?? 502;
  const headers = cleanResponseHeaders(res.headers);
  delete headers['content-length'];
  let head = `HTTP/1.1 ${status} ${res.statusMessage ?? ''}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    for (const value of Array.isArray(v) ? v : [v]) head += `${k}: ${value}\r\n`;
  }
  head += 'connection: close\r\n\r\n';
  x.summary.status = status;
  x.summary.closedBy = 'upstream';
  if (!socket.writable) {
    res.destroy();
    socket.destroy();
    x.finish();
    return;
  }
  socket.write(head);
  res.on('data', (chunk: Buffer) => {
    x.summary.bytesOut += chunk.length;
    socket.write(chunk);
  });
  const done = (): void => {
    socket.end();
    res.socket?.destroy();
    x.finish();
  };
  res.on('end', done);
  res.on('error', done);
}

const HOP_BY_HOP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authenticate']);

function tunnelMode(job: WsJob): void {
  const { x, req, socket, key } = job;
  const up = x.upstream;
  const settings = x.route.websocket;
  const offered = upstreamProtocols(job);
  const extensions = settings.extensions === 'passthrough' ? req.headers['sec-websocket-extensions'] : undefined;
  let done = false;
  let upSocket: Socket | undefined;

  const onClientGone = (): void => {
    done = true;
    abortConnect();
    upSocket?.destroy();
    x.clientLeft('client left during the handshake');
  };
  socket.on('close', onClientGone);
  const finishWith = (err: GatewayError): void => {
    if (done) return;
    done = true;
    socket.off('close', onClientGone);
    upSocket?.destroy();
    fail(job, err);
  };

  const abortConnect = connectNode(
    up,
    (node) => up.servername(up.hostHeader(req.headers.host, node)),
    (err, s, node, connectMs) => {
      if (err || !s || !node) return finishWith(err ?? new GatewayError('UPSTREAM_UNAVAILABLE'));
      if (done) return s.destroy();
      upSocket = s;
      s.on('error', ignoreError);
      const h = upstreamHeaders(job, up.hostHeader(req.headers.host, node), extensions !== undefined);
      h.connection = 'Upgrade';
      h.upgrade = 'websocket';
      let head: string;
      try {
        head = buildRequestHead(x.ctx.upstreamTarget(), h);
      } catch (e) {
        return finishWith(new GatewayError('PLUGIN_ERROR', { detail: `invalid upstream header: ${(e as Error).message}` }));
      }
      s.setNoDelay(true);
      const handshakeStart = performance.now();
      s.write(head);
      readResponseHead(s, up.config.timeout.read * 1000, (e, res) => {
        if (done) return;
        const label = nodeLabel(node);
        if (e || !res) {
          const timeout = (e as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
          return finishWith(
            new GatewayError(timeout ? 'UPSTREAM_TIMEOUT' : e instanceof HeadParseError ? 'WS_UPSTREAM_BAD_HANDSHAKE' : 'UPSTREAM_UNAVAILABLE', {
              detail: `${e?.message ?? 'no response'} (${label})`,
            }),
          );
        }
        if (res.status !== 101) {
          done = true;
          socket.off('close', onClientGone);
          return relayRawRefusal(job, s, res);
        }
        try {
          checkUpstreamHandshake(res.headers, key, offered, extensions);
        } catch (he) {
          x.log.warn({ request_id: x.ctx.id, upstream: label, detail: (he as GatewayError).detail }, 'upstream handshake refused');
          return finishWith(he as GatewayError);
        }
        done = true;
        socket.off('close', onClientGone);
        if (socket.destroyed) {
          s.destroy();
          x.clientLeft('client left during the handshake');
          return;
        }
        s.off('error', ignoreError);
        job.release();
        let out = 'HTTP/1.1 101 Switching Protocols\r\n';
        const extra = x.ctx.responseHeaders;
        for (const [name, value] of res.raw) if (!Object.hasOwn(extra, name.toLowerCase())) out += `${name}: ${value}\r\n`;
        for (const [name, value] of Object.entries(extra)) out += `${name}: ${value}\r\n`;
        socket.write(`${out}\r\n`);
        x.summary.status = 101;
        x.upstreamConnected('websocket', connectMs ?? 0, performance.now() - handshakeStart);
        new Tunnel(x, socket, s, job.live).start(res.rest);
      });
    },
  );
}

/**
 * Relay a non-101 answer read on a raw socket: its head (hop-by-hop headers
 * dropped, `connection: close` added) and its body byte for byte up to the end of
 * its framing, then close both connections.
 */
function relayRawRefusal(job: WsJob, upSocket: Socket, res: UpstreamResponseHead): void {
  const { x, socket } = job;
  x.summary.status = res.status;
  x.summary.closedBy = 'upstream';
  let head = `HTTP/1.1 ${res.status} ${res.statusText}\r\n`;
  for (const [name, value] of res.raw) if (!HOP_BY_HOP_RESPONSE.has(name.toLowerCase())) head += `${name}: ${value}\r\n`;
  head += 'connection: close\r\n\r\n';
  const body = new BodyDecoder(res.headers, res.status);
  let finished = false;
  const end = (): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    upSocket.destroy();
    socket.end();
    x.finish();
  };
  const forward = (chunk: Buffer): void => {
    const n = body.feed(chunk);
    if (n > 0) {
      x.summary.bytesOut += n;
      socket.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    }
    if (body.done) end();
  };
  // A refusal body is bounded in time: a trickling upstream cannot hold the client.
  const timer = setTimeout(end, x.upstream.config.timeout.read * 1000);
  timer.unref();
  if (!socket.writable) return end();
  socket.write(head);
  if (res.rest.length > 0) forward(res.rest);
  if (finished) return;
  if (body.done) return end();
  upSocket.on('data', forward);
  upSocket.on('end', end);
  upSocket.on('close', end);
  upSocket.resume();
}

function ignoreError(): void {}

/**
 * The `ws` options of frame mode for one route (and pipeline): the parser limits of
 * each side and permessage-deflate. Every limit is set explicitly on both sides.
 */
interface FrameOptions {
  /** The terminating server toward the client, shared by every route with the same options. */
  readonly server: WebSocketServer;
  /** Options of the client toward the upstream (headers and connection added per connection). */
  readonly upstream: ClientOptions;
}

/** Keyed by the pipeline's limits object, which exists once per (pipeline, route settings). */
const frameOptionsCache = new WeakMap<EffectiveFrameLimits, FrameOptions>();
/** One terminating WebSocketServer per distinct effective options, not per route object. */
const servers = new Map<string, WebSocketServer>();

/**
 * Chunks the parser may hold while a frame is incomplete: enough for the largest
 * message arriving in 1 KiB reads, never fewer than 4 per allowed fragment. Bounds
 * the memory that floods of tiny TCP segments can pin (ws's maxBufferedChunks).
 */
function chunkLimit(maxPayload: number, maxFragments: number): number {
  return Math.max(maxFragments * 4, Math.ceil(maxPayload / 1024));
}

/** ws's permessage-deflate options for the route setting (false: never negotiated). */
function deflateOptions(setting: WebSocketSettings['permessage_deflate']): false | PerMessageDeflateOptions {
  if (setting === false) return false;
  const o: PerMessageDeflateOptions = {};
  if (setting === true) return o;
  if (setting.server_no_context_takeover !== undefined) o.serverNoContextTakeover = setting.server_no_context_takeover;
  if (setting.client_no_context_takeover !== undefined) o.clientNoContextTakeover = setting.client_no_context_takeover;
  if (setting.server_max_window_bits !== undefined) o.serverMaxWindowBits = setting.server_max_window_bits;
  if (setting.client_max_window_bits !== undefined) o.clientMaxWindowBits = setting.client_max_window_bits;
  return o;
}

function frameOptions(settings: WebSocketSettings, limits: EffectiveFrameLimits): FrameOptions {
  let opts = frameOptionsCache.get(limits);
  if (opts) return opts;
  const deflate = deflateOptions(settings.permessage_deflate);
  const clientMax = limits.client.maxPayload;
  const key = `${clientMax}:${settings.max_fragments}:${JSON.stringify(deflate)}`;
  let server = servers.get(key);
  if (!server) {
    server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: deflate,
      maxPayload: clientMax,
      maxFragments: settings.max_fragments,
      maxBufferedChunks: chunkLimit(clientMax, settings.max_fragments),
      skipUTF8Validation: false,
      autoPong: true,
      allowSynchronousEvents: true,
      handleProtocols: (_protocols: Set<string>, request: IncomingMessage) => (request as ReqWithProto)[kProtocol] ?? false,
    } as ConstructorParameters<typeof WebSocketServer>[0]);
    server.on('headers', addResponseHeaders);
    servers.set(key, server);
  }
  const upstreamMax = limits.upstream.maxPayload;
  opts = {
    server,
    upstream: {
      perMessageDeflate: deflate,
      maxPayload: upstreamMax,
      maxFragments: settings.max_fragments,
      maxBufferedChunks: chunkLimit(upstreamMax, settings.max_fragments),
      skipUTF8Validation: false,
      followRedirects: false,
      autoPong: true,
      allowSynchronousEvents: true,
    },
  };
  frameOptionsCache.set(limits, opts);
  return opts;
}

const kProtocol = Symbol('protocol');
/** The plugins' response headers (ctx.responseHeaders), for the 101 the terminating server writes. */
const kResponseHeaders = Symbol('responseHeaders');
type ReqWithProto = IncomingMessage & { [kProtocol]?: string | false; [kResponseHeaders]?: Record<string, string> };

function addResponseHeaders(headers: string[], req: IncomingMessage): void {
  const extra = (req as ReqWithProto)[kResponseHeaders];
  if (extra) for (const [name, value] of Object.entries(extra)) headers.push(`${name}: ${value}`);
}

function frameMode(job: WsJob): void {
  const { x, req, socket } = job;
  const up = x.upstream;
  const options = frameOptions(x.route.websocket, x.pipeline.frameLimits(x.route.websocket));
  const offered = upstreamProtocols(job);
  let upstreamWs: WebSocket | undefined;
  let done = false;

  const finishWith = (err: GatewayError): void => {
    if (done) return;
    done = true;
    socket.off('close', onClientGone);
    fail(job, err);
  };
  const onClientGone = (): void => {
    done = true;
    abortConnect();
    upstreamWs?.terminate();
    x.clientLeft('client left during the handshake');
  };
  socket.on('close', onClientGone);

  // The TCP/TLS connection is ours (failover across nodes, connect timeout); ws speaks the handshake over it.
  const abortConnect = connectNode(
    up,
    (node) => up.servername(up.hostHeader(req.headers.host, node)),
    (err, upSocket, node, connectMs) => {
      if (err || !upSocket || !node) return finishWith(err ?? new GatewayError('UPSTREAM_UNAVAILABLE'));
      if (done) return upSocket.destroy();
      const host = node.host.includes(':') ? `[${node.host}]` : node.host;
      const url = `${up.secure ? 'wss' : 'ws'}://${host}:${node.port}${x.ctx.upstreamTarget()}`;
      const headers = upstreamHeaders(job, up.hostHeader(req.headers.host, node), false);
      for (const h of ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions']) delete headers[h];
      let ws: WebSocket;
      const handshakeStart = performance.now();
      try {
        ws = new WebSocket(url, offered, {
          ...options.upstream,
          headers: headers as Record<string, string>,
          createConnection: () => upSocket,
          handshakeTimeout: up.config.timeout.read * 1000,
        } as ClientOptions);
      } catch (e) {
        upSocket.destroy();
        return finishWith(new GatewayError('BAD_REQUEST', { detail: `cannot offer subprotocols: ${(e as Error).message}` }));
      }
      upstreamWs = ws;
      let opened = false;
      ws.once('unexpected-response', (_r, res) => {
        if (done) return res.destroy();
        done = true;
        socket.off('close', onClientGone);
        relayRefusal(job, res);
      });
      ws.on('error', (e: Error) => {
        if (opened) return;
        ws.terminate();
        const timeout = /timed out/i.test(e.message);
        const code = timeout
          ? 'UPSTREAM_TIMEOUT'
          : /Sec-WebSocket|subprotocol|Upgrade|extension/i.test(e.message)
            ? 'WS_UPSTREAM_BAD_HANDSHAKE'
            : 'UPSTREAM_UNAVAILABLE';
        finishWith(new GatewayError(code, { detail: `${e.message} (${nodeLabel(node)})` }));
      });
      ws.once('open', () => {
        opened = true;
        if (done) return ws.terminate();
        done = true;
        socket.off('close', onClientGone);
        (req as ReqWithProto)[kProtocol] = ws.protocol === '' ? false : ws.protocol;
        if (Object.keys(x.ctx.responseHeaders).length > 0) (req as ReqWithProto)[kResponseHeaders] = x.ctx.responseHeaders;
        job.release();
        hardenReceiver(ws);
        x.upstreamConnected('websocket', connectMs ?? 0, performance.now() - handshakeStart);
        options.server.handleUpgrade(req, socket, Buffer.alloc(0), (client) => {
          hardenReceiver(client);
          x.summary.status = 101;
          new FrameBridge(x, client, ws, job.live).start();
        });
      });
    },
  );
}
