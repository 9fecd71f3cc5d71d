// jwt-auth as clients and upstreams observe it: APISIX's consumer-bound form and the
// issuer form (JWKS, public key, secret), every credential transport, the attacks a
// JWT verifier must refuse (alg none, algorithm confusion, embedded keys, unknown
// kid), remote JWKS caching and outages, the verified-token cache, connections
// closed when their token expires, and tokens never leaking to logs or upstreams.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { generateKeyPairSync } from 'node:crypto';
import { createRegistry, loadConfigText } from '../dist/index.js';
import jwtAuth from '../dist/plugins/jwt-auth/index.js';
import { closed, eventually, get, httpUpstream, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { b64, closedPort, hmacToken, jwksServer, keyPairs, nowS, publicJwk, sign, trapServer, unsignedToken } from './jwt-auth-helpers.js';

const HS_SECRET = 'hs256-shared-secret-for-alice-0123456789';
const B64_SECRET = Buffer.from('a-binary-ish-secret-for-hs512-graceful-consumer').toString('base64');
const ISS = 'https://issuer.test';
const AUD = 'portcullis';

const K = keyPairs();
/** Every token the tests sent, to check that none reaches a log line. */
const sent = [];
const remember = (t) => (sent.push(t), t);

let up; // WebSocket + plain HTTP upstream
let sseUp; // SSE upstream
let lifeUp; // WebSocket upstream recording how its connections end
let jwks; // the issuer's JWKS endpoint
let flaky; // a JWKS endpoint the tests take down
let trap; // must never be contacted
let multi; // a JWKS whose keys have no kid
let gw;
const lifeClosures = [];

before(async () => {
  up = await wsUpstream({ handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false) });
  sseUp = await httpUpstream((req, res, rec) => {
    rec.closed = false;
    res.on('close', () => (rec.closed = true));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: hello\n\n');
  });
  lifeUp = await wsUpstream({
    onConnection(ws) {
      const rec = { closed: false, code: undefined };
      lifeClosures.push(rec);
      ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary }));
      ws.on('close', (code) => Object.assign(rec, { closed: true, code }));
    },
  });
  jwks = await jwksServer([await publicJwk(K.ec, 'k1', 'ES256'), await publicJwk(K.ed, 'ed1', 'EdDSA')]);
  flaky = await jwksServer([await publicJwk(K.ec, 'f1', 'ES256')]);
  trap = await trapServer();
  const { kid: _a, ...noKid2 } = await publicJwk(K.ec2, 'x', 'ES256');
  const { kid: _b, ...noKid1 } = await publicJwk(K.ec, 'x', 'ES256');
  multi = await jwksServer([noKid2, noKid1]);
  const down = await closedPort();
  gw = await startGateway(
    `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  log: { level: debug }
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: sse, nodes: { "127.0.0.1:${sseUp.port}": 1 } }
  - { id: life, nodes: { "127.0.0.1:${lifeUp.port}": 1 } }
consumer_groups:
  - id: team
consumers:
  - username: alice
    group_id: team
    plugins:
      jwt-auth: { key: alice-key, secret: "\${HS_SECRET}" }
  - username: rsa-user
    plugins:
      jwt-auth: { key: rsa-key, algorithm: RS256, public_key: "\${RSA_PEM}" }
  - username: ps-user
    plugins:
      jwt-auth: { key: ps-key, algorithm: PS256, public_key: "\${RSA_PEM}" }
  - username: es-user
    plugins:
      jwt-auth: { key: es-key, algorithm: ES256, public_key: "\${EC_PEM}" }
  - username: ed-user
    plugins:
      jwt-auth: { key: ed-key, algorithm: EdDSA, public_key: "\${ED_PEM}" }
  - username: graceful
    plugins:
      jwt-auth: { key: grace-key, algorithm: HS512, secret: "\${B64_SECRET}", base64_secret: true, lifetime_grace_period: 30 }
routes:
  - id: c
    uri: /c
    enable_websocket: true
    upstream_id: up
    plugins: { jwt-auth: { subprotocol: bearer. } }
  - id: c-hide
    uri: /c-hide
    enable_websocket: true
    upstream_id: up
    plugins: { jwt-auth: { hide_credentials: true, subprotocol: bearer. } }
  - id: c-names
    uri: /c-names
    upstream_id: up
    plugins: { jwt-auth: { header: X-Token, query: token, cookie: tok, key_claim_name: user_key, realm: chat } }
  - id: iss
    uri: /iss
    enable_websocket: true
    upstream_id: up
    plugins: { jwt-auth: { jwks_uri: "${jwks.url}", algorithms: [ES256, EdDSA], issuer: "${ISS}", audience: ${AUD}, consumer_claim: sub } }
  - id: iss-anon
    uri: /iss-anon
    upstream_id: up
    plugins: { jwt-auth: { jwks_uri: "${jwks.url}", algorithms: [ES256, EdDSA], issuer: "${ISS}", audience: [${AUD}, other] } }
  - id: iss-pem
    uri: /iss-pem
    upstream_id: up
    plugins: { jwt-auth: { public_key: "\${RSA_PEM}", algorithms: [RS256, PS256] } }
  - id: iss-secret
    uri: /iss-secret
    upstream_id: up
    plugins: { jwt-auth: { secret: "\${HS_SECRET}", required_claims: [room], clock_skew: 30 } }
  - id: iss-down
    uri: /iss-down
    enable_websocket: true
    upstream_id: up
    plugins: { jwt-auth: { jwks_uri: "http://127.0.0.1:${down}/jwks.json", algorithms: [ES256] } }
  - id: iss-flaky
    uri: /iss-flaky
    upstream_id: up
    plugins: { jwt-auth: { jwks_uri: "${flaky.url}", algorithms: [ES256], jwks_max_age: 1, jwks_cooldown: 1 } }
  - id: iss-multi
    uri: /iss-multi
    upstream_id: up
    plugins: { jwt-auth: { jwks_uri: "${multi.url}", algorithms: [ES256] } }
  - id: sse
    uri: /sse
    upstream_id: sse
    plugins: { jwt-auth: {} }
  - id: life
    uri: /life
    enable_websocket: true
    upstream_id: life
    plugins: { jwt-auth: {} }
`,
    { env: { HS_SECRET, B64_SECRET, RSA_PEM: K.rsa.pem, EC_PEM: K.ec.pem, ED_PEM: K.ed.pem } },
  );
});

