/**
 * forward-auth's config: APISIX's attributes (same names, defaults and bounds),
 * plus `cache`, which APISIX does not have.
 */

/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" } as const;
const HEADER_LIST = { type: 'array', items: HEADER_NAME, default: [] } as const;

export const schema = {
  type: 'object',
  properties: {
    uri: { type: 'string', pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]' },
    request_method: { type: 'string', enum: ['GET', 'POST'], default: 'GET' },
    request_headers: HEADER_LIST,
    upstream_headers: HEADER_LIST,
    client_headers: HEADER_LIST,
    timeout: { type: 'integer', minimum: 1, maximum: 60000, default: 3000 },
    keepalive: { type: 'boolean', default: true },
    keepalive_timeout: { type: 'integer', minimum: 1000, default: 60000 },
    keepalive_pool: { type: 'integer', minimum: 1, default: 5 },
    ssl_verify: { type: 'boolean', default: true },
    allow_degradation: { type: 'boolean', default: false },
    status_on_error: { type: 'integer', minimum: 200, maximum: 599, default: 403 },
    cache: {
      type: 'object',
      properties: {
        ttl: { type: 'number', minimum: 0, default: 0 },
        deny_ttl: { type: 'number', minimum: 0, default: 0 },
        max_entries: { type: 'integer', minimum: 1, default: 10000 },
        key_headers: { type: 'array', items: HEADER_NAME, minItems: 1 },
      },
      additionalProperties: false,
    },
  },
  required: ['uri'],
  additionalProperties: false,
} as const;

export interface CacheConfig {
  /** Seconds an allow decision is reused (0: not cached). */
  ttl: number;
  /** Seconds a deny decision is reused (0: not cached). */
  deny_ttl: number;
  max_entries: number;
  /** Headers sent to the service whose values make the key (default: all of them). */
  key_headers?: string[];
}

export interface ForwardAuthConfig {
  uri: string;
  request_method: 'GET' | 'POST';
  request_headers: string[];
  upstream_headers: string[];
  client_headers: string[];
  timeout: number;
  keepalive: boolean;
  keepalive_timeout: number;
  keepalive_pool: number;
  ssl_verify: boolean;
  allow_degradation: boolean;
  status_on_error: number;
  cache?: CacheConfig;
}
