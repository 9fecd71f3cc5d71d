/**
 * origin-restriction (Portcullis; priority 3100, rewrite phase): a WebSocket
 * handshake or SSE request whose `Origin` is not in `allow_origins` gets 403
 * ORIGIN_DENIED before the upstream is contacted. CORS does not apply to
 * WebSocket, so this is what stops cross-site WebSocket hijacking: a page on
 * another site opening a socket with the user's cookies.
 *
 * It runs in `rewrite`, at a priority above every authentication plugin, so a
 * cross-site request is refused before any credential is looked at (403, not 401;
 * no token verification or identity-provider call on behalf of a foreign page).
 * The consequence: it belongs on routes and global rules; set on a consumer it
 * would have no effect (consumer configs apply from the access phase on).
 *
 * Which requests are judged is `protocols`: a WebSocket handshake is `websocket`,
 * a request that accepts `text/event-stream` (every EventSource request does) is
 * `sse`, anything else is `http`. Default: websocket and sse.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { definePlugin } from '../../core/plugin.js';
import type { Rejection } from '../../core/plugin.js';
import { canonicalOrigin } from './origin.js';

type Protocol = 'websocket' | 'sse' | 'http';

export interface OriginRestrictionConfig {
  allow_origins: string[];
  allow_missing_origin: boolean;
  protocols: Protocol[];
}

interface State {
  /** Canonical forms of the allowed origins. */
  allowed: Set<string>;
  allowMissing: boolean;
  websocket: boolean;
  sse: boolean;
  http: boolean;
}

export default definePlugin<OriginRestrictionConfig, State>({
  name: 'origin-restriction',
  version: '1.0.0',
  priority: 3100,
  schema: {
    type: 'object',
    properties: {
      allow_origins: {
        type: 'array',
        minItems: 1,
        items: { type: 'string', minLength: 1 },
        description: 'Origins admitted, exactly: scheme://host[:port].',
      },
      allow_missing_origin: { type: 'boolean', default: false, description: 'Admit requests without an Origin header.' },
      protocols: {
        type: 'array',
        minItems: 1,
        uniqueItems: true,
        items: { enum: ['websocket', 'sse', 'http'] },
        default: ['websocket', 'sse'],
        description: 'Which requests are judged; the others pass untouched.',
      },
    },
    required: ['allow_origins'],
    additionalProperties: false,
  },
  init(config) {
    const allowed = new Set<string>();
    for (const o of config.allow_origins) {
      if (o === 'null' || o === '*') {
        throw new Error(`allow_origins: "${o}" cannot be allowed; list each origin as scheme://host[:port]`);
      }
      const c = canonicalOrigin(o);
      if (c === undefined) {
        throw new Error(`allow_origins: "${o}" is not an origin (expected scheme://host[:port], without path or trailing slash)`);
      }
      allowed.add(c);
    }
    const p = new Set(config.protocols);
    return {
      allowed,
      allowMissing: config.allow_missing_origin,
      websocket: p.has('websocket'),
      sse: p.has('sse'),
      http: p.has('http'),
    };
  },
  rewrite(ctx, state) {
    if (ctx.websocket ? !state.websocket : isSse(ctx.headers) ? !state.sse : !state.http) return undefined;
    const origin = ctx.headers.origin;
    if (origin === undefined || origin === '') {
      return state.allowMissing ? undefined : deny('no Origin header');
    }
    // Browsers send the canonical form, so the exact lookup almost always decides.
    if (state.allowed.has(origin)) return undefined;
    const c = canonicalOrigin(origin);
    if (c !== undefined && state.allowed.has(c)) return undefined;
    if (origin === 'null') return deny('opaque origin "null"');
    // The value is untrusted: log it bounded and only when it parses as an origin.
    return deny(c === undefined ? 'malformed Origin header' : `origin ${c} is not allowed`);
  },
});

function deny(detail: string): Rejection {
  return { reject: 'ORIGIN_DENIED', detail };
}

const SSE_RE = /text\/event-stream/i;

function isSse(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept;
  return accept !== undefined && SSE_RE.test(accept);
}
