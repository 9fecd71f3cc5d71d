/**
 * The classes metrics and the access log count by: every catalogue code belongs to
 * one rejection class, every WebSocket close code to one close class. Small fixed
 * sets, so they are safe as Prometheus labels. `docs/metrics.md` shows both tables;
 * `test/metrics.test.js` checks that every catalogue code has a class.
 */
import type { ErrorCode } from '../core/errors.js';

export type ReasonClass = 'auth' | 'authz' | 'origin' | 'limit' | 'validation' | 'upstream' | 'protocol' | 'other';

export const REASON_CLASSES: readonly ReasonClass[] = ['auth', 'authz', 'origin', 'limit', 'validation', 'upstream', 'protocol', 'other'];

/**
 * Catalogue code -> rejection class. Typed over every ErrorCode: a code added to the
 * catalogue without a row here does not compile.
 *
 * - protocol: the request or the frames break HTTP/WebSocket rules (malformed, wrong
 *   method/key/version, early data, bad framing or UTF-8, headers too large or too slow);
 * - validation: well-formed, but refused by what the gateway checks about it (path,
 *   Host, no such route, message size, content, type);
 * - auth: no valid credential; authz: a credential, not allowed (or revoked); origin:
 *   Origin refused; limit: a limit plugin or the pending-handshake cap;
 * - upstream: the upstream failed, timed out or broke the handshake;
 * - other: timeouts and lifecycle (idle, stall, max duration, shutdown), internal and
 *   plugin failures, and the admin API's own codes (never on proxied traffic).
 */
export const REASON_CLASS: Readonly<Record<ErrorCode, ReasonClass>> = {
  BAD_REQUEST: 'protocol',
  BAD_PATH: 'validation',
  DUPLICATE_HOST: 'validation',
  ROUTE_NOT_FOUND: 'validation',

  UPGRADE_NOT_SUPPORTED: 'protocol',
  WS_NOT_ENABLED: 'validation',
  WS_BAD_METHOD: 'protocol',
  WS_BAD_KEY: 'protocol',
  WS_BAD_VERSION: 'protocol',
  WS_EARLY_DATA: 'protocol',
  WS_UPSTREAM_BAD_HANDSHAKE: 'upstream',

  WS_IDLE_TIMEOUT: 'other',
  WS_PROTOCOL_ERROR: 'protocol',
  WS_INVALID_PAYLOAD: 'protocol',
  WS_MESSAGE_TOO_BIG: 'validation',
  WS_STALLED: 'other',
  MESSAGE_REJECTED: 'validation',
  MESSAGE_INVALID: 'validation',
  MESSAGE_TYPE_REFUSED: 'validation',
  UPSTREAM_CLOSED: 'upstream',

  SSE_MAX_DURATION: 'other',

  UPSTREAM_UNAVAILABLE: 'upstream',
  UPSTREAM_TIMEOUT: 'upstream',
  HANDSHAKE_TIMEOUT: 'other',

  AUTH_MISSING: 'auth',
  AUTH_INVALID: 'auth',
  CREDENTIAL_EXPIRED: 'auth',
  AUTH_UNAVAILABLE: 'auth',
  CONSUMER_DENIED: 'authz',
  AUTHZ_DENIED: 'authz',
  IP_DENIED: 'authz',
  ORIGIN_DENIED: 'origin',
  FORWARD_AUTH_DENIED: 'authz',
  REVOKED: 'authz',

  LIMIT_EXCEEDED: 'limit',
  LIMIT_STORE_UNAVAILABLE: 'limit',
  TOO_MANY_PENDING_HANDSHAKES: 'limit',

  ACCESS_DENIED: 'authz',
  PLUGIN_ERROR: 'other',
  INTERNAL_ERROR: 'other',
  SHUTTING_DOWN: 'other',
  ROUTE_CHANGED: 'other',
  REQUEST_TIMEOUT: 'protocol',
  HEADERS_TOO_LARGE: 'protocol',

  ADMIN_UNAUTHORIZED: 'other',
  ADMIN_NOT_FOUND: 'other',
  ADMIN_METHOD_NOT_ALLOWED: 'other',
  ADMIN_BAD_REQUEST: 'other',
  ADMIN_BODY_TOO_LARGE: 'other',
  ADMIN_UNAVAILABLE: 'other',
  CONFIG_INVALID: 'other',
};

/** The class of a catalogue code; `other` for anything else (a plugin's own string). */
export function reasonClass(code: string): ReasonClass {
  return Object.hasOwn(REASON_CLASS, code) ? REASON_CLASS[code as ErrorCode] : 'other';
}

export type CloseClass = 'normal' | 'going_away' | 'protocol' | 'policy' | 'error' | 'abnormal' | 'application' | 'other';

export const CLOSE_CLASSES: readonly CloseClass[] = ['normal', 'going_away', 'protocol', 'policy', 'error', 'abnormal', 'application', 'other'];

/**
 * WebSocket close code -> close class:
 * 1000 normal · 1001 going_away · 1002, 1003, 1007, 1009, 1010 protocol (the peer sent
 * something it must not: bad frames, a type, invalid data, too big, missing extension) ·
 * 1008 policy · 1011, 1012, 1013, 1014 error (server error, restart, try again later,
 * bad gateway) · 1006 abnormal (no close frame: the connection just ended) · 3000-4999
 * application · anything else (1005 no status, 1015, unknown) other.
 */
export function closeClass(code: number | undefined): CloseClass {
  switch (code) {
    case 1000:
      return 'normal';
    case 1001:
      return 'going_away';
    case 1002:
    case 1003:
    case 1007:
    case 1009:
    case 1010:
      return 'protocol';
    case 1008:
      return 'policy';
    case 1011:
    case 1012:
    case 1013:
    case 1014:
      return 'error';
    case 1006:
      return 'abnormal';
    default:
      return code !== undefined && code >= 3000 && code <= 4999 ? 'application' : 'other';
  }
}