after(async () => {
  await gw.close();
  await Promise.all([up.close(), sseUp.close(), lifeUp.close(), jwks.stop(), multi.stop(), trap.close()]);
});

const hs = new TextEncoder().encode(HS_SECRET);
const alice = (claims = {}) => sign({ key: 'alice-key', ...claims }, hs, 'HS256').then(remember);
const bearer = (t) => ({ authorization: `Bearer ${t}` });
const lastHttp = () => up.received.filter((r) => r.http).at(-1);

/** A 401 with the catalogue code, a Bearer challenge, and no token in the body. */
async function refused(path, headers, { code = 'AUTH_INVALID', status = 401, token, realm = 'jwt' } = {}) {
  const r = await get(`${gw.http}${path}`, headers);
  assert.equal(r.status, status, `${path}: ${r.body}`);
  const body = JSON.parse(r.body);
  assert.equal(body.error.code, code);
  if (status === 401) assert.match(r.headers['www-authenticate'] ?? '', new RegExp(`^Bearer realm="${realm}"`));
  if (token) {
    assert.ok(!r.body.includes(token), 'the token is not in the error body');
    assert.ok(!r.body.includes(token.split('.')[2] || '\u0000'), 'nor its signature');
  }
  return r;
}

// ---- the consumer-bound form: transports ----------------------------------------------

