/**
 * The openid-connect config: its JSON Schema (APISIX's attribute names, plus the
 * Portcullis additions for browser credential transport and consumer mapping)
 * and init(), which turns a validated config into the plugin state.
 */
import { consumersByName } from '../shared/consumer-index.js';
import type { ConsumerInfo, PluginContext } from '../../core/plugin.js';
import type { CredentialSources } from '../shared/credentials.js';
import { OpenIdProvider } from './provider.js';
import { TokenCache } from './token-cache.js';
import type { CheckedToken } from './token-cache.js';

/** Asymmetric JWS algorithms accepted by default (never HS*: the keys come from a public JWKS). */
export const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const SUBPROTOCOL_TOKEN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

export const schema = {
  type: 'object',
  properties: {
    discovery: { type: 'string', pattern: '^https?://', description: 'URL of the provider\'s /.well-known/openid-configuration' },
    client_id: { type: 'string', minLength: 1 },
    client_secret: { type: 'string', minLength: 1 },
    bearer_only: { type: 'boolean', default: true },
    // APISIX compatibility: bearer mode denies unauthenticated requests; TLS is always verified.
    unauth_action: { type: 'string', enum: ['deny'] },
    ssl_verify: { type: 'boolean' },
    use_jwks: { type: 'boolean', default: false },
    introspection_endpoint: { type: 'string', pattern: '^https?://' },
    introspection_endpoint_auth_method: { type: 'string', enum: ['client_secret_basic', 'client_secret_post'], default: 'client_secret_basic' },
    introspection_interval: { type: 'integer', minimum: 0, default: 0 },
    required_scopes: { type: 'array', items: { type: 'string', minLength: 1, pattern: '^[^ ]+$' }, uniqueItems: true },
    claim_validator: {
      type: 'object',
      properties: {
        issuer: {
          type: 'object',
          properties: { valid_issuers: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 } },
          additionalProperties: false,
        },
        audience: {
          type: 'object',
          properties: {
            claim: { type: 'string', minLength: 1, default: 'aud' },
            required: { type: 'boolean', default: false },
            match_with_client_id: { type: 'boolean', default: false },
            valid_audiences: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
          },
          additionalProperties: false,
        },
      },
      additionalProperties: false,
    },
    token_signing_alg_values_expected: {
      anyOf: [
        { type: 'string', enum: [...ASYMMETRIC_ALGS] },
        { type: 'array', items: { type: 'string', enum: [...ASYMMETRIC_ALGS] }, minItems: 1, uniqueItems: true },
      ],
    },
    timeout: { type: 'integer', minimum: 1, default: 3 },
    realm: { type: 'string', pattern: '^[^"\\\\\\u0000-\\u001f]*$', default: 'portcullis' },
    query: { type: 'string', minLength: 1 },
    cookie: { type: 'string', minLength: 1, pattern: '^[^=;,\\s]+$' },
    subprotocol: { type: 'string', minLength: 1, pattern: SUBPROTOCOL_TOKEN },
    hide_credentials: { type: 'boolean', default: false },
    consumer_claim: { type: 'string', minLength: 1 },
  },
  required: ['discovery', 'client_id'],
  additionalProperties: false,
} as const;

export interface OidcConfig {
  discovery: string;
  client_id: string;
  client_secret?: string;
  bearer_only: boolean;
  unauth_action?: 'deny';
  ssl_verify?: boolean;
  use_jwks: boolean;
  introspection_endpoint?: string;
  introspection_endpoint_auth_method: 'client_secret_basic' | 'client_secret_post';
  introspection_interval: number;
  required_scopes?: string[];
  claim_validator?: {
    issuer?: { valid_issuers?: string[] };
    audience?: { claim: string; required: boolean; match_with_client_id: boolean; valid_audiences?: string[] };
  };
  token_signing_alg_values_expected?: string | string[];
  timeout: number;
  realm: string;
  query?: string;
  cookie?: string;
  subprotocol?: string;
  hide_credentials: boolean;
  consumer_claim?: string;
}

