// openid-connect against a real OpenID provider (oidc-provider on loopback) with
// real tokens from client-credentials grants: both checking modes (introspection
// and use_jwks) on WebSocket handshakes and SSE/HTTP, audience, issuer, scope and
// consumer rules, tampered and revoked tokens, the introspection cache, a
// provider that goes down or never was up, browser credential transport, and
// connections closed when their token expires. No token ever reaches a log line,
// nor the upstream when hidden.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { closed, eventually, get, httpUpstream, nextMessage, openWs, startGateway, within, wsUpstream } from './helpers.js';
import { APP, GATEWAY, SHORT_TTL, deadPort, startProvider } from './oidc-provider-helpers.js';

let prov; // the provider for most routes
let prov2; // a provider that the tests stop
let up; // WebSocket upstream
let sseUp; // SSE upstream
let gw;
const issued = new Set(); // every token the tests obtained: none may appear in a log line

async function token(p, resource, scope) {
  const t = await p.token(resource, scope);
  issued.add(t);
  return t;
}

/** An SSE upstream: every request gets a stream with one event, left open. */
function sseHandler(req, res, rec) {
  rec.closed = false;
  res.on('close', () => {
    rec.closed = true;
  });
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write('data: hello\n\n');
}

/** Open an event stream through the gateway; `text` accumulates what arrived, `ended` settles on close. */
function openSse(path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: gw.port, path, agent: false, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const s = { status: res.statusCode, headers: res.headers, text: '', res };
      res.setEncoding('utf8');
      res.on('data', (c) => {
        s.text += c;
      });
      res.on('error', () => {});
      s.ended = new Promise((r) => res.on('close', r));
      resolve(s);
    });
    req.on('error', reject);
  });
}


const bearer = (t) => ({ authorization: `Bearer ${t}` });
const code = (r) => JSON.parse(r.body).error.code;

/** The plugin config of a route, as a YAML flow mapping (JSON is YAML). */
function oidc(p, extra = {}) {
  return JSON.stringify({
    discovery: p.discovery,
    client_id: GATEWAY.id,
    client_secret: GATEWAY.secret,
    consumer_claim: 'client_id',
    hide_credentials: true,
    ...extra,
  });
}

function route(id, uri, upstream, conf) {
  return `  - id: ${id}
    uri: ${uri}
    enable_websocket: true
    upstream_id: ${upstream}
    plugins:
      openid-connect: ${conf}
`;
}

const WS_AUD = { claim_validator: { audience: { valid_audiences: ['urn:portcullis:ws', 'urn:portcullis:ws-short'] } } };
const JWT_AUD = { use_jwks: true, claim_validator: { audience: { valid_audiences: ['urn:portcullis:ws-jwt', 'urn:portcullis:ws-jwt-short'] } } };
const BROWSER = { subprotocol: 'bearer.', query: 'access_token', cookie: 'oidc_token', required_scopes: ['chat:read'] };

