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
import { WebSocket, WebSocketServer } from 'ws';
import type { WebSocketSettings } from '../../config/types.js';
import { GatewayError } from '../../core/errors.js';
import type { Exchange } from '../../server/exchange.js';
import { rejectSocket } from '../../server/respond.js';
import { connectNode, UpstreamAttempt } from '../../upstream/connect.js';
import { nodeLabel } from '../../upstream/balancer.js';
import { buildUpstreamHeaders, cleanResponseHeaders } from '../http/headers.js';
import type { LiveRegistry } from '../http/sse.js';
import { FrameBridge } from './frame.js';
import { checkUpstreamHandshake, offeredProtocols } from './handshake.js';
import { Tunnel } from './tunnel.js';

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
  if (x.ctx.dropProtocols.size > 0) {
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
  const drop = job.x.ctx.dropProtocols;
  return drop.size === 0 ? all : all.filter((p) => !drop.has(p));
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

function tunnelMode(job: WsJob): void {
  const { x, req, socket, key } = job;
  const settings = x.route.websocket;
  const offered = upstreamProtocols(job);
  const extensions = settings.extensions === 'passthrough' ? req.headers['sec-websocket-extensions'] : undefined;
  const attempt = new UpstreamAttempt(
    x.upstream,
    {
      method: 'GET',
      path: x.ctx.upstreamTarget(),
      pooled: false,
      headers: (node) => {
        const h = upstreamHeaders(job, x.upstream.hostHeader(req.headers.host, node), extensions !== undefined);
        h.connection = 'Upgrade';
        h.upgrade = 'websocket';
        return h;
      },
    },
    {
      connected(upReq) {
        upReq.end();
      },
      response(res) {
        relayRefusal(job, res);
      },
      upgrade(res, upSocket, upHead, node) {
        socket.off('close', onClientGone);
        try {
          checkUpstreamHandshake(res, key, offered, extensions);
        } catch (err) {
          upSocket.destroy();
          fail(job, err as GatewayError);
          x.log.warn({ request_id: x.ctx.id, upstream: nodeLabel(node), detail: (err as GatewayError).detail }, 'upstream handshake refused');
          return;
        }
        if (socket.destroyed) {
          upSocket.destroy();
          x.summary.status = 499;
          x.summary.closedBy = 'client';
          x.finish();
          return;
        }
        job.release();
        let head = 'HTTP/1.1 101 Switching Protocols\r\n';
        const raw = res.rawHeaders;
        for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
        socket.write(`${head}\r\n`);
        x.summary.status = 101;
        new Tunnel(x, socket, upSocket, job.live).start(upHead);
      },
      failed(err) {
        socket.off('close', onClientGone);
        fail(job, err);
      },
    },
  );
  const onClientGone = (): void => {
    attempt.abort();
    if (!x.finished) {
      x.summary.status = 499;
      x.summary.closedBy = 'client';
      x.finish('client left during the handshake');
    }
  };
  socket.on('close', onClientGone);
  attempt.start();
}

/** One terminating WebSocketServer per distinct settings (max payload etc.). */
const servers = new WeakMap<WebSocketSettings, WebSocketServer>();

function serverFor(settings: WebSocketSettings): WebSocketServer {
  let wss = servers.get(settings);
  if (!wss) {
    wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: settings.max_payload,
      maxFragments: settings.max_fragments,
      maxBufferedChunks: settings.max_fragments * 4,
      skipUTF8Validation: false,
      autoPong: true,
      allowSynchronousEvents: true,
      handleProtocols: (_protocols: Set<string>, request: IncomingMessage) => (request as ReqWithProto)[kProtocol] ?? false,
    });
    servers.set(settings, wss);
  }
  return wss;
}

const kProtocol = Symbol('protocol');
type ReqWithProto = IncomingMessage & { [kProtocol]?: string | false };

function frameMode(job: WsJob): void {
  const { x, req, socket } = job;
  const up = x.upstream;
  const settings = x.route.websocket;
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
    if (!x.finished) {
      x.summary.status = 499;
      x.summary.closedBy = 'client';
      x.finish('client left during the handshake');
    }
  };
  socket.on('close', onClientGone);

  // The TCP/TLS connection is ours (failover across nodes, connect timeout); ws speaks the handshake over it.
  const abortConnect = connectNode(
    up,
    (node) => up.servername(up.hostHeader(req.headers.host, node)),
    (err, upSocket, node) => {
      if (err || !upSocket || !node) return finishWith(err ?? new GatewayError('UPSTREAM_UNAVAILABLE'));
      if (done) return upSocket.destroy();
      const host = node.host.includes(':') ? `[${node.host}]` : node.host;
      const url = `${up.secure ? 'wss' : 'ws'}://${host}:${node.port}${x.ctx.upstreamTarget()}`;
      const headers = upstreamHeaders(job, up.hostHeader(req.headers.host, node), false);
      for (const h of ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions']) delete headers[h];
      let ws: WebSocket;
      try {
        ws = new WebSocket(url, offered, {
          headers: headers as Record<string, string>,
          createConnection: () => upSocket,
          perMessageDeflate: false,
          maxPayload: settings.max_payload,
          maxFragments: settings.max_fragments,
          maxBufferedChunks: settings.max_fragments * 4,
          handshakeTimeout: up.config.timeout.read * 1000,
          followRedirects: false,
          autoPong: true,
          allowSynchronousEvents: true,
        } as ConstructorParameters<typeof WebSocket>[2]);
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
        job.release();
        serverFor(settings).handleUpgrade(req, socket, Buffer.alloc(0), (client) => {
          x.summary.status = 101;
          new FrameBridge(x, client, ws, job.live).start();
        });
      });
    },
  );
}