export interface OidcState {
  readonly provider: OpenIdProvider;
  readonly clientId: string;
  readonly useJwks: boolean;
  /** Introspection: endpoint override, client authentication. */
  readonly introspection: {
    readonly endpoint: string | undefined;
    readonly method: 'client_secret_basic' | 'client_secret_post';
    readonly secret: string;
  };
  /** How long an introspection answer is reused (0: never). */
  readonly intervalMs: number;
  readonly requiredScopes: readonly string[];
  /** Configured trusted issuers; undefined: the discovery document's issuer. */
  readonly validIssuers: ReadonlySet<string> | undefined;
  readonly audience: {
    readonly claim: string;
    readonly required: boolean;
    readonly matchClientId: boolean;
    readonly valid: ReadonlySet<string> | undefined;
  };
  readonly algorithms: string[];
  readonly realm: string;
  readonly sources: CredentialSources;
  readonly hide: boolean;
  readonly consumerClaim: string | undefined;
  readonly consumers: ReadonlyMap<string, ConsumerInfo>;
  readonly cache: TokenCache;
  readonly inflight: Map<string, Promise<CheckedToken>>;
}

/**
 * One OpenIdProvider (discovery document and JWKS cache) per provider and config:
 * every route of a config naming the same discovery URL shares it. Keyed on the
 * consumers array, which is one per loaded config.
 */
const providers = new WeakMap<readonly ConsumerInfo[], Map<string, OpenIdProvider>>();

function providerFor(config: readonly ConsumerInfo[], discovery: string, timeoutMs: number): OpenIdProvider {
  let byUrl = providers.get(config);
  if (!byUrl) {
    byUrl = new Map();
    providers.set(config, byUrl);
  }
  const key = `${timeoutMs} ${discovery}`;
  let p = byUrl.get(key);
  if (!p) {
    p = new OpenIdProvider(discovery, timeoutMs);
    byUrl.set(key, p);
  }
  return p;
}

export function init(config: OidcConfig, ctx: PluginContext): OidcState {
  if (!config.bearer_only) {
    throw new Error(
      'bearer_only: false is not supported: the login flow it enables (redirects to the provider, a session cookie) ' +
        'cannot run on a WebSocket handshake or an EventSource request, which follow no redirect; ' +
        'clients must present an access token (set bearer_only: true or leave it out)',
    );
  }
  if (config.ssl_verify === false) {
    throw new Error(
      'ssl_verify: false is not supported: the provider\'s TLS certificate is always verified ' +
        '(for a private CA, give its certificate to Node with NODE_EXTRA_CA_CERTS)',
    );
  }
  checkUrl(config.discovery, 'discovery');
  if (config.introspection_endpoint !== undefined) checkUrl(config.introspection_endpoint, 'introspection_endpoint');
  if (!config.use_jwks && config.client_secret === undefined) {
    throw new Error('client_secret is required for token introspection (use_jwks: false): the gateway authenticates to the introspection endpoint with client_id and client_secret');
  }
  const algs = config.token_signing_alg_values_expected;
  const audience = config.claim_validator?.audience;
  const issuers = config.claim_validator?.issuer?.valid_issuers;
  return {
    provider: providerFor(ctx.consumers, config.discovery, config.timeout * 1000),
    clientId: config.client_id,
    useJwks: config.use_jwks,
    introspection: {
      endpoint: config.introspection_endpoint,
      method: config.introspection_endpoint_auth_method,
      secret: config.client_secret ?? '',
    },
    intervalMs: config.introspection_interval * 1000,
    requiredScopes: config.required_scopes ?? [],
    validIssuers: issuers ? new Set(issuers) : undefined,
    audience: {
      claim: audience?.claim ?? 'aud',
      required: audience?.required ?? false,
      matchClientId: audience?.match_with_client_id ?? false,
      valid: audience?.valid_audiences ? new Set(audience.valid_audiences) : undefined,
    },
    algorithms: algs === undefined ? [...ASYMMETRIC_ALGS] : typeof algs === 'string' ? [algs] : [...algs],
    realm: config.realm,
    sources: { query: config.query, cookie: config.cookie, subprotocol: config.subprotocol },
    hide: config.hide_credentials,
    consumerClaim: config.consumer_claim,
    consumers: consumersByName(ctx.consumers),
    cache: new TokenCache(),
    inflight: new Map(),
  };
}

function checkUrl(value: string, name: string): void {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new Error(`${name} is not a valid URL`);
  }
  if (u.username !== '' || u.password !== '') throw new Error(`${name} must not carry credentials in the URL`);
}