describe('consumer-bound form (APISIX)', () => {
  test('a Bearer token in Authorization admits its consumer; the upstream learns who, never from the client', async () => {
    const t = await alice();
    const r = await get(`${gw.http}/c`, { ...bearer(t), 'x-consumer-username': 'mallory', 'x-credential-identifier': 'forged' });
    assert.equal(r.status, 200);
    const h = lastHttp().headers;
    assert.equal(h['x-consumer-username'], 'alice');
    assert.equal(h['x-credential-identifier'], 'alice-key');
    assert.equal(h['x-consumer-group'], 'team');
    assert.equal(h.authorization, `Bearer ${t}`, 'not hidden by default');
  });

  test('the Bearer prefix is optional, in any case', async () => {
    const t = await alice();
    assert.equal((await get(`${gw.http}/c`, { authorization: t })).status, 200);
    assert.equal((await get(`${gw.http}/c`, { authorization: `bearer ${t}` })).status, 200);
    assert.equal(lastHttp().headers['x-consumer-username'], 'alice');
  });

  test('a token in the jwt query parameter or the jwt cookie is accepted', async () => {
    const t = await alice();
    assert.equal((await get(`${gw.http}/c?room=1&jwt=${t}`)).status, 200);
    assert.equal(lastHttp().url, `/c?room=1&jwt=${t}`, 'kept when hide_credentials is off');
    const t2 = await alice();
    assert.equal((await get(`${gw.http}/c`, { cookie: `theme=dark; jwt=${t2}` })).status, 200);
    assert.equal(lastHttp().headers['x-consumer-username'], 'alice');
  });

  test('configured header, query and cookie names, key_claim_name and realm', async () => {
    const t = await sign({ user_key: 'alice-key' }, hs, 'HS256').then(remember);
    assert.equal((await get(`${gw.http}/c-names`, { 'x-token': `Bearer ${t}` })).status, 200);
    assert.equal((await get(`${gw.http}/c-names?token=${t}`)).status, 200);
    assert.equal((await get(`${gw.http}/c-names`, { cookie: `tok=${t}` })).status, 200);
    await refused('/c-names', {}, { code: 'AUTH_MISSING', realm: 'chat' });
    // The default names are not looked at when others are configured.
    await refused('/c-names', bearer(t), { code: 'AUTH_MISSING', realm: 'chat' });
    // A token whose claim is `key` does not name a consumer on this route.
    await refused('/c-names', { 'x-token': await alice() }, { realm: 'chat' });
  });

  test('a WebSocket offering bearer.<token> opens; that subprotocol never reaches the upstream nor is answered', async () => {
    const t = await alice();
    const { ws } = await openWs(`${gw.ws}/c`, { protocols: ['chat', `bearer.${t}`] });
    assert.equal(ws.protocol, 'chat');
    const hs1 = up.handshakes.at(-1);
    assert.equal(hs1.headers['sec-websocket-protocol'], 'chat');
    assert.equal(hs1.headers['x-consumer-username'], 'alice');
    ws.send('ping');
    assert.equal(await nextMessage(ws), 'ping');
    ws.close();
    await closed(ws);
  });

  test('a WebSocket handshake without a token is refused with 401 before any upstream contact', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/c`);
    assert.equal(r.status, 401);
    assert.equal(JSON.parse(r.body).error.code, 'AUTH_MISSING');
    assert.match(r.headers['www-authenticate'], /^Bearer realm="jwt"/);
    const bad = await openWs(`${gw.ws}/c`, { protocols: ['chat', `bearer.${remember(hmacToken({ alg: 'HS256' }, { key: 'alice-key', exp: nowS() + 60 }, 'wrong'))}`] });
    assert.equal(bad.status, 401);
    assert.equal(JSON.parse(bad.body).error.code, 'AUTH_INVALID');
    assert.equal(up.handshakes.length, before);
  });

  test('hide_credentials removes the header, the query parameter, the cookie and the subprotocol', async () => {
    const t1 = await alice();
    await get(`${gw.http}/c-hide`, bearer(t1));
    assert.equal(lastHttp().headers.authorization, undefined);
    assert.equal(lastHttp().headers['x-consumer-username'], 'alice');
    const t2 = await alice();
    await get(`${gw.http}/c-hide?room=1&jwt=${t2}`);
    assert.equal(lastHttp().url, '/c-hide?room=1');
    const t3 = await alice();
    await get(`${gw.http}/c-hide`, { cookie: `theme=dark; jwt=${t3}` });
    assert.equal(lastHttp().headers.cookie, 'theme=dark');
    const t4 = await alice();
    const { ws } = await openWs(`${gw.ws}/c-hide?jwt=${t4}`, { protocols: ['chat'] });
    const h = up.handshakes.at(-1);
    assert.equal(h.url, '/c-hide');
    ws.close();
    await closed(ws);
    for (const t of [t1, t2, t3, t4]) assert.ok(!JSON.stringify(up.received).includes(t) && !JSON.stringify(up.handshakes.slice(-1)).includes(t));
  });

  test('RS256, PS256, ES256 and EdDSA consumers verify with their public keys', async () => {
    const cases = [
      ['rsa-key', K.rsa, 'RS256', 'rsa-user'],
      ['ps-key', K.rsa, 'PS256', 'ps-user'],
      ['es-key', K.ec, 'ES256', 'es-user'],
      ['ed-key', K.ed, 'EdDSA', 'ed-user'],
    ];
    for (const [key, kp, alg, user] of cases) {
      const t = remember(await sign({ key }, kp.privateKey, alg));
      const r = await get(`${gw.http}/c`, bearer(t));
      assert.equal(r.status, 200, `${alg}: ${r.body}`);
      assert.equal(lastHttp().headers['x-consumer-username'], user);
    }
  });

  test('base64_secret and lifetime_grace_period: a token expired within the grace period is admitted', async () => {
    const secret = Buffer.from(B64_SECRET, 'base64');
    const t = remember(await sign({ key: 'grace-key', exp: nowS() - 10 }, secret, 'HS512'));
    assert.equal((await get(`${gw.http}/c`, bearer(t))).status, 200);
    assert.equal(lastHttp().headers['x-consumer-username'], 'graceful');
    const old = remember(await sign({ key: 'grace-key', exp: nowS() - 60 }, secret, 'HS512'));
    await refused('/c', bearer(old), { code: 'CREDENTIAL_EXPIRED', token: old });
  });
});

// ---- what must be refused ---------------------------------------------------------------

describe('refusals: every one a 401, never a 500', () => {
  test('a missing token: 401 AUTH_MISSING with a Bearer challenge', async () => {
    await refused('/c', {}, { code: 'AUTH_MISSING' });
    await refused('/c', { authorization: 'Bearer ' }, { code: 'AUTH_MISSING' });
  });

  test('alg none in any spelling, with or without a signature', async () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      for (const sig of ['', 'c2lnbmF0dXJl']) {
        const t = remember(unsignedToken(alg, { key: 'alice-key', exp: nowS() + 600 }, sig));
        await refused('/c', bearer(t), { token: t });
        await refused('/iss-anon', bearer(remember(unsignedToken(alg, { iss: ISS, aud: AUD, exp: nowS() + 600 }, sig))));
      }
    }
  });

  test('an RS256 public key used as an HS256 secret (algorithm confusion)', async () => {
    const payload = { key: 'rsa-key', exp: nowS() + 600 };
    const t = remember(hmacToken({ alg: 'HS256', typ: 'JWT' }, payload, K.rsa.pem));
    await refused('/c', bearer(t), { token: t });
    const t2 = remember(hmacToken({ alg: 'HS256', typ: 'JWT' }, { exp: nowS() + 600 }, K.rsa.pem));
    await refused('/iss-pem', bearer(t2), { token: t2 });
    // The same public key with an algorithm it is bound to is accepted.
    assert.equal((await get(`${gw.http}/iss-pem`, bearer(remember(await sign({}, K.rsa.privateKey, 'PS256'))))).status, 200);
  });

  test('a token signed with another algorithm than its consumer\'s', async () => {
    const t = remember(await sign({ key: 'alice-key' }, hs, 'HS512'));
    await refused('/c', bearer(t), { token: t });
  });

  test('embedded jwk, jku, x5u, x5c headers: 401 and no outbound fetch', async () => {
    const jwk = await publicJwk(K.ec2, 'evil', 'ES256');
    const headers = [{ jwk }, { jku: `${trap.url}/jwks.json` }, { x5u: `${trap.url}/cert.pem` }, { x5c: ['MIIBkTCB+wIJAKHHIG...'] }, { kid: 'k1', jku: `${trap.url}/jwks.json` }];
    for (const extra of headers) {
      // Signed by the attacker's own key, which the header offers.
      const t = remember(await sign({ iss: ISS, aud: AUD, sub: 'alice' }, K.ec2.privateKey, 'ES256', extra));
      await refused('/iss', bearer(t), { token: t });
      await refused('/iss-anon', bearer(t), { token: t });
      const t2 = remember(await sign({ key: 'es-key' }, K.ec2.privateKey, 'ES256', extra));
      await refused('/c', bearer(t2), { token: t2 });
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(trap.hits, [], 'the URL in the token was never contacted');
  });

  test('a missing exp, a past exp, a future nbf', async () => {
    const noExp = remember(await sign({ key: 'alice-key', exp: undefined }, hs, 'HS256'));
    await refused('/c', bearer(noExp), { token: noExp });
    const past = remember(await sign({ key: 'alice-key', exp: nowS() - 5 }, hs, 'HS256'));
    await refused('/c', bearer(past), { code: 'CREDENTIAL_EXPIRED', token: past });
    const early = remember(await sign({ key: 'alice-key', nbf: nowS() + 600 }, hs, 'HS256'));
    await refused('/c', bearer(early), { token: early });
    // clock_skew on an issuer route: 10 s late is within 30 s of skew, 60 s is not.
    const late = remember(await sign({ room: 'r', exp: nowS() - 10 }, hs, 'HS256'));
    assert.equal((await get(`${gw.http}/iss-secret`, bearer(late))).status, 200);
    const later = remember(await sign({ room: 'r', exp: nowS() - 60 }, hs, 'HS256'));
    await refused('/iss-secret', bearer(later), { code: 'CREDENTIAL_EXPIRED' });
  });

  test('a wrong iss or aud', async () => {
    const ok = remember(await sign({ iss: ISS, aud: 'other' }, K.ec.privateKey, 'ES256', { kid: 'k1' }));
    assert.equal((await get(`${gw.http}/iss-anon`, bearer(ok))).status, 200);
    await refused('/iss-anon', bearer(remember(await sign({ iss: 'https://evil.test', aud: AUD }, K.ec.privateKey, 'ES256', { kid: 'k1' }))));
    await refused('/iss-anon', bearer(remember(await sign({ iss: ISS, aud: 'elsewhere' }, K.ec.privateKey, 'ES256', { kid: 'k1' }))));
    await refused('/iss-anon', bearer(remember(await sign({ iss: ISS }, K.ec.privateKey, 'ES256', { kid: 'k1' }))));
  });

  test('a bad signature', async () => {
    const t = await alice();
    const [h, p] = t.split('.');
    const other = (await sign({ key: 'alice-key' }, new TextEncoder().encode('not-the-secret'), 'HS256')).split('.')[2];
    const forged = remember(`${h}.${p}.${other}`);
    await refused('/c', bearer(forged), { token: forged });
    // A payload changed after signing.
    const tampered = remember(`${h}.${b64({ key: 'alice-key', exp: nowS() + 99999, admin: true })}.${t.split('.')[2]}`);
    await refused('/c', bearer(tampered), { token: tampered });
    const es = remember(await sign({ iss: ISS, aud: AUD }, K.ec2.privateKey, 'ES256', { kid: 'k1' }));
    await refused('/iss-anon', bearer(es), { token: es });
  });

  test('malformed tokens: 401, never 500', async () => {
    const good = await alice();
    const [h, p, s] = good.split('.');
    const cases = [
      'abc',
      'a.b',
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}`,
      `${h}..${s}`,
      `!!!.${p}.${s}`,
      `${h}.${p}.***`,
      `${b64('not json')}.${p}.${s}`,
      `${h}.${b64('{"key": "alice-key", ')}.${s}`,
      `${b64([1, 2])}.${p}.${s}`,
      `${h}.${b64('null')}.${s}`,
      `${b64({ typ: 'JWT' })}.${p}.${s}`,
      `${b64({ alg: 42 })}.${p}.${s}`,
      `${b64({ alg: 'HS256', crit: ['exp'] })}.${p}.${s}`,
      `${b64({ alg: 'HS256', b64: false, crit: ['b64'] })}.${p}.${s}`,
      `${h}.${'A'.repeat(10000)}.${s}`,
    ];
    for (const t of cases) {
      remember(t);
      for (const path of ['/c', '/iss-anon', '/iss-secret']) await refused(path, bearer(t));
    }
    await refused('/c', {}, { code: 'AUTH_MISSING' }); // still serving
  });

  test('a key claim that names no consumer, or no key claim', async () => {
    await refused('/c', bearer(remember(await sign({ key: 'nobody' }, hs, 'HS256'))));
    await refused('/c', bearer(remember(await sign({}, hs, 'HS256'))));
    await refused('/c', bearer(remember(await sign({ key: 42 }, hs, 'HS256'))));
  });

  test('required_claims must be present', async () => {
    assert.equal((await get(`${gw.http}/iss-secret`, bearer(remember(await sign({ room: 'lobby' }, hs, 'HS256'))))).status, 200);
    await refused('/iss-secret', bearer(remember(await sign({}, hs, 'HS256'))));
  });
});

