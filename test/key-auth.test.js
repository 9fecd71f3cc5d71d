// key-auth as clients and the upstream observe it: every credential transport
// (header, query, cookie, subprotocol) on WebSocket handshakes and plain HTTP,
// header-before-query order, hide_credentials, the consumer headers sent upstream
// (client-forged copies removed), ${ENV} keys, constant-time lookup (wrong keys of
// any length are 401), duplicate keys refused at load, and no key in any log
// line or error body.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closed, config, get, httpUpstream, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { createRegistry, loadConfigText } from '../dist/index.js';

const ALICE = 'alice-key-0123456789';
const BOB = 'bob-from-env-7f3a9c21';
const CAROL = 'carol-Key_with.token~chars';
const WRONG = ['alice-key-0123456788', 'zQ7', 'k'.repeat(4000), `${ALICE}-and-more`];
const SECRETS = [ALICE, BOB, CAROL, ...WRONG];

let up;
let sseUp;
let gw;
/** Every error body the gateway sent, for the leak check. */
const bodies = [];

const consumers = `consumer_groups:
  - id: staff
consumers:
  - username: alice
    group_id: staff
    plugins:
      key-auth: { key: ${ALICE} }
  - username: bob
    plugins:
      key-auth: { key: "\${BOB_KEY}" }
  - username: carol
    plugins:
      key-auth: { key: "${CAROL}" }
`;

before(async () => {
  up = await wsUpstream({ handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false) });
  sseUp = await httpUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end('data: hello\n\n');
  });
  const routes = `  - id: default
    uri: /ws
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
  - id: browser
    uri: /browser
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: { cookie: apikey, subprotocol: apikey. }
  - id: hidden
    uri: /hidden
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: { header: X-API-Key, query: key, cookie: auth, subprotocol: apikey., hide_credentials: true, realm: staff area }
  - id: sse
    uri: /events
    upstream_id: sse
    plugins:
      key-auth: { cookie: apikey, hide_credentials: true }
`;
  const sseUpstream = `  - id: sse
    nodes: { "127.0.0.1:${sseUp.port}": 1 }
routes:
`;
  gw = await startGateway(
    config(up.port, routes, consumers).replace('routes:\n', sseUpstream),
    { env: { BOB_KEY: BOB } },
  );
});

after(async () => {
  await gw.close();
  await up.close();
  await sseUp.close();
});

/** A refused handshake or request: status, WWW-Authenticate, catalogue code and message. */
function assertRejected(r, code, message, realm = 'key') {
  bodies.push(r.body);
  assert.equal(r.status, 401);
  assert.equal(r.headers['www-authenticate'], `ApiKey realm="${realm}"`);
  const body = JSON.parse(r.body);
  assert.equal(body.error.code, code);
  assert.equal(body.error.message, message);
  assert.match(body.error.request_id, /./);
}

async function accepted(url, opts) {
  const before = up.handshakes.length;
  const r = await openWs(url, opts);
  assert.ok(r.ws, `handshake refused: ${r.status} ${r.body}`);
  assert.equal(up.handshakes.length, before + 1);
  return { ws: r.ws, upstream: up.handshakes.at(-1) };
}

async function done(ws) {
  ws.close();
  await closed(ws);
}

// ---- transports ----------------------------------------------------------------

test('WebSocket, key in the apikey header: admitted as alice; the upstream learns who, never a forged name', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/ws`, {
    headers: { apikey: ALICE, 'x-consumer-username': 'mallory', 'x-credential-identifier': 'forged', 'x-consumer-group': 'admins' },
  });
  assert.equal(upstream.headers['x-consumer-username'], 'alice');
  assert.equal(upstream.headers['x-credential-identifier'], 'alice/key-auth');
  assert.equal(upstream.headers['x-consumer-group'], 'staff');
  assert.equal(upstream.headers.apikey, ALICE, 'hide_credentials is off: the key is forwarded');
  ws.send('hi');
  assert.equal(await nextMessage(ws), 'hi');
  await done(ws);
  const line = gw.log.access().find((l) => l.route === 'default' && l.status === 101);
  assert.ok(line);
});

test('WebSocket, key in the apikey query parameter: admitted; without hide_credentials the URL is unchanged', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/ws?room=1&apikey=${encodeURIComponent(ALICE)}`);
  assert.equal(upstream.url, `/ws?room=1&apikey=${ALICE}`);
  assert.equal(upstream.headers['x-consumer-username'], 'alice');
  await done(ws);
});

