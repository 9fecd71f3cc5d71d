/**
 * Server-Sent Events streaming: each chunk from the upstream is written to the
 * client as it arrives (no buffering, no compression), with optional heartbeat
 * comments inserted only between events and an optional maximum duration.
 */
import type { ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import zlib from 'node:zlib';
import type { ErrorCode } from '../../core/errors.js';
import type { ConnectionStats, Exchange, LiveConnection } from '../../server/exchange.js';
import { cleanResponseHeaders } from './headers.js';
import { HEARTBEAT, SseBoundaryTracker } from './sse-boundary.js';
import type { ResponseSource } from './source.js';

/** Where live connections register (server/live.ts); an interface to keep transports free of the server. */
export interface LiveRegistry {
  add(conn: LiveConnection): void;
  delete(conn: LiveConnection): void;
}

export function isEventStream(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const semi = contentType.indexOf(';');
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase() === 'text/event-stream';
}

export class SseStream implements LiveConnection {
  readonly exchange: Exchange;
  readonly #upstream: ResponseSource;
  readonly #res: ServerResponse;
  readonly #live: LiveRegistry;
  readonly #tracker = new SseBoundaryTracker();
  /** Set when the upstream compressed the stream anyway: its bytes go through it. */
  #decoder: zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined;
  /** Where events go: the client's socket once the head is in it, else the response. */
  #out: Writable;
  /** Something was written since the last heartbeat tick. */
  #wrote = false;
  #heartbeat: NodeJS.Timeout | undefined;
  #maxDuration: NodeJS.Timeout | undefined;
  #ending = false;

  constructor(x: Exchange, upstream: ResponseSource, res: ServerResponse, live: LiveRegistry) {
    this.exchange = x;
    this.#upstream = upstream;
    this.#res = res;
    this.#live = live;
    this.#out = res;
  }

  start(): void {
    const x = this.exchange;
    const up = this.#upstream;
    const res = this.#res;
    const headers = cleanResponseHeaders(up.headers);
    delete headers['content-length'];
    const decoder = decoderFor(up.headers['content-encoding']);
    if (decoder) {
      delete headers['content-encoding'];
      this.#decoder = decoder;
      decoder.on('data', (chunk: Buffer) => this.#onData(chunk));
      decoder.on('end', () => this.#upstreamEnded(false));
      decoder.on('error', () => this.#upstreamEnded(true));
      decoder.on('drain', () => up.resume());
    }
    headers['cache-control'] = 'no-cache, no-transform';
    headers['x-accel-buffering'] = 'no';
    headers['x-request-id'] = x.ctx.id;
    for (const [name, value] of Object.entries(x.ctx.responseHeaders)) headers[name] = value;
    // Streams are long-lived: the read timeout only bounded the wait for headers.
    up.untimed();
    // A stream lives until one side ends it, so it is delimited by the connection's
    // close rather than by chunked encoding: one write per event instead of three
    // buffers (size line, data, CRLF). EventSource reconnects on a new connection anyway.
    res.useChunkedEncodingByDefault = false;
    headers.connection = 'close';
    res.writeHead(up.status, headers);
    res.flushHeaders();
    // Past the head, ServerResponse only adds cost per event (its write path, and a cork
    // with an uncork scheduled on the next tick for every write): with no chunked framing
    // and the connection closed at the end, the events can go to the socket itself. Only
    // once the head is in the socket (nothing left queued on the response, e.g. behind a
    // pipelined response still being sent), so the bytes keep their order.
    const socket = res.socket;
    if (socket && res.writableLength === socket.writableLength) this.#out = socket;
    x.summary.status = up.status;
    this.#live.add(this);
    x.opened('sse');

    const sse = x.route.sse;
    if (sse.heartbeat_interval > 0) {
      this.#heartbeat = setInterval(beat, sse.heartbeat_interval * 1000, this);
    }
    if (sse.max_duration > 0) {
      this.#maxDuration = setTimeout(expire, sse.max_duration * 1000, this);
    }
    this.#out.on('drain', () => this.#resume());
    res.on('close', () => this.#clientClosed());
    if (decoder) {
      up.start(
        (chunk) => {
          if (!decoder.write(chunk)) up.pause();
        },
        (broken) => (broken ? this.#upstreamEnded(true) : decoder.end()),
      );
    } else {
      up.start(
        (chunk) => this.#onData(chunk),
        (broken) => this.#upstreamEnded(broken),
      );
    }
  }

  #resume(): void {
    if (this.#decoder) this.#decoder.resume();
    this.#upstream.resume();
  }

  #onData(chunk: Buffer): void {
    this.#tracker.feed(chunk);
    this.exchange.summary.bytesOut += chunk.length;
    this.#wrote = true;
    if (!this.#out.write(chunk)) {
      this.#upstream.pause();
      this.#decoder?.pause();
    }
  }

  /**
   * Heartbeat tick, every interval: a comment only between events, and only when nothing
   * was written since the previous tick (so a quiet stream gets one N to 2N after its
   * last data). A flag rather than a clock read per event.
   */
  beat(): void {
    if (this.#ending || !this.#tracker.atBoundary) return;
    if (this.#wrote) {
      this.#wrote = false;
      return;
    }
    this.exchange.summary.bytesOut += HEARTBEAT.length;
    this.#out.write(HEARTBEAT);
  }

  shutdown(_code: number, _reason: string): void {
    this.#end('gateway', 'SHUTTING_DOWN');
  }

  /** SSE events are not counted (that would mean scanning every byte): messages are 0. */
  stats(): ConnectionStats {
    const s = this.exchange.summary;
    return { bytesIn: s.bytesIn, bytesOut: s.bytesOut, messagesIn: 0, messagesOut: 0 };
  }

  expire(): void {
    this.#end('gateway', 'SSE_MAX_DURATION');
  }

  /** SSE has no close code: the stream is ended and the cause recorded. */
  close(_code: number, _reason: string, error: ErrorCode | undefined): void {
    this.#end('gateway', error);
  }

  destroy(): void {
    this.#res.destroy();
    this.#upstream.destroy();
  }

  #end(by: 'gateway' | 'upstream', error: string | undefined): void {
    if (this.#ending) return;
    this.#ending = true;
    this.#cleanup();
    const s = this.exchange.summary;
    s.closedBy = by;
    if (error) s.error = error;
    this.#upstream.destroy();
    this.#res.end();
    this.exchange.finish();
  }

  #upstreamEnded(broken: boolean): void {
    this.#end('upstream', broken ? 'UPSTREAM_CLOSED' : undefined);
  }

  #clientClosed(): void {
    if (this.#ending) return;
    this.#ending = true;
    this.#cleanup();
    // Abort the upstream request at once so the backend stops producing for nobody.
    this.#upstream.destroy();
    this.exchange.summary.closedBy = 'client';
    this.exchange.finish();
  }

  #cleanup(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    if (this.#maxDuration) clearTimeout(this.#maxDuration);
    this.#live.delete(this);
  }
}

function beat(stream: SseStream): void {
  stream.beat();
}

function expire(stream: SseStream): void {
  stream.expire();
}

function decoderFor(encoding: string | undefined): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined {
  switch (encoding?.trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return undefined;
  }
}