// ---- the issuer form ----------------------------------------------------------------------

describe('issuer form', () => {
  test('consumer_claim maps a verified claim to a consumer, with claims and scopes', async () => {
    const t = remember(await sign({ iss: ISS, aud: AUD, sub: 'alice', scope: 'read write' }, K.ec.privateKey, 'ES256', { kid: 'k1' }));
    const r = await get(`${gw.http}/iss`, bearer(t));
    assert.equal(r.status, 200);
    const h = lastHttp().headers;
    assert.equal(h['x-consumer-username'], 'alice');
    assert.equal(h['x-consumer-group'], 'team');
    assert.equal(h['x-credential-identifier'], undefined);
    const ed = remember(await sign({ iss: ISS, aud: AUD, sub: 'ed-user' }, K.ed.privateKey, 'EdDSA', { kid: 'ed1' }));
    assert.equal((await get(`${gw.http}/iss`, bearer(ed))).status, 200);
    assert.equal(lastHttp().headers['x-consumer-username'], 'ed-user');
  });

  test('a claim that names no configured consumer is refused', async () => {
    await refused('/iss', bearer(remember(await sign({ iss: ISS, aud: AUD, sub: 'mallory' }, K.ec.privateKey, 'ES256', { kid: 'k1' }))));
    await refused('/iss', bearer(remember(await sign({ iss: ISS, aud: AUD }, K.ec.privateKey, 'ES256', { kid: 'k1' }))));
  });

  test('without consumer_claim the request is authenticated without a consumer; client consumer headers are removed', async () => {
    const t = remember(await sign({ iss: ISS, aud: AUD, sub: 'alice' }, K.ec.privateKey, 'ES256', { kid: 'k1' }));
    const r = await get(`${gw.http}/iss-anon`, { ...bearer(t), 'x-consumer-username': 'alice' });
    assert.equal(r.status, 200);
    assert.equal(lastHttp().headers['x-consumer-username'], undefined);
  });

  test('algorithms outside the route\'s list are refused (HS256 on a JWKS route)', async () => {
    await refused('/iss-anon', bearer(remember(hmacToken({ alg: 'HS256', kid: 'k1' }, { iss: ISS, aud: AUD, exp: nowS() + 60 }, 'x'))));
    await refused('/iss-anon', bearer(remember(await sign({ iss: ISS, aud: AUD }, K.rsa.privateKey, 'RS256', { kid: 'k1' }))));
  });

  test('a kid that names no key: 401, with at most one JWKS refetch per cooldown', async () => {
    // Load the set first.
    assert.equal((await get(`${gw.http}/iss-anon`, bearer(remember(await sign({ iss: ISS, aud: AUD }, K.ec.privateKey, 'ES256', { kid: 'k1' }))))).status, 200);
    const before = jwks.fetches;
    for (let i = 0; i < 5; i++) {
      const t = remember(await sign({ iss: ISS, aud: AUD }, K.ec2.privateKey, 'ES256', { kid: `unknown-${i}` }));
      await refused('/iss-anon', bearer(t), { token: t });
    }
    assert.ok(jwks.fetches - before <= 1, `at most one refetch (got ${jwks.fetches - before})`);
  });

  test('keys without a kid: each key that fits the algorithm is tried', async () => {
    assert.equal((await get(`${gw.http}/iss-multi`, bearer(remember(await sign({}, K.ec.privateKey, 'ES256'))))).status, 200);
    assert.equal((await get(`${gw.http}/iss-multi`, bearer(remember(await sign({}, K.ec2.privateKey, 'ES256'))))).status, 200);
    await refused('/iss-multi', bearer(remember(await sign({}, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'ES256'))));
  });

  test('a JWKS that cannot be fetched and was never fetched: 503 AUTH_UNAVAILABLE', async () => {
    const t = remember(await sign({}, K.ec.privateKey, 'ES256', { kid: 'k1' }));
    await refused('/iss-down', bearer(t), { code: 'AUTH_UNAVAILABLE', status: 503, token: t });
    const r = await openWs(`${gw.ws}/iss-down`, { headers: bearer(t) });
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '1', 'every 503 carries Retry-After');
  });

  test('cached JWKS keys keep verifying while the endpoint is down, also once they are stale', async () => {
    const tok = () => sign({}, K.ec.privateKey, 'ES256', { kid: 'f1' }).then(remember);
    assert.equal((await get(`${gw.http}/iss-flaky`, bearer(await tok()))).status, 200);
    assert.equal(flaky.fetches, 1);
    await flaky.stop();
    // A new token (not a cache hit) with the known kid.
    assert.equal((await get(`${gw.http}/iss-flaky`, bearer(await tok()))).status, 200);
    // Past jwks_max_age (1 s): the refetch fails, the last keys still serve.
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal((await get(`${gw.http}/iss-flaky`, bearer(await tok()))).status, 200);
    assert.equal((await get(`${gw.http}/iss-flaky`, bearer(await tok()))).status, 200);
    // An unknown kid is still a 401, not a 503.
    await refused('/iss-flaky', bearer(remember(await sign({}, K.ec2.privateKey, 'ES256', { kid: 'f2' }))));
  });
});

