/**
 * The upstream side of a tunnel-mode handshake, on a raw socket: the request is
 * written in one write and the response head read by a small bounded parser. On
 * the handshake path this replaces Node's HTTP client (an Agent, a ClientRequest,
 * several writes and a parser instance per connection) with a few string
 * operations: a WebSocket handshake is a single GET without a body.
 */
import { validateHeaderName, validateHeaderValue, type OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';

/** Largest response head accepted from an upstream. */
const MAX_HEAD = 16 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

export interface UpstreamResponseHead {
  readonly status: number;
  readonly statusText: string;
  /** Header lines as received: [name, value] pairs, names as sent. */
  readonly raw: readonly (readonly [string, string])[];
  /** Lowercase name -> value (repeated headers joined with ", "). */
  readonly headers: Readonly<Record<string, string>>;
  /** Bytes that followed the head (frames after a 101, body after a refusal). */
  readonly rest: Buffer;
}

/** The request head, validated like Node's HTTP client would (no CR/LF injection). */
export function buildRequestHead(path: string, headers: OutgoingHttpHeaders): string {
  let head = `GET ${path} HTTP/1.1\r\n`;
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    validateHeaderName(name);
    if (Array.isArray(v)) {
      for (const item of v) {
        validateHeaderValue(name, item);
        head += `${name}: ${item}\r\n`;
      }
    } else {
      const value = String(v);
      validateHeaderValue(name, value);
      head += `${name}: ${value}\r\n`;
    }
  }
  return `${head}\r\n`;
}

export class HeadParseError extends Error {}

/**
 * Parse a response head from the bytes read so far. Returns undefined while the
 * head is incomplete; throws HeadParseError when it is malformed or too large.
 */
export function parseResponseHead(buf: Buffer): UpstreamResponseHead | undefined {
  const end = buf.indexOf(CRLFCRLF);
  if (end === -1) {
    if (buf.length > MAX_HEAD) throw new HeadParseError('response head too large');
    return undefined;
  }
  if (end > MAX_HEAD) throw new HeadParseError('response head too large');
  const text = buf.toString('latin1', 0, end);
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]!);
  if (!m) throw new HeadParseError('malformed status line');
  const raw: [string, string][] = [];
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0 || /[\s]/.test(line[colon - 1]!) || line.charCodeAt(0) === 0x20 || line.charCodeAt(0) === 0x09) {
      throw new HeadParseError('malformed header line');
    }
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (/[\0\r\n]/.test(value)) throw new HeadParseError('malformed header value');
    raw.push([name, value]);
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return { status: Number(m[1]), statusText: m[2] ?? '', raw, headers, rest: buf.subarray(end + 4) };
}

/**
 * Read the response head from `socket`. Calls back once: with the head, or with
 * an error (malformed, too large, closed early, timed out). Leaves the socket
 * paused with no listeners of its own.
 */
export function readResponseHead(socket: Socket, timeoutMs: number, cb: (err: Error | undefined, head?: UpstreamResponseHead) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  let done = false;
  const finish = (err: Error | undefined, head?: UpstreamResponseHead): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    socket.off('error', onError);
    socket.pause();
    cb(err, head);
  };
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    let head: UpstreamResponseHead | undefined;
    try {
      head = parseResponseHead(buf);
    } catch (err) {
      finish(err as Error);
      return;
    }
    if (head) finish(undefined, head);
  };
  const onEnd = (): void => finish(new HeadParseError('upstream closed before answering'));
  const onError = (err: Error): void => finish(err);
  const timer = setTimeout(() => finish(Object.assign(new Error('read timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('error', onError);
  socket.resume();
}

/**
 * Tracks where a relayed HTT/1.1 response body ends (Content-Length or chunked
 * framing), so a refusal can be relayed byte for byte and both connections closed
 * right after it. Bodies without framing end when the upstream closes.
 */
export class BodyEnd {
  #remaining: number;
  readonly #chunked: boolean;
  // chunked state: 0 size line, 1 data, 2 CRLF after data, 3 trailers
  #state = 0;
  #line = '';
  done = false;

  constructor(headers: Readonly<Record<string, string>>, status: number) {
    this.#chunked = /(^|,)\s*chunked\s*$/i.test(headers['transfer-encoding'] ?? '');
    const len = headers['content-length'];
    this.#remaining = this.#chunked ? 0 : len !== undefined && /^\d+$/.test(len) ? Number(len) : -1;
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) this.done = true;
    else if (!this.#chunked && this.#remaining === 0) this.done = true;
  }

  /** Feed body bytes; returns how many belong to the body (the rest is to be dropped). */
  feed(chunk: Buffer): number {
    if (this.done) return 0;
    if (!this.#chunked) {
      if (this.#remaining < 0) return chunk.length;
      const n = Math.min(this.#remaining, chunk.length);
      this.#remaining -= n;
      if (this.#remaining === 0) this.done = true;
      return n;
    }
    let i = 0;
    while (i < chunk.length && !this.done) {
      if (this.#state === 1) {
        const n = Math.min(this.#remaining, chunk.length - i);
        i += n;
        this.#remaining -= n;
        if (this.#remaining === 0) this.#state = 2;
        continue;
      }
      const c = chunk[i++]!;
      if (c !== 0x0a) {
        if (this.#line.length < 1024) this.#line += String.fromCharCode(c);
        continue;
      }
      const line = this.#line.replace(/\r$/, '');
      this.#line = '';
      if (this.#state === 0) {
        const size = parseInt(line.split(';')[0]!, 16);
        if (!Number.isFinite(size) || size < 0) {
          this.done = true;
        } else if (size === 0) {
          this.#state = 3;
        } else {
          this.#remaining = size;
          this.#state = 1;
        }
      } else if (this.#state === 2) {
        this.#state = 0;
      } else if (line === '') {
        this.done = true;
      }
    }
    return i;
  }
}
