// basic-auth as clients and the upstream observe it: plain, bcrypt ($2a$/$2b$/$2y$)
// and scrypt passwords on WebSocket handshakes and plain HTTP, ${ENV} passwords,
// hide_credentials, the consumer headers upstream (forged copies removed), every
// malformed Authorization header a 401 (never a 500), malformed hashes and
// duplicate user names refused at load, scripts/hash-password.js, the verified-
// credentials cache, and no password in any log line or error body.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import bcrypt from 'bcryptjs';
import { closed, config, get, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { createRegistry, loadConfigText } from '../dist/index.js';
import { parseBasic } from '../dist/plugins/basic-auth/header.js';
import { userIndex, verifiedKey } from '../dist/plugins/basic-auth/users.js';

const SCRIPT = new URL('../scripts/hash-password.js', import.meta.url).pathname;

// Passwords (the secrets the leak check looks for).
const CAROL_PW = 'pl4in:pass word';
const DAVE_PW = 'dave-bcrypt-2y-pw';
const HANK_PW = 'hank-bcrypt-2a-pw';
const ERIN_PW = 'päss:word';
const FRANK_PW = 'frank-from-the-script';
const GINA_PW = 'gina-env-password-42';
const WRONG_PW = 'not-the-password-31337';
const SECRETS = [CAROL_PW, DAVE_PW, HANK_PW, ERIN_PW, FRANK_PW, GINA_PW, WRONG_PW];

// Computed independently with Python: hashlib.scrypt(b'p\xc3\xa4ss:word', salt=b'portcullis-salt!', n=2**10, r=8, p=1, dklen=32)
const ERIN_HASH = '$scrypt$ln=10,r=8,p=1$cG9ydGN1bGxpcy1zYWx0IQ$dbmvfgRejpMZde7S/Gzjfp9vruQgJ5/ONhv3RHgCujA';

let up;
let gw;
const bodies = [];

function hashWithScript(password, args = []) {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [SCRIPT, ...args], (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout.trim())));
    child.stdin.end(`${password}\n`);
  });
}

