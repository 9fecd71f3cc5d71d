/**
 * jwt-auth (APISIX, priority 2510): authenticate with a JSON Web Token read from
 * a header (`Bearer ` optional), a query parameter, a cookie or, for WebSocket, an
 * offered subprotocol. The consumer-bound form is APISIX's; the issuer form (a
 * route-level `jwks_uri`, `public_key` or `secret`) is Portcullis's addition.
 * A connection lives no longer than its token: see ctx.limitLifetime().
 */
import { definePlugin, type ConsumerInfo } from '../../core/plugin.js';
import { consumerKeysOf, consumersByName, jwksSourceFor, publicKeyFor, secretKey } from './keys.js';
import { consumerSchema, isHmac, routeSchema, type Algorithm, type JwtAuthConfig } from './schema.js';
import { JwtAuth, PLUGIN, type CommonSettings, type IssuerKeys } from './verify.js';

const ISSUER_ONLY = ['algorithms', 'consumer_claim', 'jwks_cooldown', 'jwks_max_age', 'jwks_timeout'] as const;
const JWKS_ONLY = ['jwks_cooldown', 'jwks_max_age', 'jwks_timeout'] as const;

export default definePlugin<JwtAuthConfig, JwtAuth>({
  name: PLUGIN,
  version: '1.0.0',
  priority: 2510,
  schema: routeSchema,
  consumerSchema,
  init(config, { consumers }) {
    return new JwtAuth(settings(config, consumers));
  },
  rewrite(ctx, state) {
    return state.authenticate(ctx);
  },
});

function settings(c: JwtAuthConfig, consumers: readonly ConsumerInfo[]) {
  const header = c.header.toLowerCase();
  const common: CommonSettings = {
    sources: { header, query: c.query, cookie: c.cookie, subprotocol: c.subprotocol },
    hide: c.hide_credentials,
    realm: c.realm,
    issuer: c.issuer,
    audience: c.audience,
    requiredClaims: c.required_claims ?? [],
    clockSkew: c.clock_skew ?? 0,
    cacheSize: c.cache_size,
  };
  const sources = (['jwks_uri', 'public_key', 'secret'] as const).filter((k) => c[k] !== undefined);
  if (sources.length > 1) throw new Error(`set only one of jwks_uri, public_key, secret (found ${sources.join(', ')})`);

  if (sources.length === 0) {
    const stray = ISSUER_ONLY.filter((k) => c[k] !== undefined);
    if (stray.length > 0) {
      throw new Error(`${stray.join(', ')} need a route key (jwks_uri, public_key or secret); without one, consumers' credentials verify tokens`);
    }
    return { ...common, form: 'consumer' as const, keyClaim: c.key_claim_name, keys: consumerKeysOf(consumers) };
  }

  if (c.jwks_uri === undefined) {
    const stray = JWKS_ONLY.filter((k) => c[k] !== undefined);
    if (stray.length > 0) throw new Error(`${stray.join(', ')} only apply with jwks_uri`);
  }
  let algorithms: Algorithm[];
  if (c.algorithms) algorithms = c.algorithms;
  else if (c.secret !== undefined) algorithms = ['HS256'];
  else throw new Error(`algorithms is required with ${sources[0]}: list the algorithms the issuer signs with`);

  let keys: IssuerKeys;
  if (c.secret !== undefined) {
    const wrong = algorithms.filter((a) => !isHmac(a));
    if (wrong.length > 0) throw new Error(`a secret verifies only HS256, HS384 or HS512 (found ${wrong.join(', ')})`);
    keys = { kind: 'static', key: secretKey(c.secret, false, 'jwt-auth') };
  } else if (c.public_key !== undefined) {
    keys = { kind: 'static', key: publicKeyFor(c.public_key, algorithms, 'jwt-auth') };
  } else {
    const wrong = algorithms.filter(isHmac);
    if (wrong.length > 0) throw new Error(`a JWKS is for public keys: ${wrong.join(', ')} cannot be verified with jwks_uri`);
    const source = jwksSourceFor(consumers, c.jwks_uri!, {
      cooldownMs: (c.jwks_cooldown ?? 30) * 1000,
      maxAgeMs: (c.jwks_max_age ?? 600) * 1000,
      timeoutMs: c.jwks_timeout ?? 5000,
    });
    keys = { kind: 'jwks', source };
  }
  return {
    ...common,
    form: 'issuer' as const,
    algorithms,
    keys,
    consumerClaim: c.consumer_claim,
    consumers: consumersByName(consumers),
  };
}