// ---- lifetime and the verified-token cache --------------------------------------------

/** Open an SSE stream; resolves once headers arrive. */
function openSse(path, headers) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${gw.http}${path}`, { agent: false, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const s = { status: res.statusCode, text: '', ended: once(res, 'close') };
      res.setEncoding('utf8');
      res.on('data', (c) => (s.text += c));
      res.on('error', () => {});
      resolve(s);
    });
    req.on('error', reject);
  });
}

describe('a connection lives no longer than its token', { concurrency: true }, () => {
  test('WebSocket: closed with 1008 "credential expired" at exp, the upstream side too; the token is then refused', async () => {
    const t = await alice({ exp: nowS() + 2 });
    const { ws } = await openWs(`${gw.ws}/life`, { headers: bearer(t) });
    ws.send('still valid');
    assert.equal(await nextMessage(ws), 'still valid');
    const rec = await eventually(() => lifeClosures.at(-1));
    const { code, reason } = await closed(ws);
    assert.equal(code, 1008);
    assert.match(reason, /expired/);
    assert.ok(await eventually(() => rec.closed), 'the upstream connection was closed');
    // Reconnecting with the same (cached) token after exp is refused.
    const again = await openWs(`${gw.ws}/life`, { headers: bearer(t) });
    assert.equal(again.status, 401);
    assert.equal(JSON.parse(again.body).error.code, 'CREDENTIAL_EXPIRED');
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'life' && l.close_code === 1008));
    assert.equal(line.error, 'CREDENTIAL_EXPIRED');
  });

  test('SSE: the stream ends at exp and the upstream request is closed', async () => {
    const t = await alice({ exp: nowS() + 2 });
    const s = await openSse('/sse', bearer(t));
    assert.equal(s.status, 200);
    await eventually(() => s.text.includes('hello'));
    await s.ended;
    const rec = sseUp.requests.at(-1);
    assert.ok(await eventually(() => rec.closed), 'the upstream request was closed');
    assert.equal(rec.headers['x-consumer-username'], 'alice');
  });
});

describe('verified-token cache', () => {
  const defaults = {
    header: 'authorization',
    query: 'jwt',
    cookie: 'jwt',
    hide_credentials: false,
    key_claim_name: 'key',
    claims_to_verify: ['exp', 'nbf'],
    realm: 'jwt',
    cache_size: 10000,
  };
  const consumers = [
    { username: 'u', group_id: 'g', plugins: { 'jwt-auth': { key: 'k', secret: HS_SECRET, algorithm: 'HS256', exp: 86400, base64_secret: false, lifetime_grace_period: 0 } } },
  ];
  const fakeCtx = (token) => ({
    headers: { authorization: `Bearer ${token}` },
    query: '',
    websocket: false,
    consumer: undefined,
    expiresAt: undefined,
    vars: new Map(),
    dropProtocols: new Set(),
    upstreamHeaders: {},
    stripQuery: new Set(),
    limitLifetime(ms) {
      this.expiresAt = ms;
    },
  });

  test('a second handshake with the same token is answered synchronously from the cache, with claims for authz', async () => {
    const state = jwtAuth.init({ ...defaults }, { configDir: '.', consumers });
    const exp = nowS() + 600;
    const t = await sign({ key: 'k', exp, scp: ['rooms:read'], rooms: ['a'] }, hs, 'HS256');
    const first = fakeCtx(t);
    const r1 = jwtAuth.rewrite(first, state);
    assert.ok(r1 instanceof Promise, 'a miss verifies asynchronously');
    assert.equal(await r1, undefined);
    const second = fakeCtx(t);
    const r2 = jwtAuth.rewrite(second, state);
    assert.equal(r2, undefined, 'a hit is synchronous');
    for (const ctx of [first, second]) {
      assert.equal(ctx.consumer.username, 'u');
      assert.equal(ctx.consumer.group_id, 'g');
      assert.equal(ctx.consumer.auth, 'jwt-auth');
      assert.deepEqual(ctx.consumer.scopes, ['rooms:read']);
      assert.deepEqual(ctx.consumer.claims.rooms, ['a']);
      assert.equal(ctx.vars.get('auth.claims').key, 'k');
      assert.equal(ctx.expiresAt, exp * 1000);
    }
    assert.ok(Object.isFrozen(second.consumer.claims.rooms), 'cached claims cannot be altered by a later plugin');
  });

  test('the cache is bounded (least recently used evicted) and a failure is never cached', async () => {
    const state = jwtAuth.init({ ...defaults, cache_size: 2 }, { configDir: '.', consumers });
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => sign({ key: 'k' }, hs, 'HS256')));
    for (const t of [a, b]) assert.equal(await jwtAuth.rewrite(fakeCtx(t), state), undefined);
    assert.equal(jwtAuth.rewrite(fakeCtx(a), state), undefined, 'a is a hit (and now most recent)');
    assert.equal(await jwtAuth.rewrite(fakeCtx(c), state), undefined);
    assert.equal(jwtAuth.rewrite(fakeCtx(a), state), undefined, 'a stayed');
    assert.ok(jwtAuth.rewrite(fakeCtx(b), state) instanceof Promise, 'b was evicted');
    const bad = hmacToken({ alg: 'HS256' }, { key: 'k', exp: nowS() + 60 }, 'wrong');
    assert.equal((await jwtAuth.rewrite(fakeCtx(bad), state)).reject, 'AUTH_INVALID');
    assert.ok(jwtAuth.rewrite(fakeCtx(bad), state) instanceof Promise);
  });

  test('concurrent handshakes with one new token share one verification', async () => {
    const state = jwtAuth.init({ ...defaults }, { configDir: '.', consumers });
    const t = await sign({ key: 'k' }, hs, 'HS256');
    const ctxs = Array.from({ length: 20 }, () => fakeCtx(t));
    const results = await Promise.all(ctxs.map((ctx) => jwtAuth.rewrite(ctx, state)));
    assert.deepEqual(new Set(results), new Set([undefined]));
    assert.ok(ctxs.every((ctx) => ctx.consumer?.username === 'u'));
  });
});

// ---- configuration mistakes fail at load ------------------------------------------------

describe('configuration is checked at load', () => {
  const load = (routePlugin, consumersYaml = '') =>
    loadConfigText(
      `upstreams:
  - { id: up, nodes: { "127.0.0.1:1": 1 } }