before(async () => {
  prov = await startProvider();
  prov2 = await startProvider();
  up = await wsUpstream();
  sseUp = await httpUpstream(sseHandler);
  const dead = await deadPort();
  const deadDiscovery = `http://127.0.0.1:${dead}/.well-known/openid-configuration`;
  gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: sse, nodes: { "127.0.0.1:${sseUp.port}": 1 } }
consumers:
  - username: ${APP.id}
routes:
${route('intro-ws', '/intro/ws', 'up', oidc(prov, { ...WS_AUD, ...BROWSER }))}
${route('intro-sse', '/intro/sse', 'sse', oidc(prov, { ...WS_AUD, ...BROWSER }))}
${route('jwt-ws', '/jwt/ws', 'up', oidc(prov, { ...JWT_AUD, ...BROWSER }))}
${route('jwt-sse', '/jwt/sse', 'sse', oidc(prov, { ...JWT_AUD, ...BROWSER }))}
${route('intro-admin', '/intro/admin', 'up', oidc(prov, { ...WS_AUD, required_scopes: ['chat:read', 'admin'] }))}
${route('jwt-admin', '/jwt/admin', 'up', oidc(prov, { ...JWT_AUD, required_scopes: ['admin'] }))}
${route('intro-cached', '/intro/cached', 'up', oidc(prov, { ...WS_AUD, introspection_interval: 60 }))}
${route('intro-short-cache', '/intro/short-cache', 'up', oidc(prov, { ...WS_AUD, introspection_interval: 1 }))}
${route('intro-issuer', '/intro/issuer', 'up', oidc(prov, { claim_validator: { issuer: { valid_issuers: ['https://elsewhere.example'] } } }))}
${route('jwt-issuer', '/jwt/issuer', 'up', oidc(prov, { use_jwks: true, claim_validator: { issuer: { valid_issuers: ['https://elsewhere.example'] } } }))}
${route('jwt-client-aud', '/jwt/client-aud', 'up', oidc(prov, { use_jwks: true, claim_validator: { audience: { match_with_client_id: true } } }))}
${route('jwt-anon', '/jwt/anon', 'up', oidc(prov, { use_jwks: true, consumer_claim: undefined, hide_credentials: false }))}
${route('jwt-no-consumer', '/jwt/no-consumer', 'up', oidc(prov, { use_jwks: true, consumer_claim: 'aud' }))}
${route('jwt-rs256-only', '/jwt/rs256-only', 'up', oidc(prov, { use_jwks: true, token_signing_alg_values_expected: 'RS256' }))}
${route('down-jwt', '/down/jwt', 'up', oidc(prov2, { use_jwks: true }))}
${route('down-intro', '/down/intro', 'up', oidc(prov2, {}))}
${route('dead-intro', '/dead/intro', 'up', oidc({ discovery: deadDiscovery }, {}))}
${route('dead-jwt', '/dead/jwt', 'sse', oidc({ discovery: deadDiscovery }, { use_jwks: true }))}
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
  await sseUp?.close();
  await prov?.close();
  await prov2?.close();
});

// ---- accepted tokens ---------------------------------------------------------------

test('introspection: a valid token opens a WebSocket; the upstream sees the consumer, not the token', async () => {
  const t = await token(prov);
  const { ws } = await openWs(`${gw.ws}/intro/ws`, { headers: { ...bearer(t), 'x-consumer-username': 'mallory' } });
  ws.send('hi');
  assert.equal(await nextMessage(ws), 'hi');
  const hs = up.handshakes.at(-1);
  assert.equal(hs.headers['x-consumer-username'], APP.id, 'the client-sent copy is replaced');
  assert.equal(hs.headers['x-credential-identifier'], APP.id);
  assert.equal(hs.headers.authorization, undefined, 'hide_credentials removes the Authorization header');
  ws.close();
  await closed(ws);
  assert.ok(prov.hits.some((h) => h === '/token/introspection'), 'the gateway asked the provider');
});

test('introspection: a valid token opens an SSE stream', async () => {
  const t = await token(prov);
  const s = await openSse('/intro/sse', bearer(t));
  assert.equal(s.status, 200);
  await eventually(() => s.text.includes('data: hello'));
  const req = sseUp.requests.at(-1);
  assert.equal(req.url, '/intro/sse');
  assert.equal(req.headers['x-consumer-username'], APP.id);
  assert.equal(req.headers.authorization, undefined);
  s.res.destroy();
});

test('use_jwks: a JWT access token is verified with the JWKS, no introspection', async () => {
  const t = await token(prov, 'urn:portcullis:ws-jwt');
  const introspections = prov.hits.filter((h) => h === '/token/introspection').length;
  const { ws } = await openWs(`${gw.ws}/jwt/ws`, { headers: bearer(t) });
  ws.send('jwt');
  assert.equal(await nextMessage(ws), 'jwt');
  assert.equal(up.handshakes.at(-1).headers['x-consumer-username'], APP.id);
  ws.close();
  await closed(ws);
  const s = await openSse('/jwt/sse', { 'x-access-token': t });
  assert.equal(s.status, 200, 'X-Access-Token is read too (APISIX)');
  await eventually(() => s.text.includes('data: hello'));
  assert.equal(sseUp.requests.at(-1).headers['x-access-token'], undefined, 'and hidden');
  s.res.destroy();
  assert.equal(prov.hits.filter((h) => h === '/token/introspection').length, introspections);
  assert.ok(prov.hits.includes('/jwks'));
});

