/**
 * Answers a client with a catalogue error: on an HTTP response, or written raw on
 * an upgrade socket (before any 101). The client gets the code and a short
 * message; the cause stays in the log.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody, type GatewayError } from '../core/errors.js';

export function sendError(res: ServerResponse, err: GatewayError, requestId: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(err.code, err.message, requestId);
  res.writeHead(err.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    'x-portcullis-error': err.code,
    ...err.headers,
  });
  res.end(body);
}

/** Writes an HTTP error response on a raw socket and closes it. */
export function rejectSocket(socket: Duplex, err: GatewayError, requestId: string | undefined): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(err.code, err.message, requestId);
  let head = `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n`;
  head += 'Connection: close\r\nContent-Type: application/json\r\n';
  head += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  if (requestId) head += `X-Request-Id: ${requestId}\r\n`;
  head += `X-Portcullis-Error: ${err.code}\r\n`;
  if (err.headers) for (const [k, v] of Object.entries(err.headers)) head += `${k}: ${v}\r\n`;
  socket.end(`${head}\r\n${body}`);
  // A client that never reads must not pin the socket.
  setTimeout(destroyLater, 2000, socket).unref();
}

function destroyLater(socket: Duplex): void {
  socket.destroy();
}
