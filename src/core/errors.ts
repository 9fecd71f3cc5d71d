/**
 * The error catalogue: every error Portcullis can produce toward a client has a
 * stable code here, the HTTP status it means at a handshake or request, and the
 * WebSocket close code it means on a live connection. `docs/errors.md` lists every
 * entry; `test/errors-doc.test.js` keeps the two in step.
 *
 * Clients get `message` (short, generic); the cause goes to the log.
 */

export interface ErrorSpec {
  /** HTTP status at a handshake or plain request. */
  readonly status: number;
  /** WebSocket close code on a live connection. */
  readonly close: number;
  /** Short message for the client; never carries input or secrets. */
  readonly message: string;
}

export const ERRORS = {
  // Request shape (before routing)
  BAD_REQUEST: { status: 400, close: 1002, message: 'Bad request' },
  BAD_PATH: { status: 400, close: 1008, message: 'Invalid request path' },
  DUPLICATE_HOST: { status: 400, close: 1008, message: 'Duplicate Host header' },
  ROUTE_NOT_FOUND: { status: 404, close: 1008, message: 'Route not found' },

  // WebSocket handshake
  UPGRADE_NOT_SUPPORTED: { status: 400, close: 1002, message: 'Only Upgrade: websocket is supported' },
  WS_NOT_ENABLED: { status: 400, close: 1008, message: 'WebSocket is not enabled on this route' },
  WS_BAD_METHOD: { status: 405, close: 1002, message: 'WebSocket handshake must use GET' },
  WS_BAD_KEY: { status: 400, close: 1002, message: 'Missing or invalid Sec-WebSocket-Key' },
  WS_BAD_VERSION: { status: 426, close: 1002, message: 'Unsupported WebSocket version' },
  WS_EARLY_DATA: { status: 400, close: 1002, message: 'Data sent before the handshake completed' },
  WS_UPSTREAM_BAD_HANDSHAKE: { status: 502, close: 1014, message: 'Upstream sent an invalid WebSocket handshake' },

  // Live WebSocket connections
  WS_IDLE_TIMEOUT: { status: 408, close: 1001, message: 'Idle timeout' },
  WS_PROTOCOL_ERROR: { status: 400, close: 1002, message: 'WebSocket protocol error' },
  WS_INVALID_PAYLOAD: { status: 400, close: 1007, message: 'Invalid message payload' },
  WS_MESSAGE_TOO_BIG: { status: 413, close: 1009, message: 'Message too big' },
  WS_STALLED: { status: 408, close: 1008, message: 'Peer stopped reading' },
  MESSAGE_REJECTED: { status: 403, close: 1008, message: 'Message rejected by policy' },
  MESSAGE_INVALID: { status: 400, close: 1007, message: 'Invalid message' },
  MESSAGE_TYPE_REFUSED: { status: 415, close: 1003, message: 'Message type not accepted' },
  UPSTREAM_CLOSED: { status: 502, close: 1014, message: 'Upstream connection lost' },

  // SSE
  SSE_MAX_DURATION: { status: 200, close: 1001, message: 'Stream reached its maximum duration' },

  // Upstream
  UPSTREAM_UNAVAILABLE: { status: 502, close: 1014, message: 'Upstream unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, close: 1014, message: 'Upstream timed out' },
  HANDSHAKE_TIMEOUT: { status: 504, close: 1001, message: 'Handshake timed out' },

  // Authentication and authorization
  AUTH_MISSING: { status: 401, close: 1008, message: 'Missing credentials' },
  AUTH_INVALID: { status: 401, close: 1008, message: 'Invalid credentials' },
  CREDENTIAL_EXPIRED: { status: 401, close: 1008, message: 'Credential expired' },
  AUTH_UNAVAILABLE: { status: 503, close: 1013, message: 'Authentication service unavailable' },
  CONSUMER_DENIED: { status: 403, close: 1008, message: 'The consumer is not allowed' },
  AUTHZ_DENIED: { status: 403, close: 1008, message: 'Not authorized' },
  IP_DENIED: { status: 403, close: 1008, message: 'Your IP address is not allowed' },
  ORIGIN_DENIED: { status: 403, close: 1008, message: 'Origin not allowed' },
  FORWARD_AUTH_DENIED: { status: 403, close: 1008, message: 'Denied by the authorization service' },
  REVOKED: { status: 403, close: 1008, message: 'Access revoked' },

  // Limits (limit-conn, limit-req, limit-count, limit-messages)
  LIMIT_EXCEEDED: { status: 503, close: 1008, message: 'Too many requests or connections; retry later' },
  LIMIT_STORE_UNAVAILABLE: { status: 503, close: 1013, message: 'Service temporarily unavailable; retry later' },
  TOO_MANY_PENDING_HANDSHAKES: { status: 429, close: 1008, message: 'Too many handshakes in progress; retry later' },

  // Plugins and the gateway itself
  ACCESS_DENIED: { status: 403, close: 1008, message: 'Access denied' },
  PLUGIN_ERROR: { status: 500, close: 1011, message: 'Internal error' },
  INTERNAL_ERROR: { status: 500, close: 1011, message: 'Internal error' },
  SHUTTING_DOWN: { status: 503, close: 1001, message: 'Gateway is shutting down' },
  ROUTE_CHANGED: { status: 503, close: 1012, message: 'Configuration changed; reconnect' },
  REQUEST_TIMEOUT: { status: 408, close: 1001, message: 'Request timeout' },
  HEADERS_TOO_LARGE: { status: 431, close: 1009, message: 'Request header fields too large' },

  // Admin API (answers on the admin listener; never on a proxied connection)
  ADMIN_UNAUTHORIZED: { status: 401, close: 1008, message: 'Missing or invalid admin API key' },
  ADMIN_NOT_FOUND: { status: 404, close: 1008, message: 'No such admin endpoint' },
  ADMIN_METHOD_NOT_ALLOWED: { status: 405, close: 1008, message: 'Method not allowed on this admin endpoint' },
  ADMIN_BAD_REQUEST: { status: 400, close: 1008, message: 'Bad admin request' },
  ADMIN_BODY_TOO_LARGE: { status: 413, close: 1009, message: 'Request body too large' },
  ADMIN_UNAVAILABLE: { status: 503, close: 1013, message: 'Admin operation unavailable; retry later' },
  CONFIG_INVALID: { status: 400, close: 1008, message: 'Invalid config' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERRORS, code);
}

/**
 * A rejection or failure caused by traffic, carrying its catalogue code. Thrown or
 * returned inside the gateway; turned into a status or close code at the edge.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly closeCode: number;
  /** Extra response headers, e.g. `Allow`, `Retry-After`, `WWW-Authenticate`. */
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** Detail for the log only. */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, opts: { status?: number; message?: string; headers?: Record<string, string>; detail?: string } = {}) {
    const spec: ErrorSpec = ERRORS[code];
    super(opts.message ?? spec.message);
    this.name = 'GatewayError';
    this.code = code;
    this.status = opts.status ?? spec.status;
    this.closeCode = spec.close;
    // Every 429 and 503 says when to come back, so browsers and SDKs do not reconnect
    // in a storm: the thrower's own Retry-After (a limit knows its wait), else 1 s.
    this.headers = (this.status === 429 || this.status === 503) && !hasRetryAfter(opts.headers) ? { ...opts.headers, 'retry-after': DEFAULT_RETRY_AFTER } : opts.headers;
    this.detail = opts.detail;
  }
}

/** Seconds, for a 429 or 503 whose thrower did not say. */
const DEFAULT_RETRY_AFTER = '1';

function hasRetryAfter(headers: Readonly<Record<string, string>> | undefined): boolean {
  if (headers === undefined) return false;
  for (const name of Object.keys(headers)) if (name.toLowerCase() === 'retry-after') return true;
  return false;
}

/** The JSON body sent with an error status. Same shape for every error. */
export function errorBody(code: string, message: string, requestId?: string): string {
  return JSON.stringify(requestId ? { error: { code, message, request_id: requestId } } : { error: { code, message } });
}