test('WebSocket, key in a cookie (browser transport): admitted', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/browser`, { headers: { cookie: `theme=dark; apikey=${ALICE}` } });
  assert.equal(upstream.headers['x-consumer-username'], 'alice');
  assert.equal(upstream.headers.cookie, `theme=dark; apikey=${ALICE}`);
  await done(ws);
});

test('WebSocket, key in an offered apikey.<key> subprotocol: withheld from the upstream, the other protocol is negotiated', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/browser`, { protocols: [`apikey.${CAROL}`, 'chat'] });
  assert.equal(upstream.headers['sec-websocket-protocol'], 'chat');
  assert.equal(upstream.headers['x-consumer-username'], 'carol');
  assert.equal(ws.protocol, 'chat');
  await done(ws);
});

test('a credential subprotocol is withheld even when the header authenticated', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/browser`, { headers: { apikey: ALICE }, protocols: ['chat', 'apikey.not-a-key'] });
  assert.equal(upstream.headers['sec-websocket-protocol'], 'chat');
  assert.equal(upstream.headers['x-consumer-username'], 'alice');
  assert.equal(ws.protocol, 'chat');
  await done(ws);
});

test('a subprotocol is not read on a route without `subprotocol`', async () => {
  const r = await openWs(`${gw.ws}/ws`, { protocols: [`apikey.${CAROL}`, 'chat'] });
  assertRejected(r, 'AUTH_MISSING', 'Missing API key in request');
});

test('a wrong key in a subprotocol is 401 and the subprotocol never reaches the upstream', async () => {
  const before = up.handshakes.length;
  const r = await openWs(`${gw.ws}/browser`, { protocols: ['apikey.wrong-key', 'chat'] });
  assertRejected(r, 'AUTH_INVALID', 'Invalid API key in request');
  assert.equal(up.handshakes.length, before);
});

test('a ${ENV} key works like a literal one', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/ws`, { headers: { apikey: BOB } });
  assert.equal(upstream.headers['x-consumer-username'], 'bob');
  assert.equal(upstream.headers['x-consumer-group'], undefined);
  await done(ws);
  const r = await openWs(`${gw.ws}/ws`, { headers: { apikey: '${BOB_KEY}' } });
  assertRejected(r, 'AUTH_INVALID', 'Invalid API key in request');
});

test('plain HTTP: the header and query transports admit; the upstream sees the consumer', async () => {
  const r1 = await get(`${gw.http}/ws`, { apikey: ALICE, 'x-consumer-username': 'mallory' });
  assert.equal(r1.status, 200);
  const seen1 = up.received.at(-1);
  assert.equal(seen1.headers['x-consumer-username'], 'alice');
  const r2 = await get(`${gw.http}/ws?apikey=${BOB}`);
  assert.equal(r2.status, 200);
  assert.equal(up.received.at(-1).headers['x-consumer-username'], 'bob');
});