function basic(user, password) {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

before(async () => {
  up = await wsUpstream();
  const daveHash = bcrypt.hashSync(DAVE_PW, 4).replace(/^\$2b\$/, '$2y$');
  const hankHash = bcrypt.hashSync(HANK_PW, 4).replace(/^\$2b\$/, '$2a$');
  const frankHash = await hashWithScript(FRANK_PW);
  assert.match(frankHash, /^\$scrypt\$ln=15,r=8,p=3\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  gw = await startGateway(
    config(
      up.port,
      `  - id: open
    uri: /ws
    enable_websocket: true
    upstream_id: up
    plugins:
      basic-auth: {}
  - id: hidden
    uri: /hidden
    enable_websocket: true
    upstream_id: up
    plugins:
      basic-auth: { hide_credentials: true, realm: ops console }
`,
      `consumer_groups:
  - id: ops
consumers:
  - username: carol
    group_id: ops
    plugins:
      basic-auth: { username: carol@example.com, password: "${CAROL_PW}" }
  - username: dave
    plugins:
      basic-auth: { username: dave, password: "${daveHash}" }
  - username: hank
    plugins:
      basic-auth: { username: hank, password: "${hankHash}" }
  - username: erin
    plugins:
      basic-auth: { username: erin, password: "${ERIN_HASH}" }
  - username: frank
    plugins:
      basic-auth: { username: frank, password: "${frankHash}" }
  - username: gina
    plugins:
      basic-auth: { username: gina, password: "\${GINA_PW}" }
`,
    ),
    { env: { GINA_PW } },
  );
});

after(async () => {
  await gw.close();
  await up.close();
});

function assertRejected(r, code, message, realm = 'basic') {
  bodies.push(r.body);
  assert.equal(r.status, 401, r.body);
  assert.equal(r.headers['www-authenticate'], `Basic realm="${realm}"`);
  const body = JSON.parse(r.body);
  assert.equal(body.error.code, code);
  assert.equal(body.error.message, message);
}

async function admitted(path, authorization, extra = {}) {
  const before = up.handshakes.length;
  const r = await openWs(`${gw.ws}${path}`, { headers: { authorization, ...extra } });
  assert.ok(r.ws, `refused: ${r.status} ${r.body}`);
  assert.equal(up.handshakes.length, before + 1);
  const seen = up.handshakes.at(-1);
  r.ws.close();
  await closed(r.ws);
  return seen;
}

// ---- accepted -----------------------------------------------------------------------

test('WebSocket, plain password with a colon and a space: admitted; the upstream learns the consumer, not a forged one', async () => {
  const seen = await admitted('/ws', basic('carol@example.com', CAROL_PW), { 'x-consumer-username': 'mallory', 'x-credential-identifier': 'x' });
  assert.equal(seen.headers['x-consumer-username'], 'carol');
  assert.equal(seen.headers['x-credential-identifier'], 'carol@example.com');
  assert.equal(seen.headers['x-consumer-group'], 'ops');
  assert.equal(seen.headers.authorization, basic('carol@example.com', CAROL_PW), 'hide_credentials is off');
});

test('the connection works after a hashed-password handshake (asynchronous check)', async () => {
  const r = await openWs(`${gw.ws}/ws`, { headers: { authorization: basic('erin', ERIN_PW) } });
  r.ws.send('ping');
  assert.equal(await nextMessage(r.ws), 'ping');
  assert.equal(up.handshakes.at(-1).headers['x-consumer-username'], 'erin');
  r.ws.close();
  await closed(r.ws);
});

test('bcrypt $2y$ and $2a$ hashes, scrypt hashes (Python-made and script-made), ${ENV} passwords: all admit, over WebSocket and HTTP', async () => {
  const cases = [
    ['dave', DAVE_PW, 'dave'],
    ['hank', HANK_PW, 'hank'],
    ['erin', ERIN_PW, 'erin'],
    ['frank', FRANK_PW, 'frank'],
    ['gina', GINA_PW, 'gina'],
  ];
  for (const [user, pw, consumer] of cases) {
    const seen = await admitted('/ws', basic(user, pw));
    assert.equal(seen.headers['x-consumer-username'], consumer);
    assert.equal(seen.headers['x-credential-identifier'], user);
    const r = await get(`${gw.http}/ws`, { authorization: basic(user, pw), 'x-consumer-username': 'mallory' });
    assert.equal(r.status, 200, `${user} over HTTP`);
    assert.equal(up.received.at(-1).headers['x-consumer-username'], consumer);
  }
});

test('concurrent handshakes with the same hashed credentials are all admitted', async () => {
  const results = await Promise.all(Array.from({ length: 8 }, () => openWs(`${gw.ws}/ws`, { headers: { authorization: basic('dave', DAVE_PW) } })));
  for (const r of results) {
    assert.ok(r.ws);
    r.ws.close();
    await closed(r.ws);
  }
});

test('hide_credentials: Authorization is removed from the upstream handshake and request', async () => {
  const seen = await admitted('/hidden', basic('dave', DAVE_PW));
  assert.equal(seen.headers.authorization, undefined);
  assert.equal(seen.headers['x-consumer-username'], 'dave');
  const r = await get(`${gw.http}/hidden`, { authorization: basic('carol@example.com', CAROL_PW) });
  assert.equal(r.status, 200);
  assert.equal(up.received.at(-1).headers.authorization, undefined);
  assert.equal(up.received.at(-1).headers['x-consumer-username'], 'carol');
});

// ---- rejected -----------------------------------------------------------------------

test('no Authorization: 401 AUTH_MISSING with WWW-Authenticate: Basic realm="basic"; the upstream is never contacted', async () => {
  const before = up.handshakes.length;
  const beforeHttp = up.received.length;
  assertRejected(await openWs(`${gw.ws}/ws`), 'AUTH_MISSING', 'Missing authorization in request');
  assertRejected(await openWs(`${gw.ws}/ws`, { headers: { authorization: '' } }), 'AUTH_MISSING', 'Missing authorization in request');
  assertRejected(await get(`${gw.http}/ws`), 'AUTH_MISSING', 'Missing authorization in request');
  assert.equal(up.handshakes.length, before);
  assert.equal(up.received.length, beforeHttp);
});

test('`realm` names the realm of WWW-Authenticate', async () => {
  assertRejected(await openWs(`${gw.ws}/hidden`), 'AUTH_MISSING', 'Missing authorization in request', 'ops console');
  assertRejected(await get(`${gw.http}/hidden`, { authorization: basic('dave', WRONG_PW) }), 'AUTH_INVALID', 'Invalid user authorization', 'ops console');
});

test('wrong passwords and unknown users: 401 AUTH_INVALID, for plain and hashed passwords', async () => {
  for (const user of ['carol@example.com', 'dave', 'hank', 'erin', 'frank', 'gina']) {
    assertRejected(await openWs(`${gw.ws}/ws`, { headers: { authorization: basic(user, WRONG_PW) } }), 'AUTH_INVALID', 'Invalid user authorization');
    assertRejected(await get(`${gw.http}/ws`, { authorization: basic(user, WRONG_PW) }), 'AUTH_INVALID', 'Invalid user authorization');
  }
  // The consumer name is not the basic-auth user name.
  assertRejected(await get(`${gw.http}/ws`, { authorization: basic('carol', CAROL_PW) }), 'AUTH_INVALID', 'Invalid user authorization');
  // A password right for another user.
  assertRejected(await get(`${gw.http}/ws`, { authorization: basic('dave', HANK_PW) }), 'AUTH_INVALID', 'Invalid user authorization');
  // A prefix, and the password with a trailing space.
  assertRejected(await get(`${gw.http}/ws`, { authorization: basic('carol@example.com', CAROL_PW.slice(0, -1)) }), 'AUTH_INVALID', 'Invalid user authorization');
  assertRejected(await get(`${gw.http}/ws`, { authorization: basic('erin', `${ERIN_PW} `) }), 'AUTH_INVALID', 'Invalid user authorization');
});

const MALFORMED = [
  ['the scheme alone', 'Basic'],
  ['the scheme and spaces', 'Basic    '],
  ['another scheme', 'Bearer eyJhbGciOiJIUzI1NiJ9.e30.x'],
  ['no scheme', Buffer.from(`dave:${DAVE_PW}`).toString('base64')],
  ['bad base64 characters', 'Basic !!!not-base64!!!'],
  ['impossible base64 length', 'Basic a'],
  ['base64 with inner padding', 'Basic ZGF2ZQ==ZGF2ZQ=='],
  ['no colon', `Basic ${Buffer.from('davepassword').toString('base64')}`],
  ['empty user name', `Basic ${Buffer.from(':password').toString('base64')}`],
  ['over-long credentials', `Basic ${'QUFB'.repeat(1100)}`],
];

test('malformed Authorization headers are 401 AUTH_INVALID, never 500, on WebSocket and HTTP', async () => {
  for (const [name, value] of MALFORMED) {
    const ws = await openWs(`${gw.ws}/ws`, { headers: { authorization: value } });
    assert.equal(ws.status, 401, name);
    assertRejected(ws, 'AUTH_INVALID', 'Invalid authorization in request');
    assertRejected(await get(`${gw.http}/ws`, { authorization: value }), 'AUTH_INVALID', 'Invalid authorization in request');
  }
  // Bytes that are not UTF-8 decode to a name no consumer has.
  const bytes = `Basic ${Buffer.from([0xff, 0xfe, 0x3a, 0x61]).toString('base64')}`;
  assertRejected(await get(`${gw.http}/ws`, { authorization: bytes }), 'AUTH_INVALID', 'Invalid user authorization');
});

test('the scheme is case-insensitive and surrounding spaces are allowed', async () => {
  const value = basic('carol@example.com', CAROL_PW).replace('Basic ', 'bAsIc   ');
  assert.equal((await get(`${gw.http}/ws`, { authorization: value })).status, 200);
});

test('rejections are logged with their cause; an unknown user name is not logged (it may be a password)', async () => {
  await get(`${gw.http}/ws`, { authorization: basic(WRONG_PW, 'x') });
  const unknown = gw.log.access().findLast((l) => l.route === 'open' && l.error === 'AUTH_INVALID');
  assert.equal(unknown.detail, 'unknown basic-auth username');
  await get(`${gw.http}/ws`, { authorization: basic('dave', WRONG_PW) });
  const wrong = gw.log.access().findLast((l) => l.route === 'open' && l.error === 'AUTH_INVALID');
  assert.equal(wrong.detail, 'wrong password for basic-auth username "dave"');
  await get(`${gw.http}/ws`, { authorization: 'Basic !!' });
  assert.equal(gw.log.access().findLast((l) => l.route === 'open').detail, 'Basic credentials are not valid base64');
});

// ---- pure parts -------------------------------------------------------------------------

test('parseBasic: literal headers', () => {
  assert.deepEqual(parseBasic('Basic YWxhZGRpbjpvcGVuc2VzYW1l'), { username: 'aladdin', password: 'opensesame' });
  assert.deepEqual(parseBasic('basic dTpwOnE='), { username: 'u', password: 'p:q' });
  assert.deepEqual(parseBasic('Basic dTo='), { username: 'u', password: '' });
  assert.deepEqual(parseBasic('Basic dTpw'), { username: 'u', password: 'p' }, 'unpadded');
  assert.deepEqual(parseBasic('Basic dQ=='), { error: 'Basic credentials without a colon between user name and password' });
  assert.deepEqual(parseBasic('Basic Og=='), { error: 'Basic credentials with an empty user name' });
  assert.deepEqual(parseBasic('Basic dTpw%'), { error: 'Basic credentials are not valid base64' });
  assert.deepEqual(parseBasic('Basic dTpwA'), { error: 'Basic credentials are not valid base64' });
  assert.deepEqual(parseBasic('Digest dTpw'), { error: 'Authorization is not of the Basic scheme' });
  assert.deepEqual(parseBasic('Basicd'), { error: 'Authorization is not of the Basic scheme' });
  assert.deepEqual(parseBasic(''), { error: 'Authorization is not of the Basic scheme' });
});

test('the verified cache: concurrent checks share one hash computation; only successes are remembered', async () => {
  const hash = bcrypt.hashSync('cache-test-pw', 4);
  const index = userIndex([{ username: 'u1', plugins: { 'basic-auth': { username: 'u', password: hash } } }]);
  const user = index.users.get('u');
  const good = verifiedKey('u', 'cache-test-pw');
  assert.equal(index.recentlyVerified(good), false);
  const a = index.verify(user, 'cache-test-pw', good);
  const b = index.verify(user, 'cache-test-pw', good);
  assert.equal(a, b, 'a second check of the same credentials joins the first');
  assert.equal(await a, true);
  assert.equal(index.recentlyVerified(good), true);
  assert.equal(index.recentlyVerified(good, Date.now() + 61_000), false, 'entries expire after 60 s');
  const bad = verifiedKey('u', 'wrong');
  assert.equal(await index.verify(user, 'wrong', bad), false);
  assert.equal(index.recentlyVerified(bad), false);
  assert.equal(index.cachedCount, 0, 'the expired entry was dropped and the failure never stored');
});

// ---- config ---------------------------------------------------------------------------

async function configError(consumersYaml, env = {}) {
  const yaml = config(
    1,
    `  - id: r
    uri: /r
    upstream_id: up
    plugins:
      basic-auth: {}
`,
    consumersYaml,
  );
  try {
    await loadConfigText(yaml, '/tmp/basic-auth-test.yaml', { registry: createRegistry(), env });
  } catch (err) {
    assert.equal(err.code, 'ERR_CONFIG_INVALID');
    return err;
  }
  assert.fail('the config was accepted');
}

test('malformed hashes are refused at load, naming the consumer and never quoting the hash', async () => {
  const cases = [
    ['$2b$10$tooshort', /consumer "x": basic-auth the password looks like a bcrypt hash but is not a valid one/],
    ['$2b$99$' + 'a'.repeat(53), /not a valid one/],
    ['$scrypt$ln=10,r=8$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', /looks like an scrypt hash but is not of the form/],
    ['$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', /scrypt ln must be between 10 and 20 \(found 30\)/],
    ['$scrypt$ln=10,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA', /salt must be at least 8 bytes/],
    ['$scrypt$ln=20,r=32,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', /needs 4096 MiB per check/],
  ];
  for (const [hash, re] of cases) {
    const err = await configError(`consumers:
  - username: x
    plugins:
      basic-auth: { username: x, password: "${hash}" }
`);
    assert.match(err.message, re);
    assert.match(err.message, /routes\[0\]\.plugins\.basic-auth: plugin "basic-auth" refused this config/);
    assert.ok(!err.message.includes(hash.slice(7)), 'the hash is not quoted');
  }
});

test('two consumers with the same basic-auth user name are refused; a colon in a user name is refused', async () => {
  const dup = await configError(`consumers:
  - username: one
    plugins:
      basic-auth: { username: shared, password: "\${PW}" }
  - username: two
    plugins:
      basic-auth: { username: shared, password: other-secret-pw }
`, { PW: 'first-secret-pw' });
  assert.match(dup.message, /consumers "one" and "two" have the same basic-auth username "shared"/);
  assert.ok(!dup.message.includes('secret-pw'));
  const colon = await configError(`consumers:
  - username: one
    plugins:
      basic-auth: { username: "a:b", password: colon-secret-pw }
`);
  assert.deepEqual(colon.issues.map((i) => i.path), ['consumers[0].plugins.basic-auth.username']);
  assert.ok(!colon.message.includes('colon-secret-pw'));
});

test('scripts/hash-password.js: bcrypt output, and refusal of out-of-range parameters', async () => {
  const b = await hashWithScript('pw-for-bcrypt', ['--bcrypt', '--cost', '4']);
  assert.match(b, /^\$2b\$04\$/);
  assert.equal(bcrypt.compareSync('pw-for-bcrypt', b), true);
  const s = await hashWithScript('pw', ['--ln', '10', '--r', '8', '--p', '1']);
  assert.match(s, /^\$scrypt\$ln=10,r=8,p=1\$/);
  await assert.rejects(hashWithScript('pw', ['--ln', '9']), /scrypt ln must be between 10 and 20/);
});

// ---- leaks ------------------------------------------------------------------------------

test('no password (nor the base64 credentials) appears in any log line or error body', async () => {
  const log = gw.log.raw();
  assert.ok(log.includes('AUTH_INVALID') && log.includes('AUTH_MISSING'));
  for (const s of SECRETS) {
    assert.ok(!log.includes(s), 'a password was logged');
    assert.ok(!log.includes(Buffer.from(s).toString('base64').slice(0, 12)), 'base64 credentials were logged');
    for (const body of bodies) assert.ok(!body.includes(s), 'a password was sent in an error body');
  }
});
