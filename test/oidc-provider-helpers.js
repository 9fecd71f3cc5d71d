// A real OpenID provider for the tests: the `oidc-provider` package on
// 127.0.0.1:0 (plain http on loopback, which oidc-provider accepts as an issuer),
// with a client registered for the client-credentials grant and the gateway
// registered as a client that may introspect. Tokens come from real
// client-credentials requests to its token endpoint.
//
// Resource servers (RFC 8707 resource indicators) decide the token's audience,
// format and lifetime:
//   urn:portcullis:ws        opaque token (checked by introspection), aud urn:portcullis:ws
//   urn:portcullis:ws-jwt    JWT access token (checked with the JWKS), aud urn:portcullis:ws-jwt
//   urn:portcullis:other     opaque, another audience
//   urn:portcullis:other-jwt JWT, another audience
//   ...-short                the same with a 2-second lifetime (ttl.ClientCredentials)
import http from 'node:http';
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';
import { listen } from './helpers.js';

export const APP = { id: 'chat-app', secret: 'app-secret-4f7c1e9a2b' };
export const GATEWAY = { id: 'portcullis-gw', secret: 'gw-secret-8d2e6b0c5a' };
export const SCOPES = ['chat:read', 'chat:write', 'admin'];
export const SHORT_TTL = 2;

const keys = (async () => {
  const es = await generateKeyPair('ES256', { extractable: true });
  const rs = await generateKeyPair('RS256', { extractable: true });
  return [
    { ...(await exportJWK(rs.privateKey)), kid: 'rs-1', alg: 'RS256', use: 'sig' },
    { ...(await exportJWK(es.privateKey)), kid: 'es-1', alg: 'ES256', use: 'sig' },
  ];
})();

function resourceServer(resource) {
  const m = /^urn:portcullis:(ws|other)(-jwt)?(-short)?$/.exec(resource);
  if (!m) return undefined;
  return {
    audience: resource,
    scope: SCOPES.join(' '),
    accessTokenFormat: m[2] ? 'jwt' : 'opaque',
    accessTokenTTL: m[3] ? SHORT_TTL : 300,
    ...(m[2] ? { jwt: { sign: { alg: 'ES256' } } } : {}),
  };
}

/**
 * Start a provider. Returns its issuer and discovery URL, `token(resource, scope)`
 * (a real client-credentials grant), `revoke(token)`, and `close()`.
 */
export async function startProvider() {
  const server = http.createServer();
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listen(server);
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: await keys },
    clients: [
      { client_id: APP.id, client_secret: APP.secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: SCOPES.join(' ') },
      { client_id: GATEWAY.id, client_secret: GATEWAY.secret, grant_types: [], redirect_uris: [], response_types: [] },
    ],
    scopes: ['openid', ...SCOPES],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // Only the gateway may introspect.
        allowedPolicy: (ctx) => ctx.oidc.client.clientId === GATEWAY.id,
      },
      revocation: { enabled: true, allowedPolicy: (ctx, client, token) => token.clientId === client.clientId },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:portcullis:ws',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          const info = resourceServer(resource);
          if (!info) throw new Provider.errors.InvalidTarget();
          return info;
        },
      },
    },
    ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300 },
  });
  const hits = [];
  server.on('request', (req) => hits.push(req.url));
  server.on('request', provider.callback());
  const discovery = `${issuer}/.well-known/openid-configuration`;
  const basic = (c) => `Basic ${Buffer.from(`${c.id}:${c.secret}`).toString('base64')}`;
  let stopped = false;

  return {
    issuer,
    port,
    discovery,
    /** Paths of every request the provider received (what the gateway fetched). */
    hits,
    /** A real client-credentials grant for `resource` with `scope`. Resolves the access token. */
    async token(resource = 'urn:portcullis:ws', scope = 'chat:read chat:write') {
      const body = new URLSearchParams({ grant_type: 'client_credentials', scope, resource });
      const res = await fetch(`${issuer}/token`, { method: 'POST', body, headers: { authorization: basic(APP) } });
      const json = await res.json();
      if (res.status !== 200) throw new Error(`token endpoint answered ${res.status}: ${JSON.stringify(json)}`);
      return json.access_token;
    },
    /** Revoke a token at the revocation endpoint (RFC 7009), as the client it was issued to. */
    async revoke(token) {
      const res = await fetch(`${issuer}/token/revocation`, {
        method: 'POST',
        body: new URLSearchParams({ token }),
        headers: { authorization: basic(APP) },
      });
      if (res.status !== 200) throw new Error(`revocation endpoint answered ${res.status}`);
    },
    /** Stop the provider: the port refuses connections afterwards. */
    async close() {
      if (stopped) return;
      stopped = true;
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A loopback port with nothing listening on it (bound, then released). */
export async function deadPort() {
  const s = http.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}
