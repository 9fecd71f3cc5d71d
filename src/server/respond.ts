/**
 * Answers a client with a catalogue error: on an HTTP response, or written raw on
 * an upgrade socket (before any 101). The client gets the code and a short
 * message; the cause stays in the log.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody, type GatewayError } from '../core/errors.js';

/**
 * `body`, when given, replaces the JSON error body (a plugin relaying another
 * service's answer); its Content-Type then comes from `err.headers`, if any.
 */
export function sendError(res: ServerResponse, err: GatewayError, requestId: string, body?: string | Buffer): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = body ?? errorBody(err.code, err.message, requestId);
  res.writeHead(err.status, {
    ...(body === undefined ? { 'content-type': 'application/json' } : {}),
    'content-length': Buffer.byteLength(payload),
    'x-request-id': requestId,
    'x-portcullis-error': err.code,
    ...err.headers,
  });
  res.end(payload);
}

/** Writes an HTTP error response on a raw socket and closes it. `body` as for sendError. */
export function rejectSocket(socket: Duplex, err: GatewayError, requestId: string | undefined, body?: string | Buffer): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const payload = body ?? errorBody(err.code, err.message, requestId);
  let head = `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n`;
  head += body === undefined ? 'Connection: close\r\nContent-Type: application/json\r\n' : 'Connection: close\r\n';
  head += `Content-Length: ${Buffer.byteLength(payload)}\r\n`;
  if (requestId) head += `X-Request-Id: ${requestId}\r\n`;
  head += `X-Portcullis-Error: ${err.code}\r\n`;
  if (err.headers) for (const [k, v] of Object.entries(err.headers)) head += `${k}: ${v}\r\n`;
  if (typeof payload === 'string') socket.end(`${head}\r\n${payload}`);
  else socket.end(Buffer.concat([Buffer.from(`${head}\r\n`), payload]));
  // A client that never reads must not pin the socket.
  setTimeout(destroyLater, 2000, socket).unref();
}

function destroyLater(socket: Duplex): void {
  socket.destroy();
}