test('SSE (EventSource transport): key in a cookie, hidden from the upstream, other cookies kept', async () => {
  const r = await get(`${gw.http}/events`, { cookie: `apikey=${CAROL}; lang=en`, accept: 'text/event-stream' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'data: hello\n\n');
  const seen = sseUp.requests.at(-1);
  assert.equal(seen.headers.cookie, 'lang=en');
  assert.equal(seen.headers['x-consumer-username'], 'carol');
  const no = await get(`${gw.http}/events`, { cookie: 'lang=en' });
  assertRejected(no, 'AUTH_MISSING', 'Missing API key in request');
});

// ---- order and rejections ----------------------------------------------------------

test('the header is checked before the query: a wrong header key is 401 even with a good query key', async () => {
  const r = await openWs(`${gw.ws}/ws?apikey=${ALICE}`, { headers: { apikey: 'wrong' } });
  assertRejected(r, 'AUTH_INVALID', 'Invalid API key in request');
  const h = await get(`${gw.http}/ws?apikey=${ALICE}`, { apikey: 'wrong' });
  assertRejected(h, 'AUTH_INVALID', 'Invalid API key in request');
});

test('no key: 401 AUTH_MISSING with WWW-Authenticate, on a handshake and a plain request; the upstream is never contacted', async () => {
  const before = up.handshakes.length;
  const beforeHttp = up.received.length;
  assertRejected(await openWs(`${gw.ws}/ws`), 'AUTH_MISSING', 'Missing API key in request');
  assertRejected(await openWs(`${gw.ws}/ws`, { headers: { apikey: '' } }), 'AUTH_MISSING', 'Missing API key in request');
  assertRejected(await openWs(`${gw.ws}/ws?apikey=`), 'AUTH_MISSING', 'Missing API key in request');
  assertRejected(await get(`${gw.http}/ws`), 'AUTH_MISSING', 'Missing API key in request');
  assert.equal(up.handshakes.length, before);
  assert.equal(up.received.length, beforeHttp);
});

test('wrong keys of every length are 401 AUTH_INVALID, never 500', async () => {
  for (const key of WRONG) {
    assertRejected(await openWs(`${gw.ws}/ws`, { headers: { apikey: key } }), 'AUTH_INVALID', 'Invalid API key in request');
    assertRejected(await get(`${gw.http}/ws?apikey=${encodeURIComponent(key)}`), 'AUTH_INVALID', 'Invalid API key in request');
  }
  // A key that differs from a valid one only in case.
  assertRejected(await get(`${gw.http}/ws`, { apikey: ALICE.toUpperCase() }), 'AUTH_INVALID', 'Invalid API key in request');
});

test('the rejection is logged with its cause but without the key', async () => {
  await openWs(`${gw.ws}/browser`, { headers: { cookie: `apikey=${WRONG[0]}` } });
  const line = gw.log.access().findLast((l) => l.route === 'browser' && l.status === 401);
  assert.equal(line.error, 'AUTH_INVALID');
  assert.equal(line.detail, 'unknown API key in cookie "apikey"');
  const missing = gw.log.access().findLast((l) => l.route === 'default' && l.error === 'AUTH_MISSING');
  assert.equal(missing.detail, 'no API key in header "apikey", query parameter "apikey"');
});

test('`realm` names the realm of WWW-Authenticate', async () => {
  assertRejected(await openWs(`${gw.ws}/hidden`), 'AUTH_MISSING', 'Missing API key in request', 'staff area');
  assertRejected(await get(`${gw.http}/hidden?key=nope`), 'AUTH_INVALID', 'Invalid API key in request', 'staff area');
});

// ---- hide_credentials --------------------------------------------------------------

test('hide_credentials: a custom header is removed from the upstream handshake', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/hidden`, { headers: { 'X-API-Key': ALICE } });
  assert.equal(upstream.headers['x-api-key'], undefined);
  assert.equal(upstream.headers['x-consumer-username'], 'alice');
  await done(ws);
});

test('hide_credentials: the query parameter is removed, other parameters kept', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/hidden?room=7&key=${encodeURIComponent(ALICE)}&x=y`);
  assert.equal(upstream.url, '/hidden?room=7&x=y');
  await done(ws);
  assert.equal((await get(`${gw.http}/hidden?key=${BOB}`)).status, 200);
  assert.equal(up.received.at(-1).url, '/hidden');
});

