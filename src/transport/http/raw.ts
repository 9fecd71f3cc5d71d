/**
 * HTTP/1.1 on a raw upstream socket, for the two GETs without a body that are
 * hot paths: a tunnel-mode WebSocket handshake (ws/proxy.ts) and an event stream
 * (http/stream-request.ts). The request is written in one write and the response
 * head read by a small bounded parser; the body framing is in body.ts. This
 * replaces Node's HTTP client (an Agent, a ClientRequest, several writes, a
 * parser instance per connection and a copy of every body chunk) with a few
 * string operations.
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
 * Read the response head from `socket`, after the bytes already read (`initial`:
 * what followed an interim 1xx head). Calls back once: with the head, or with an
 * error (malformed, too large, closed early, timed out). Leaves the socket paused
 * with no listeners of its own.
 */
export function readResponseHead(
  socket: Socket,
  timeoutMs: number,
  cb: (err: Error | undefined, head?: UpstreamResponseHead) => void,
  initial: Buffer = Buffer.alloc(0),
): void {
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
  if (initial.length > 0) onData(initial);
  if (!done) socket.resume();
}