${consumersYaml}
routes:
  - id: r
    uri: /r
    upstream_id: up
    plugins:
      jwt-auth: ${routePlugin}
`,
      '/tmp/jwt-auth-config.yaml',
      { registry: createRegistry(), env: { EC_PEM: K.ec.pem, RSA_PEM: K.rsa.pem } },
    );
  const refusedConfig = async (why, routePlugin, consumersYaml, fragment) => {
    await assert.rejects(load(routePlugin, consumersYaml), (err) => {
      assert.equal(err.name, 'ConfigError', why);
      if (fragment) assert.match(err.message, fragment, why);
      return true;
    });
  };

  test('valid configs load', async () => {
    await load('{}', 'consumers:\n  - { username: a, plugins: { jwt-auth: { key: a, secret: s } } }');
    await load('{ public_key: "${EC_PEM}", algorithms: [ES256], issuer: x, audience: [y, z], consumer_claim: sub }');
    await load('{ jwks_uri: "https://idp.example/jwks", algorithms: [RS256, PS256], jwks_cooldown: 10, jwks_max_age: 60, jwks_timeout: 2000 }');
  });

  test('refused: none, two key sources, algorithm/key mismatches, missing algorithms, form-specific attributes', async () => {
    await refusedConfig('alg none', '{ secret: s, algorithms: [none] }', '', /algorithms/);
    await refusedConfig('two key sources', '{ secret: s, public_key: "${EC_PEM}", algorithms: [ES256] }', '', /only one of/);
    await refusedConfig('HS with a JWKS', '{ jwks_uri: "https://idp.example/jwks", algorithms: [HS256] }', '', /HS256/);
    await refusedConfig('RS with a secret', '{ secret: s, algorithms: [RS256] }', '', /RS256/);
    await refusedConfig('EC key for RS256', '{ public_key: "${EC_PEM}", algorithms: [RS256] }', '', /does not fit/);
    await refusedConfig('EC key for HS256', '{ public_key: "${EC_PEM}", algorithms: [ES256, HS256] }', '', /HS256/);
    await refusedConfig('no algorithms with a JWKS', '{ jwks_uri: "https://idp.example/jwks" }', '', /algorithms is required/);
    await refusedConfig('not a PEM', '{ public_key: "hello", algorithms: [RS256] }', '', /not a PEM/);
    await refusedConfig('issuer-only attribute on the consumer form', '{ algorithms: [HS256] }', '', /need a route key/);
    await refusedConfig('jwks tuning without a JWKS', '{ secret: s, jwks_cooldown: 5 }', '', /only apply with jwks_uri/);
    await refusedConfig('a plain http jwks_uri typo', '{ jwks_uri: "idp.example/jwks", algorithms: [RS256] }', '', /jwks_uri/);
  });

  test('refused: consumer credentials without their key, with a mismatched key, or sharing a key', async () => {
    const c = (cred) => `consumers:\n  - { username: a, plugins: { jwt-auth: ${cred} } }`;
    await refusedConfig('HS256 without a secret', '{}', c('{ key: a }'), /secret/);
    await refusedConfig('RS256 without a public key', '{}', c('{ key: a, algorithm: RS256, secret: s }'), /public_key/);
    await refusedConfig('EC key for RS256', '{}', c('{ key: a, algorithm: RS256, public_key: "${EC_PEM}" }'), /does not fit/);
    await refusedConfig('unknown algorithm', '{}', c('{ key: a, algorithm: none, secret: s }'), /algorithm/);
    await refusedConfig(
      'duplicate keys',
      '{}',
      'consumers:\n  - { username: a, plugins: { jwt-auth: { key: k, secret: s } } }\n  - { username: b, plugins: { jwt-auth: { key: k, secret: t } } }',
      /unique/,
    );
  });
});

// ---- leaks -----------------------------------------------------------------------------

test('no token, signature or secret appears in any log line', async () => {
  const raw = gw.log.raw();
  assert.ok(raw.includes('jwt-auth:'), 'rejection causes are logged');
  for (const t of sent) {
    // (Short malformed strings such as "abc" occur in any log by chance.)
    if (t.length > 24) assert.ok(!raw.includes(t), `a token reached the log: ${t.slice(0, 40)}`);
    const sig = t.split('.')[2];
    if (sig && sig.length > 8) assert.ok(!raw.includes(sig), 'a signature reached the log');
  }
  assert.ok(!raw.includes(HS_SECRET) && !raw.includes(B64_SECRET));
});
