/**
 * jwt-auth config schemas: the route attributes (APISIX's, plus the issuer form)
 * and the credential a consumer carries (APISIX's consumer_schema).
 */

/** Every JWS algorithm jwt-auth verifies. `none` is never one of them. */
export const ALGORITHMS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;

export type Algorithm = (typeof ALGORITHMS)[number];

export const HMAC_ALGORITHMS: readonly Algorithm[] = ['HS256', 'HS384', 'HS512'];

export function isHmac(alg: string): boolean {
  return alg === 'HS256' || alg === 'HS384' || alg === 'HS512';
}

/** The credential a consumer carries: `consumers[].plugins.jwt-auth`. */
export interface JwtCredential {
  key: string;
  secret?: string;
  public_key?: string;
  algorithm: Algorithm;
  /** APISIX compatibility (lifetime of tokens APISIX signs); not used to verify. */
  exp: number;
  base64_secret: boolean;
  lifetime_grace_period: number;
}

/** The route (or global rule) attributes. */
export interface JwtAuthConfig {
  header: string;
  query: string;
  cookie: string;
  hide_credentials: boolean;
  key_claim_name: string;
  claims_to_verify: ('exp' | 'nbf')[];
  realm: string;
  subprotocol?: string;
  // issuer form
  jwks_uri?: string;
  public_key?: string;
  secret?: string;
  algorithms?: Algorithm[];
  consumer_claim?: string;
  jwks_cooldown?: number;
  jwks_max_age?: number;
  jwks_timeout?: number;
  // both forms
  issuer?: string | string[];
  audience?: string | string[];
  clock_skew?: number;
  required_claims?: string[];
  cache_size: number;
}

const stringOrList = {
  anyOf: [
    { type: 'string', minLength: 1 },
    { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
  ],
};

export const routeSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    header: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', default: 'authorization' },
    query: { type: 'string', minLength: 1, default: 'jwt' },
    cookie: { type: 'string', minLength: 1, default: 'jwt' },
    hide_credentials: { type: 'boolean', default: false },
    key_claim_name: { type: 'string', minLength: 1, default: 'key' },
    claims_to_verify: {
      type: 'array',
      items: { type: 'string', enum: ['exp', 'nbf'] },
      minItems: 1,
      uniqueItems: true,
      default: ['exp', 'nbf'],
    },
    realm: { type: 'string', minLength: 1, pattern: '^[^"\\\\\\r\\n]+$', default: 'jwt' },
    subprotocol: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$' },
    jwks_uri: { type: 'string', pattern: '^https?://[^\\s]+$' },
    public_key: { type: 'string', minLength: 1 },
    secret: { type: 'string', minLength: 1 },
    algorithms: { type: 'array', items: { type: 'string', enum: ALGORITHMS }, minItems: 1, uniqueItems: true },
    consumer_claim: { type: 'string', minLength: 1 },
    jwks_cooldown: { type: 'integer', minimum: 0 },
    jwks_max_age: { type: 'integer', minimum: 1 },
    jwks_timeout: { type: 'integer', minimum: 1, maximum: 60000 },
    issuer: stringOrList,
    audience: stringOrList,
    clock_skew: { type: 'integer', minimum: 0, maximum: 86400 },
    required_claims: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true },
    cache_size: { type: 'integer', minimum: 0, maximum: 1000000, default: 10000 },
  },
} as const;

export const consumerSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['key'],
  properties: {
    key: { type: 'string', minLength: 1 },
    secret: { type: 'string', minLength: 1 },
    public_key: { type: 'string', minLength: 1 },
    algorithm: { type: 'string', enum: ALGORITHMS, default: 'HS256' },
    exp: { type: 'integer', minimum: 1, default: 86400 },
    base64_secret: { type: 'boolean', default: false },
    lifetime_grace_period: { type: 'integer', minimum: 0, default: 0 },
  },
  // HS* verifies with `secret`; every other algorithm with `public_key`.
  if: { properties: { algorithm: { enum: HMAC_ALGORITHMS } } },
  then: { properties: { secret: { type: 'string' } }, required: ['secret'] },
  else: { properties: { public_key: { type: 'string' } }, required: ['public_key'] },
} as const;
