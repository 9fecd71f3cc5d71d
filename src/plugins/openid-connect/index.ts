/**
 * openid-connect: admits requests and WebSocket handshakes that carry an access
 * token issued by an OpenID provider, found through its discovery document.
 * Bearer mode only (APISIX `bearer_only: true`). The token is checked by
 * introspection (RFC 7662) or, with `use_jwks`, against the provider's keys;
 * a live connection is closed when the token expires. See
 * docs/plugins/openid-connect.md.
 */
import { definePlugin } from '../../core/plugin.js';
import type { AccessResult, MaybePromise, RequestContext } from '../../core/plugin.js';
import { findCredential, hideCredential, wwwAuthenticate } from '../shared/credentials.js';
import type { FoundCredential } from '../shared/credentials.js';
import { admit, checkToken, invalid, refusal } from './check.js';
import { init, schema } from './config.js';
import type { OidcConfig, OidcState } from './config.js';
import { tokenKey } from './token-cache.js';

/** Longer tokens are refused without asking the provider. */
const MAX_TOKEN_LENGTH = 8192;

export default definePlugin<OidcConfig, OidcState>({
  name: 'openid-connect',
  version: '1.0.0',
  priority: 2599,
  schema,
  init,
  rewrite(ctx, state): MaybePromise<AccessResult> {
    const found = findToken(ctx, state);
    if (!found) {
      return { reject: 'AUTH_MISSING', headers: wwwAuthenticate('Bearer', state.realm), detail: 'no access token' };
    }
    if (state.hide) hideCredential(ctx, found);
    const token = found.value;
    if (token.length > MAX_TOKEN_LENGTH) return invalid(state, `access token longer than ${MAX_TOKEN_LENGTH} characters`);
    const key = tokenKey(token);
    const hit = state.cache.get(key);
    if (hit) return admit(ctx, state, hit);
    return checkToken(state, token, key).then(
      (checked) => admit(ctx, state, checked),
      (err: unknown) => refusal(state, err),
    );
  },
});

/**
 * The access token: `Authorization: Bearer`, then `X-Access-Token` (as APISIX),
 * then the configured query parameter, cookie and subprotocol. Offered
 * subprotocols carrying a token are withheld from the upstream in every case.
 */
function findToken(ctx: RequestContext, state: OidcState): FoundCredential | undefined {
  const other = findCredential(ctx, state.sources);
  const auth = first(ctx.headers.authorization);
  if (auth !== undefined) {
    const token = bearer(auth);
    if (token !== undefined) return { value: token, from: 'header', name: 'authorization' };
  }
  const x = first(ctx.headers['x-access-token']);
  if (x !== undefined) {
    const token = bearer(x) ?? x.trim();
    if (token !== '') return { value: token, from: 'header', name: 'x-access-token' };
  }
  return other;
}

/** The token of a `Bearer <token>` value (scheme case-insensitive), or undefined. */
function bearer(v: string): string | undefined {
  if (v.length < 8 || v.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const token = v.slice(7).trim();
  return token === '' ? undefined : token;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
