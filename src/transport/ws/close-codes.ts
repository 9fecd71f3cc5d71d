/** Close-code mapping between the two sides of a proxied WebSocket. */
import type { ErrorCode } from '../../core/errors.js';
import type { Direction } from '../../core/plugin.js';

/**
 * The code to send to the other side when `from` closed with `code`. Codes that
 * must not be sent on the wire (1005 no status, 1006 abnormal, 1015 TLS) become:
 * 1005 -> a close without a code; a vanished upstream -> 1014 (bad gateway) to the
 * client; a vanished client -> 1001 (going away) to the upstream.
 */
export function peerCloseCode(from: Direction, code: number): number {
  if (code === 1005) return 1005;
  if (code === 1006 || code === 1015) return from === 'upstream' ? 1014 : 1001;
  return code;
}

/**
 * Catalogue error for an error from `ws`'s parser (its codes name the violation;
 * zlib's `Z_*` codes mean compressed data that does not inflate).
 */
export function errorForWsError(err: Error): ErrorCode {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH':
    case 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH':
    case 'WS_ERR_TOO_MANY_BUFFERED_PARTS':
      return 'WS_MESSAGE_TOO_BIG';
    case 'WS_ERR_INVALID_UTF8':
      return 'WS_INVALID_PAYLOAD';
    case undefined:
      return 'UPSTREAM_CLOSED';
    default:
      if (code.startsWith('WS_ERR_')) return 'WS_PROTOCOL_ERROR';
      if (code.startsWith('Z_')) return 'WS_INVALID_PAYLOAD';
      return 'UPSTREAM_CLOSED';
  }
}
