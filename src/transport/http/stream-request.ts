/**
 * The upstream request of an event stream, on a raw socket: a GET without a body
 * from a client that accepts `text/event-stream`. The request head goes out in one
 * write, the response head is read by raw.ts's bounded parser, and the body is
 * decoded by body.ts into slices of each read: no HTTP client, no parser instance,
 * no copy of every event. Node's HTTP client stays in charge of everything else
 * (proxy.ts), where keep-alive pooling pays for itself; a stream holds its upstream
 * connection for its whole life, so it gets a fresh one and closes it at the end.
 * Node failover (refusal, connect timeout) is connectNode's, as for WebSockets.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { UpstreamNode } from '../../config/types.js';
import { GatewayError } from '../../core/errors.js';
import { nodeLabel } from '../../upstream/balancer.js';
import { connectNode } from '../../upstream/connect.js';
import type { Upstream } from '../../upstream/upstream.js';
import { buildRequestHead, HeadParseError, readResponseHead, type UpstreamResponseHead } from './raw.js';
import { RawResponseSource, type ResponseSource } from './source.js';

export interface StreamRequest {
  /** The request target (path and query) sent upstream. */
  path: string;
  /** The client's Host header (for pass_host and the TLS server name). */
  clientHost: string | undefined;
  /** The headers for the chosen node. */
  headers: (node: UpstreamNode) => OutgoingHttpHeaders;
}

export interface StreamRequestHandlers {
  /** A new connection to a node is up; `connectMs`: its TCP connect. */
  connected(connectMs: number): void;
  /** The final (non-1xx) response head arrived; the body is the source's. */
  response(source: ResponseSource): void;
  /** Every node failed, or the chosen one did not answer properly. */
  failed(err: GatewayError): void;
}

/** Start the request; returns a function that aborts it (the client went away). */
export function requestEventStream(up: Upstream, req: StreamRequest, h: StreamRequestHandlers): () => void {
  const readMs = up.config.timeout.read * 1000;
  let done = false;
  let socket: Socket | undefined;
  const fail = (err: GatewayError): void => {
    if (done) return;
    done = true;
    socket?.destroy();
    h.failed(err);
  };

  const abortConnect = connectNode(
    up,
    (node) => up.servername(up.hostHeader(req.clientHost, node)),
    (err, s, node, connectMs) => {
      if (done) return s?.destroy();
      if (err || !s || !node) return fail(err ?? new GatewayError('UPSTREAM_UNAVAILABLE'));
      socket = s;
      s.on('error', ignore);
      h.connected(connectMs ?? 0);
      let head: string;
      try {
        // Never reused: the upstream may free the connection as soon as the stream ends.
        head = buildRequestHead(req.path, { ...req.headers(node), connection: 'close' });
      } catch (e) {
        return fail(new GatewayError('PLUGIN_ERROR', { detail: `invalid upstream header: ${(e as Error).message}` }));
      }
      s.setNoDelay(true);
      s.write(head);
      const label = nodeLabel(node);
      const onHead = (e: Error | undefined, res?: UpstreamResponseHead): void => {
        if (done) return;
        if (e || !res) {
          const timeout = (e as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
          const what = e instanceof HeadParseError || !e ? (e?.message ?? 'no response') : ((e as NodeJS.ErrnoException).code ?? e.message);
          return fail(new GatewayError(timeout ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_UNAVAILABLE', { detail: `${what} from ${label}` }));
        }
        if (res.status < 200) {
          // 101 to a request that asked for no upgrade is a broken upstream; other
          // 1xx (100, 103 Early Hints) are interim: the answer follows.
          if (res.status === 101) return fail(new GatewayError('UPSTREAM_UNAVAILABLE', { detail: `unexpected 101 from ${label}` }));
          return readResponseHead(s, readMs, onHead, res.rest);
        }
        done = true;
        h.response(new RawResponseSource(s, res, readMs));
      };
      readResponseHead(s, readMs, onHead);
    },
  );
  return () => {
    done = true;
    abortConnect();
    socket?.destroy();
  };
}

function ignore(): void {}
