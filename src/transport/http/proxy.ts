/**
 * Plain HTTP/1.1 proxying with keep-alive upstream connections, and the switch to
 * SSE streaming when the upstream answers `Content-Type: text/event-stream`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayError } from '../../core/errors.js';
import type { Exchange } from '../../server/exchange.js';
import { sendError } from '../../server/respond.js';
import { UpstreamAttempt } from '../../upstream/connect.js';
import { buildUpstreamHeaders, cleanResponseHeaders } from './headers.js';
import { isEventStream, SseStream, type LiveRegistry } from './sse.js';

export function proxyHttp(x: Exchange, req: IncomingMessage, res: ServerResponse, live: LiveRegistry): void {
  const { ctx, upstream, fwd } = x;
  const set = ctx.upstreamSet();
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  // An SSE client must get an uncompressed stream: do not invite the upstream to compress.
  if (acceptsEventStream(req.headers.accept)) set['accept-encoding'] = null;

  // The body is only read once a node accepted (see `connected`): a 'data' listener
  // here would start the flow and drop the bytes that arrive before the pipe.
  (req as CountedRequest)[kExchange] = x;

  const attempt = new UpstreamAttempt(
    upstream,
    {
      method: ctx.method,
      path: ctx.upstreamTarget(),
      pooled: true,
      hasBody,
      headers: (node) => {
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
      },
    },
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
      response(upRes, upReq) {
        if (isEventStream(upRes.headers['content-type'])) {
          x.summary.protocol = 'sse';
          new SseStream(x, upReq, upRes, res, live).start();
          return;
        }
        relay(x, upRes, res);
      },
      failed(err) {
        fail(x, res, err);
      },
    },
  ).start();

  res.on('close', () => {
    if (!res.writableFinished) {
      attempt.abort();
      if (!x.finished) {
        x.summary.closedBy = 'client';
        x.summary.status = res.headersSent ? res.statusCode : 499;
        x.finish();
      }
    }
  });
}

const kExchange = Symbol('exchange');
type CountedRequest = IncomingMessage & { [kExchange]?: Exchange };

function countIn(this: CountedRequest, chunk: Buffer): void {
  const x = this[kExchange];
  if (x) x.summary.bytesIn += chunk.length;
}

function relay(x: Exchange, upRes: IncomingMessage, res: ServerResponse): void {
  const headers = cleanResponseHeaders(upRes.headers);
  headers['x-request-id'] = x.ctx.id;
  for (const [name, value] of Object.entries(x.ctx.responseHeaders)) headers[name] = value;
  res.writeHead(upRes.statusCode ?? 502, headers);
  upRes.on('data', (chunk: Buffer) => {
    x.summary.bytesOut += chunk.length;
    if (!res.write(chunk)) {
      upRes.pause();
      res.once('drain', () => upRes.resume());
    }
  });
  upRes.on('end', () => {
    res.end();
    x.summary.status = upRes.statusCode ?? 502;
    x.summary.closedBy = 'upstream';
    x.finish();
  });
  upRes.on('error', () => {
    // The upstream broke mid-body: the client must see a truncated response, not a complete one.
    res.destroy();
    x.summary.status = upRes.statusCode ?? 502;
    x.summary.error = 'UPSTREAM_CLOSED';
    x.summary.closedBy = 'upstream';
    x.finish('upstream response aborted');
  });
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
