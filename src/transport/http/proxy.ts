/**
 * Plain HTTP/1.1 proxying with keep-alive upstream connections, and the switch to
 * SSE streaming when the upstream answers `Content-Type: text/event-stream`. A GET
 * without a body that accepts an event stream goes out on a raw socket instead
 * (stream-request.ts); whatever the upstream answers it, stream or not, is handled
 * here the same way as an answer read by Node's HTTP client (source.ts).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { UpstreamNode } from '../../config/types.js';
import type { GatewayError } from '../../core/errors.js';
import type { Exchange } from '../../server/exchange.js';
import { sendError } from '../../server/respond.js';
import { UpstreamAttempt } from '../../upstream/connect.js';
import { buildUpstreamHeaders, cleanResponseHeaders } from './headers.js';
import { NodeResponseSource, type ResponseSource } from './source.js';
import { isEventStream, SseStream, type LiveRegistry } from './sse.js';
import { requestEventStream } from './stream-request.js';

export function proxyHttp(x: Exchange, req: IncomingMessage, res: ServerResponse, live: LiveRegistry): void {
  const { ctx, upstream } = x;
  const set = ctx.upstreamSet();
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  const stream = acceptsEventStream(req.headers.accept);
  // An SSE client must get an uncompressed stream: do not invite the upstream to compress.
  if (stream) set['accept-encoding'] = null;
  const headers = (node: UpstreamNode): OutgoingHttpHeaders => upstreamHeaders(x, req, node, set);
  const answer = (source: ResponseSource): void => {
    if (isEventStream(source.headers['content-type'])) {
      x.summary.protocol = 'sse';
      new SseStream(x, source, res, live).start();
      return;
    }
    relay(x, source, res);
  };

  let abort: () => void;
  if (stream && !hasBody && ctx.method === 'GET') {
    // An event stream: its own upstream connection, read without Node's HTTP client.
    abort = requestEventStream(
      upstream,
      { path: ctx.upstreamTarget(), clientHost: req.headers.host, headers },
      {
        connected: (connectMs) => x.upstreamConnected('http', connectMs),
        response: answer,
        failed: (err) => fail(x, res, err),
      },
    );
  } else {
    // The body is only read once a node accepted (see `connected`): a 'data' listener
    // here would start the flow and drop the bytes that arrive before the pipe.
    (req as CountedRequest)[kExchange] = x;
    const attempt = new UpstreamAttempt(
      upstream,
      { method: ctx.method, path: ctx.upstreamTarget(), pooled: true, hasBody, headers },
      {
        connected(upReq, _node, connectMs) {
          if (connectMs !== undefined) x.upstreamConnected('http', connectMs);
          if (!hasBody) {
            upReq.end();
            return;
          }
          req.on('data', countIn);
          req.pipe(upReq);
        },
        response: (upRes, upReq) => answer(new NodeResponseSource(upReq, upRes)),
        failed: (err) => fail(x, res, err),
      },
    ).start();
    abort = () => attempt.abort();
  }

  res.on('close', () => {
    if (!res.writableFinished) {
      abort();
      if (!x.finished) {
        x.summary.closedBy = 'client';
        x.summary.status = res.headersSent ? res.statusCode : 499;
        x.finish();
      }
    }
  });
}

/** The request headers for `node`: the client's, cleaned, with forwarding headers and the route's changes. */
function upstreamHeaders(x: Exchange, req: IncomingMessage, node: UpstreamNode, set: Record<string, string | null>): OutgoingHttpHeaders {
  const { upstream, fwd } = x;
  const host = upstream.hostHeader(req.headers.host, node);
  return buildUpstreamHeaders(req.headers, {
    peer: fwd.peer,
    forwardedFor: fwd.forwardedFor,
    proto: fwd.proto,
    host: req.headers.host,
    port: fwd.port,
    peerTrusted: fwd.peerTrusted,
    set: host === req.headers.host ? set : { ...set, host: host ?? null },
  });
}

const kExchange = Symbol('exchange');
type CountedRequest = IncomingMessage & { [kExchange]?: Exchange };

function countIn(this: CountedRequest, chunk: Buffer): void {
  const x = this[kExchange];
  if (x) x.summary.bytesIn += chunk.length;
}

function relay(x: Exchange, up: ResponseSource, res: ServerResponse): void {
  const headers = cleanResponseHeaders(up.headers);
  headers['x-request-id'] = x.ctx.id;
  for (const [name, value] of Object.entries(x.ctx.responseHeaders)) headers[name] = value;
  res.writeHead(up.status, headers);
  const resume = (): void => up.resume();
  up.start(
    (chunk) => {
      x.summary.bytesOut += chunk.length;
      if (!res.write(chunk)) {
        up.pause();
        res.once('drain', resume);
      }
    },
    (broken) => {
      if (x.finished) return;
      x.summary.status = up.status;
      x.summary.closedBy = 'upstream';
      if (!broken) {
        res.end();
        x.finish();
        return;
      }
      // The upstream broke mid-body: the client must see a truncated response, not a complete one.
      res.destroy();
      x.summary.error = 'UPSTREAM_CLOSED';
      x.finish('upstream response aborted');
    },
  );
}

function fail(x: Exchange, res: ServerResponse, err: GatewayError): void {
  if (x.finished) return;
  sendError(res, err, x.ctx.id);
  x.summary.status = err.status;
  x.summary.error = err.code;
  x.summary.closedBy = 'gateway';
  x.finish(err.detail);
}

function acceptsEventStream(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('text/event-stream');
}