test('without consumer_claim there is no consumer; the token is forwarded when not hidden', async () => {
  const t = await token(prov, 'urn:portcullis:ws-jwt');
  const { ws } = await openWs(`${gw.ws}/jwt/anon`, { headers: { ...bearer(t), 'x-consumer-username': 'mallory' } });
  const hs = up.handshakes.at(-1);
  assert.equal(hs.headers['x-consumer-username'], undefined, 'no consumer, and the client-sent copy is removed');
  assert.equal(hs.headers.authorization, `Bearer ${t}`);
  ws.close();
  await closed(ws);
});

// ---- browser credential transport ------------------------------------------------------

test('subprotocol transport: the token subprotocol is withheld upstream and never answered', async () => {
  for (const [path, resource] of [
    ['/intro/ws', 'urn:portcullis:ws'],
    ['/jwt/ws', 'urn:portcullis:ws-jwt'],
  ]) {
    const t = await token(prov, resource);
    const { ws } = await openWs(`${gw.ws}${path}`, { protocols: [`bearer.${t}`, 'chat'] });
    assert.equal(ws.protocol, 'chat');
    const hs = up.handshakes.at(-1);
    assert.equal(hs.headers['sec-websocket-protocol'], 'chat');
    assert.equal(hs.headers['x-consumer-username'], APP.id);
    ws.close();
    await closed(ws);
  }
});

test('query and cookie transport: the credential is removed from the URL and the Cookie sent upstream', async () => {
  const t = await token(prov);
  const s = await openSse(`/intro/sse?room=7&access_token=${encodeURIComponent(t)}`);
  assert.equal(s.status, 200);
  assert.equal(sseUp.requests.at(-1).url, '/intro/sse?room=7');
  s.res.destroy();
  const j = await token(prov, 'urn:portcullis:ws-jwt');
  const c = await openSse('/jwt/sse', { cookie: `theme=dark; oidc_token=${j}` });
  assert.equal(c.status, 200);
  assert.equal(sseUp.requests.at(-1).headers.cookie, 'theme=dark');
  c.res.destroy();
});

// ---- refused tokens ---------------------------------------------------------------------

test('no token: 401 AUTH_MISSING with a Bearer challenge; the upstream is never contacted', async () => {
  const before = up.handshakes.length;
  const r = await openWs(`${gw.ws}/intro/ws`);
  assert.equal(r.status, 401);
  assert.equal(code(r), 'AUTH_MISSING');
  assert.match(r.headers['www-authenticate'], /^Bearer realm="portcullis"/);
  const h = await get(`${gw.http}/jwt/sse`, { authorization: 'Basic YTpi' });
  assert.equal(h.status, 401, 'another scheme in Authorization is no bearer token');
  assert.equal(code(h), 'AUTH_MISSING');
  assert.equal(up.handshakes.length, before);
});

test('a token for another audience: 401 AUTH_INVALID in both modes', async () => {
  const opaque = await token(prov, 'urn:portcullis:other');
  const r1 = await openWs(`${gw.ws}/intro/ws`, { headers: bearer(opaque) });
  assert.equal(r1.status, 401);
  assert.equal(code(r1), 'AUTH_INVALID');
  assert.match(r1.headers['www-authenticate'], /error="invalid_token"/);
  const jwt = await token(prov, 'urn:portcullis:other-jwt');
  const r2 = await get(`${gw.http}/jwt/sse`, bearer(jwt));
  assert.equal(r2.status, 401);
  assert.equal(code(r2), 'AUTH_INVALID');
  // match_with_client_id: the audience must be the gateway's client_id.
  const r3 = await openWs(`${gw.ws}/jwt/client-aud`, { headers: bearer(await token(prov, 'urn:portcullis:ws-jwt')) });
  assert.equal(r3.status, 401);
  const line = await eventually(() => gw.log.access().find((l) => l.route === 'jwt-client-aud'));
  assert.match(line.detail, /mismatched audience/);
});