test('hide_credentials: the cookie is removed, other cookies kept; a lone cookie removes the header', async () => {
  const a = await accepted(`${gw.ws}/hidden`, { headers: { cookie: `a=1; auth=${ALICE}; b=2` } });
  assert.equal(a.upstream.headers.cookie, 'a=1; b=2');
  await done(a.ws);
  const b = await accepted(`${gw.ws}/hidden`, { headers: { cookie: `auth=${ALICE}` } });
  assert.equal(b.upstream.headers.cookie, undefined);
  await done(b.ws);
});

test('hide_credentials: every copy of the key is removed, not only the one that authenticated', async () => {
  const { ws, upstream } = await accepted(`${gw.ws}/hidden?key=${BOB}`, {
    headers: { 'x-api-key': ALICE, cookie: `auth=${CAROL}` },
    protocols: ['chat', `apikey.${CAROL}`],
  });
  assert.equal(upstream.headers['x-consumer-username'], 'alice', 'the header wins');
  assert.equal(upstream.url, '/hidden');
  assert.equal(upstream.headers['x-api-key'], undefined);
  assert.equal(upstream.headers.cookie, undefined);
  assert.equal(upstream.headers['sec-websocket-protocol'], 'chat');
  const raw = JSON.stringify(upstream);
  for (const s of [ALICE, BOB, CAROL]) assert.ok(!raw.includes(s), 'no key reaches the upstream');
  await done(ws);
});

// ---- config --------------------------------------------------------------------------

async function loadIssues(yaml, env = {}) {
  try {
    await loadConfigText(yaml, '/tmp/key-auth-test.yaml', { registry: createRegistry(), env });
  } catch (err) {
    assert.equal(err.code, 'ERR_CONFIG_INVALID');
    return err;
  }
  assert.fail('the config was accepted');
}

test('two consumers with the same key: the config is refused, naming the consumers, not the key', async () => {
  const err = await loadIssues(
    config(
      1,
      `  - id: r
    uri: /r
    upstream_id: up
    plugins:
      key-auth: {}
`,
      `consumers:
  - username: one
    plugins:
      key-auth: { key: "\${SHARED}" }
  - username: two
    plugins:
      key-auth: { key: shared-secret-key-1 }
`,
    ),
    { SHARED: 'shared-secret-key-1' },
  );
  assert.match(err.message, /routes\[0\]\.plugins\.key-auth: plugin "key-auth" refused this config: consumers "one" and "two" have the same key-auth key/);
  assert.ok(!err.message.includes('shared-secret-key-1'));
});

test('a consumer key must be a non-empty string; an unknown attribute is refused', async () => {
  const err = await loadIssues(
    config(
      1,
      `  - id: r
    uri: /r
    upstream_id: up
    plugins:
      key-auth: { header: "bad header" }
`,
      `consumers:
  - username: one
    plugins:
      key-auth: { key: "" }
  - username: two
    plugins:
      key-auth: { key: k-123456789, secret: x }
`,
    ),
  );
  const paths = err.issues.map((i) => i.path);
  assert.ok(paths.includes('consumers[0].plugins.key-auth.key'), paths.join());
  assert.ok(paths.includes('consumers[1].plugins.key-auth.secret'), paths.join());
  assert.ok(paths.includes('routes[0].plugins.key-auth.header'), paths.join());
  assert.ok(!err.message.includes('k-123456789'));
});

// ---- leaks ---------------------------------------------------------------------------

test('no key appears in any log line or error body', async () => {
  const log = gw.log.raw();
  assert.ok(log.includes('AUTH_INVALID') && log.includes('AUTH_MISSING'), 'the rejections were logged');
  for (const s of SECRETS) {
    assert.ok(!log.includes(s), `key #${SECRETS.indexOf(s)} was logged`);
    for (const b of bodies) assert.ok(!b.includes(s), 'a key was sent in an error body');
  }
  assert.ok(!log.includes('k'.repeat(40)));
});
