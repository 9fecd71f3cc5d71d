/**
 * An upstream response as the relay (proxy.ts) and the SSE stream (sse.ts) consume
 * it: status, headers, and the body with its transfer coding removed. Two kinds:
 * Node's HTTP client (pooled keep-alive requests) and a raw socket read with our
 * own framing (stream-request.ts, event streams: one slice per read, no copy).
 */
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { BodyDecoder } from './body.js';
import type { UpstreamResponseHead } from './raw.js';

export interface ResponseSource {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /**
   * Deliver the body: `data` for each piece in order, then `end` exactly once
   * (`broken`: the upstream went away before the body's end, or framed it wrongly).
   */
  start(data: (chunk: Buffer) => void, end: (broken: boolean) => void): void;
  pause(): void;
  resume(): void;
  /** A stream has no read timeout: only the wait for the head was bounded. */
  untimed(): void;
  /** Stop reading and close the upstream connection. */
  destroy(): void;
}

/** A response read by Node's HTTP client. */
export class NodeResponseSource implements ResponseSource {
  readonly #req: ClientRequest;
  readonly #res: IncomingMessage;

  constructor(req: ClientRequest, res: IncomingMessage) {
    this.#req = req;
    this.#res = res;
  }

  get status(): number {
    return this.#res.statusCode ?? 502;
  }

  get headers(): IncomingHttpHeaders {
    return this.#res.headers;
  }

  start(data: (chunk: Buffer) => void, end: (broken: boolean) => void): void {
    const res = this.#res;
    let ended = false;
    const once = (broken: boolean): void => {
      if (ended) return;
      ended = true;
      end(broken);
    };
    res.on('data', data);
    res.on('end', () => once(false));
    res.on('error', () => once(true));
    res.on('close', () => once(!res.complete));
  }

  pause(): void {
    this.#res.pause();
  }

  resume(): void {
    this.#res.resume();
  }

  untimed(): void {
    const req = this.#req;
    req.setTimeout(0);
    // A request body still being sent re-arms it when it is done (connect.ts): disarm it again then.
    if (!req.writableFinished) req.once('finish', disarmTimeout);
  }

  destroy(): void {
    this.#req.destroy();
  }
}

function disarmTimeout(this: ClientRequest): void {
  this.setTimeout(0);
}

/** A response read on a raw socket whose head is already parsed (raw.ts). */
export class RawResponseSource implements ResponseSource {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly #socket: Socket;
  readonly #rest: Buffer;
  readonly #body: BodyDecoder;
  #ended = false;
  #paused = false;
  #data: (chunk: Buffer) => void = ignore;
  #end: (broken: boolean) => void = ignore;

  /** `readTimeoutMs`: the longest silence while the body is read (until untimed()). */
  constructor(socket: Socket, head: UpstreamResponseHead, readTimeoutMs: number) {
    this.#socket = socket;
    this.status = head.status;
    this.headers = headersFromRaw(head.raw);
    this.#rest = head.rest;
    this.#body = new BodyDecoder(head.headers, head.status);
    socket.setTimeout(readTimeoutMs, () => socket.destroy());
  }

  start(data: (chunk: Buffer) => void, end: (broken: boolean) => void): void {
    this.#data = data;
    this.#end = end;
    const socket = this.#socket;
    socket.on('data', (chunk: Buffer) => this.#feed(chunk));
    socket.on('end', () => this.#closed());
    socket.on('close', () => this.#closed());
    socket.on('error', ignore);
    if (this.#rest.length > 0) this.#feed(this.#rest);
    else if (this.#body.done) this.#finish(false);
    if (!this.#ended && !this.#paused) socket.resume();
  }

  #feed(chunk: Buffer): void {
    if (this.#ended) return;
    const body = this.#body;
    body.feed(chunk, this.#data);
    if (body.done) this.#finish(body.malformed);
  }

  #closed(): void {
    this.#finish(!this.#body.closeDelimited || this.#body.malformed);
  }

  #finish(broken: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#socket.destroy();
    this.#end(broken);
  }

  pause(): void {
    this.#paused = true;
    this.#socket.pause();
  }

  resume(): void {
    this.#paused = false;
    if (!this.#ended) this.#socket.resume();
  }

  untimed(): void {
    this.#socket.setTimeout(0);
  }

  destroy(): void {
    this.#ended = true;
    this.#socket.destroy();
  }
}

function ignore(): void {}

/**
 * Raw header lines as Node's IncomingMessage.headers would give them: lowercase
 * names, `set-cookie` as an array, other repeats joined with ", ".
 */
export function headersFromRaw(raw: readonly (readonly [string, string])[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of raw) {
    const key = name.toLowerCase();
    const prev = out[key];
    if (key === 'set-cookie') {
      if (prev === undefined) out[key] = [value];
      else (prev as string[]).push(value);
    } else {
      out[key] = prev === undefined ? value : `${prev as string}, ${value}`;
    }
  }
  return out;
}