test('an untrusted issuer (valid_issuers): 401 AUTH_INVALID in both modes', async () => {
  const r1 = await openWs(`${gw.ws}/intro/issuer`, { headers: bearer(await token(prov)) });
  assert.equal(r1.status, 401);
  assert.equal(code(r1), 'AUTH_INVALID');
  const r2 = await openWs(`${gw.ws}/jwt/issuer`, { headers: bearer(await token(prov, 'urn:portcullis:ws-jwt')) });
  assert.equal(r2.status, 401);
  assert.equal(code(r2), 'AUTH_INVALID');
});

test('a tampered token: 401 AUTH_INVALID (signature, payload, opaque)', async () => {
  const jwt = await token(prov, 'urn:portcullis:ws-jwt');
  const [h, p, sig] = jwt.split('.');
  const flipped = `${h}.${p}.${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const widened = `${h}.${Buffer.from(JSON.stringify({ ...claims, scope: 'chat:read admin' })).toString('base64url')}.${sig}`;
  for (const bad of [flipped, widened]) {
    issued.add(bad);
    const r = await openWs(`${gw.ws}/jwt/ws`, { headers: bearer(bad) });
    assert.equal(r.status, 401);
    assert.equal(code(r), 'AUTH_INVALID');
  }
  const opaque = await token(prov);
  const forged = `${opaque.slice(0, -2)}${opaque.endsWith('xx') ? 'yy' : 'xx'}`;
  issued.add(forged);
  const r = await openWs(`${gw.ws}/intro/ws`, { headers: bearer(forged) });
  assert.equal(r.status, 401, 'the provider does not know it: inactive');
  assert.equal(code(r), 'AUTH_INVALID');
  const opaqueOnJwks = await openWs(`${gw.ws}/jwt/ws`, { headers: bearer(opaque) });
  assert.equal(opaqueOnJwks.status, 401, 'use_jwks refuses a token that is not a JWT');
});

test('a JWT carrying its own key, or alg none, or an algorithm not expected: 401, no fetch', async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const claims = { iss: prov.issuer, aud: 'urn:portcullis:ws-jwt', client_id: APP.id, scope: 'chat:read' };
  const embedded = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', jwk: await exportJWK(publicKey) })
    .setExpirationTime('5m')
    .sign(privateKey);
  const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
  const body = Buffer.from(JSON.stringify({ ...claims, exp: Math.floor(Date.now() / 1000) + 300 })).toString('base64url');
  const none = `${header}.${body}.`;
  const hits = prov.hits.length;
  for (const bad of [embedded, none]) {
    issued.add(bad);
    const r = await openWs(`${gw.ws}/jwt/ws`, { headers: bearer(bad) });
    assert.equal(r.status, 401);
    assert.equal(code(r), 'AUTH_INVALID');
  }
  assert.equal(prov.hits.length, hits, 'no outbound fetch caused by the token');
  // The provider signs access tokens with ES256; this route expects RS256 only.
  const r = await openWs(`${gw.ws}/jwt/rs256-only`, { headers: bearer(await token(prov, 'urn:portcullis:ws-jwt')) });
  assert.equal(r.status, 401);
});

test('required_scopes missing: 403 AUTHZ_DENIED with insufficient_scope (as APISIX), both modes', async () => {
  const r1 = await openWs(`${gw.ws}/intro/admin`, { headers: bearer(await token(prov, 'urn:portcullis:ws', 'chat:read')) });
  assert.equal(r1.status, 403);
  assert.equal(code(r1), 'AUTHZ_DENIED');
  assert.match(r1.headers['www-authenticate'], /error="insufficient_scope"/);
  const r2 = await get(`${gw.http}/jwt/admin`, bearer(await token(prov, 'urn:portcullis:ws-jwt', 'chat:write')));
  assert.equal(r2.status, 403);
  assert.equal(code(r2), 'AUTHZ_DENIED');
  const r3 = await openWs(`${gw.ws}/intro/ws`, { headers: bearer(await token(prov, 'urn:portcullis:ws', 'chat:write')) });
  assert.equal(r3.status, 403, 'chat:read is required on /intro/ws');
  const ok = await openWs(`${gw.ws}/jwt/admin`, { headers: bearer(await token(prov, 'urn:portcullis:ws-jwt', 'admin')) });
  assert.ok(ok.ws, 'a token with the scope is admitted');
  ok.ws.close();
  await closed(ok.ws);
});

test('consumer_claim naming no configured consumer: 401 AUTH_INVALID', async () => {
  const r = await openWs(`${gw.ws}/jwt/no-consumer`, { headers: bearer(await token(prov, 'urn:portcullis:ws-jwt')) });
  assert.equal(r.status, 401);
  assert.equal(code(r), 'AUTH_INVALID');
});

// ---- revocation and the introspection cache ----------------------------------------------

test('a revoked token is refused at the next handshake (introspection_interval 0)', async () => {
  const t = await token(prov);
  const { ws } = await openWs(`${gw.ws}/intro/ws`, { headers: bearer(t) });
  ws.close();
  await closed(ws);
  await prov.revoke(t);
  const r = await openWs(`${gw.ws}/intro/ws`, { headers: bearer(t) });
  assert.equal(r.status, 401);
  assert.equal(code(r), 'AUTH_INVALID');
});

test('introspection_interval caches the answer; a revocation shows once the interval has passed', async () => {
  const t = await token(prov);
  const count = () => prov.hits.filter((h) => h === '/token/introspection').length;
  const n = count();
  for (let i = 0; i < 3; i++) {
    const { ws } = await openWs(`${gw.ws}/intro/cached`, { headers: bearer(t) });
    ws.close();
    await closed(ws);
  }
  assert.equal(count(), n + 1, 'three handshakes, one introspection');

  const s = await token(prov);
  const first = await openWs(`${gw.ws}/intro/short-cache`, { headers: bearer(s) });
  first.ws.close();
  await prov.revoke(s);
  // introspection_interval: 1 — within a bounded wait the revocation is seen.
  const refused = await eventually(
    async () => {
      const r = await openWs(`${gw.ws}/intro/short-cache`, { headers: bearer(s) });
      if (r.ws) r.ws.close();
      return r.status === 401 ? r : undefined;
    },
    { tries: 40, every: 100 },
  );
  assert.ok(refused, 'the revoked token was refused once the cached answer aged out');
  assert.equal(code(refused), 'AUTH_INVALID');
});

// ---- the provider down -------------------------------------------------------------------

test('provider stopped after one successful fetch: cached discovery and JWKS keep working; introspection is 503', async () => {
  const before = await token(prov2, 'urn:portcullis:ws-jwt');
  const after = await token(prov2, 'urn:portcullis:ws-jwt');
  const opaque = await token(prov2);
  const a = await openWs(`${gw.ws}/down/jwt`, { headers: bearer(before) });
  assert.ok(a.ws);
  a.ws.close();
  await closed(a.ws);
  await prov2.close();
  const b = await openWs(`${gw.ws}/down/jwt`, { headers: bearer(after) });
  assert.ok(b.ws, 'a token never seen before is verified with the cached JWKS');
  b.ws.close();
  await closed(b.ws);
  const c = await openWs(`${gw.ws}/down/intro`, { headers: bearer(opaque) });
  assert.equal(c.status, 503);
  assert.equal(code(c), 'AUTH_UNAVAILABLE');
});

test('provider unreachable from the start: 503 AUTH_UNAVAILABLE on WebSocket and HTTP', async () => {
  const t = await token(prov, 'urn:portcullis:ws-jwt');
  const r1 = await openWs(`${gw.ws}/dead/intro`, { headers: bearer(t) });
  assert.equal(r1.status, 503);
  assert.equal(code(r1), 'AUTH_UNAVAILABLE');
  assert.equal(r1.headers['retry-after'], '1', 'every 503 carries Retry-After');
  const r2 = await get(`${gw.http}/dead/jwt`, bearer(t));
  assert.equal(r2.status, 503);
  assert.equal(r2.headers['retry-after'], '1');
  assert.equal(code(r2), 'AUTH_UNAVAILABLE');
  const line = await eventually(() => gw.log.access().find((l) => l.route === 'dead-jwt'));
  assert.match(line.detail, /OpenID provider unavailable/);
});

// ---- lifetime enforcement ---------------------------------------------------------------

test(`lifetime: a ${SHORT_TTL}-second token closes the WebSocket (1008 credential expired) and ends the SSE stream`, async () => {
  const [ti, tj, si, sj] = await Promise.all([
    token(prov, 'urn:portcullis:ws-short'),
    token(prov, 'urn:portcullis:ws-jwt-short'),
    token(prov, 'urn:portcullis:ws-short'),
    token(prov, 'urn:portcullis:ws-jwt-short'),
  ]);
  const streams = sseUp.requests.length;
  const wi = await openWs(`${gw.ws}/intro/ws`, { headers: bearer(ti) });
  const wj = await openWs(`${gw.ws}/jwt/ws`, { protocols: [`bearer.${tj}`, 'chat'] });
  const ei = await openSse('/intro/sse', bearer(si));
  const ej = await openSse('/jwt/sse', bearer(sj));
  assert.ok(wi.ws && wj.ws);
  assert.equal(ei.status, 200);
  assert.equal(ej.status, 200);
  const [ci, cj] = await within(Promise.all([closed(wi.ws), closed(wj.ws)]), 'WebSockets closed at expiry', 5000);
  for (const c of [ci, cj]) {
    assert.equal(c.code, 1008);
    assert.match(c.reason, /credential expired/);
  }
  await within(Promise.all([ei.ended, ej.ended]), 'SSE streams ended at expiry', 5000);
  assert.ok(ei.text.includes('data: hello') && ej.text.includes('data: hello'));
  const upstreamSides = sseUp.requests.slice(streams);
  assert.equal(upstreamSides.length, 2);
  assert.ok(await eventually(() => upstreamSides.every((r) => r.closed)), 'the upstream side of each stream is closed too');

  // Once expired, the same tokens are refused at the handshake.
  const rj = await openWs(`${gw.ws}/jwt/ws`, { headers: bearer(tj) });
  assert.equal(rj.status, 401);
  assert.equal(code(rj), 'CREDENTIAL_EXPIRED');
  const ri = await openWs(`${gw.ws}/intro/ws`, { headers: bearer(ti) });
  assert.equal(ri.status, 401, 'the provider reports an expired token inactive');
});

// ---- config errors and leaks ---------------------------------------------------------------

test('bearer_only: false and introspection without client_secret are refused at load', async () => {
  const base = (conf) => `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
routes:
${route('r', '/r', 'up', conf)}`;
  await assert.rejects(startGateway(base(oidc(prov, { bearer_only: false }))), /bearer_only: false is not supported/);
  await assert.rejects(
    startGateway(base(JSON.stringify({ discovery: prov.discovery, client_id: GATEWAY.id }))),
    /client_secret is required for token introspection/,
  );
  await assert.rejects(startGateway(base(oidc(prov, { redirect_uri: '/cb' }))), /redirect_uri/);
});

test('no token and no client secret appears in any log line or in what the upstream received when hidden', async () => {
  const raw = gw.log.raw();
  assert.ok(issued.size > 20);
  for (const t of issued) assert.ok(!raw.includes(t), 'a token was logged');
  assert.ok(!raw.includes(GATEWAY.secret));
  assert.ok(!raw.includes(APP.secret));
  const seen = JSON.stringify([up.handshakes, sseUp.requests.map(({ url, headers }) => ({ url, headers }))]);
  // /jwt/anon forwards its token on purpose (hide_credentials: false).
  const forwarded = up.handshakes.filter((h) => h.url === '/jwt/anon').map((h) => h.headers.authorization.slice(7));
  for (const t of issued) if (!forwarded.includes(t)) assert.ok(!seen.includes(t), 'a hidden token reached the upstream');
});
