// authz: ordered rules over the consumer, its group and labels, the method, the
// token's claims and scopes, and route parameters; first match wins, default deny.
// Channel-level least privilege: /ws/rooms/:room admits a consumer only when
// :room is in its token's `rooms` claim.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { closed, eventually, get, httpUpstream, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';

const P = new URL('./fixtures/plugins/', import.meta.url).pathname;
let up;
let httpUp;
let gw;

function route(id, uri, authz, { ws = false } = {}) {
  return `  - id: ${id}
    uri: ${uri}
    upstream_id: ${ws ? 'up' : 'http'}
    enable_websocket: ${ws}
    plugins:
      test-auth: {}
      vars-probe: {}
      authz: ${authz}`;
}

before(async () => {
  up = await wsUpstream();
  httpUp = await httpUpstream();
  gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  custom_plugins: [${P}test-auth.js, ${P}vars-probe.js]
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: http, nodes: { "127.0.0.1:${httpUp.port}": 1 } }
consumer_groups:
  - { id: staff }
  - { id: guests }
consumers:
  - { username: alice, group_id: staff, labels: { tier: gold, region: eu } }
  - { username: bob, group_id: guests, labels: { tier: free } }
  - { username: carol }
routes:
${route('rooms', '/ws/rooms/:room', '{ rules: [{ description: "own rooms", param_in_claim: { param: room, claim: rooms } }] }', { ws: true })}
${route('orgs', '/orgs/:org/rooms/:room', '{ rules: [{ param_in_claim: [{ param: org, claim: org }, { param: room, claim: rooms }] }] }')}
${route('groups', '/groups', '{ rules: [{ groups: [staff] }] }')}
${route('scopes', '/scopes', '{ rules: [{ scopes: [read, write] }] }')}
${route('claims', '/claims', '{ rules: [{ claims: { tenant: acme, role: [admin, ops] } }] }')}
${route('nested', '/nested', '{ rules: [{ claims: { "realm_access.roles": admin, level: 3 } }] }')}
${route('order', '/order', '{ rules: [{ effect: deny, consumers: [bob], description: "bob is suspended" }, { groups: [staff, guests] }] }')}
${route('order-allow-first', '/order-allow-first', '{ rules: [{ groups: [staff, guests] }, { effect: deny, consumers: [bob] }] }')}
${route('default-deny', '/default-deny', '{ rules: [{ consumers: [nobody] }] }')}
${route('labels', '/labels', '{ rules: [{ labels: { tier: [gold, silver], region: eu } }] }')}
${route('methods', '/methods', '{ rules: [{ groups: [guests], methods: [GET] }, { groups: [staff] }], rejected_code: 404, rejected_msg: "Nothing here" }')}
${route('combined', '/combined', '{ rules: [{ consumers: [alice], groups: [staff], scopes: [admin] }] }')}
${route('no-param', '/no-param', '{ rules: [{ param_in_claim: { param: room, claim: rooms } }] }')}
${route('anyone', '/anyone', '{ rules: [{ effect: deny, groups: [guests] }, { description: "everyone else" }] }')}
`);
});

after(async () => {
  await gw.close();
  await up.close();
  await httpUp.close();
});

/** Headers identifying `user` (or nobody) with these token claims. */
function who(user, claims) {
  return { ...(user ? { 'x-test-user': user } : {}), ...(claims ? { 'x-test-claims': JSON.stringify(claims) } : {}) };
}

function request(url, method, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function status(path, headers, method = 'GET') {
  return (await request(`${gw.http}${path}`, method, headers)).status;
}

function errorOf(r) {
  return JSON.parse(r.body).error;
}

describe('channel-level least privilege over WebSocket: /ws/rooms/:room', () => {
  test('a room listed in the rooms claim is admitted, and the upstream learns the rule', async () => {
    const { ws } = await openWs(`${gw.ws}/ws/rooms/lobby`, { headers: who('alice', { rooms: ['lobby', 'dev'] }) });
    ws.send('hello lobby');
    assert.equal(await nextMessage(ws), 'hello lobby');
    const h = up.handshakes.at(-1);
    assert.equal(h.url, '/ws/rooms/lobby');
    assert.equal(h.headers['x-consumer-username'], 'alice');
    assert.equal(h.headers['x-authz-rule'], '0', 'ctx.vars authz.rule names the rule that admitted');
    ws.close();
    await closed(ws);
  });

  test('another room gets 403 AUTHZ_DENIED and the upstream sees nothing', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/ws/rooms/ops`, { headers: who('alice', { rooms: ['lobby', 'dev'] }) });
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-portcullis-error'], 'AUTHZ_DENIED');
    assert.deepEqual({ code: errorOf(r).code, message: errorOf(r).message }, { code: 'AUTHZ_DENIED', message: 'Not authorized' });
    assert.equal(up.handshakes.length, before);
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'rooms' && l.status === 403));
    assert.equal(line.consumer, 'alice');
    assert.match(line.detail, /no rule matched \(default deny\)/);
  });

  test('every decision and the rule that made it go to the debug log', async () => {
    const { ws } = await openWs(`${gw.ws}/ws/rooms/dev`, { headers: who('alice', { rooms: ['dev'] }) });
    ws.close();
    await closed(ws);
    await openWs(`${gw.ws}/ws/rooms/ops`, { headers: who('alice', { rooms: ['dev'] }) });
    const allow = await eventually(() => gw.log.lines.find((l) => l.msg === 'authz decision' && l.decision === 'allow'));
    assert.equal(allow.level, 'debug');
    assert.match(allow.rule, /^rules\[0\]/);
    assert.equal(allow.consumer, 'alice');
    const deny = await eventually(() => gw.log.lines.find((l) => l.msg === 'authz decision' && l.decision === 'deny'));
    assert.equal(deny.rule, null, 'default deny: no rule matched');
  });

  test('the claim may be a space or comma separated string', async () => {
    const claims = { rooms: 'lobby dev,ops' };
    for (const room of ['lobby', 'dev', 'ops']) {
      const { ws } = await openWs(`${gw.ws}/ws/rooms/${room}`, { headers: who('alice', claims) });
      ws.close();
      await closed(ws);
    }
    assert.equal((await openWs(`${gw.ws}/ws/rooms/lob`, { headers: who('alice', claims) })).status, 403, 'no prefix matching');
    const { ws } = await openWs(`${gw.ws}/ws/rooms/42`, { headers: who('alice', { rooms: [7, 42] }) });
    ws.close();
    await closed(ws);
  });

  test('a room that merely looks like a listed one is refused', async () => {
    for (const room of ['LOBBY', 'lobby%20', 'lobby,dev']) {
      const r = await openWs(`${gw.ws}/ws/rooms/${room}`, { headers: who('alice', { rooms: ['lobby', 'dev'] }) });
      assert.equal(r.status, 403, room);
    }
  });

  test('no consumer and no token: 403 AUTHZ_DENIED (authz never answers 401)', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/ws/rooms/lobby`);
    assert.equal(r.status, 403);
    assert.equal(errorOf(r).code, 'AUTHZ_DENIED');
    assert.equal(up.handshakes.length, before);
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'rooms' && l.consumer === null && l.status === 403));
    assert.match(line.detail, /no consumer identified/);
  });

  test('a consumer whose token has no rooms claim is refused', async () => {
    assert.equal((await openWs(`${gw.ws}/ws/rooms/lobby`, { headers: who('alice') })).status, 403);
    assert.equal((await openWs(`${gw.ws}/ws/rooms/lobby`, { headers: who('alice', { rooms: { lobby: true } }) })).status, 403);
  });

  test('verified claims without a consumer (issuer-form tokens) are judged too', async () => {
    const { ws } = await openWs(`${gw.ws}/ws/rooms/dev`, { headers: who(undefined, { sub: 'u1', rooms: ['dev'] }) });
    ws.close();
    await closed(ws);
  });

  test('a parameter the route does not have never holds', async () => {
    assert.equal(await status('/no-param', who('alice', { rooms: ['lobby'] })), 403);
  });

  test('several parameters must each be in their claim', async () => {
    const claims = { org: 'acme', rooms: ['lobby'] };
    assert.equal(await status('/orgs/acme/rooms/lobby', who('bob', claims)), 200);
    assert.equal(await status('/orgs/globex/rooms/lobby', who('bob', claims)), 403);
    assert.equal(await status('/orgs/acme/rooms/ops', who('bob', claims)), 403);
  });
});

describe('conditions', () => {
  test('groups', async () => {
    assert.equal(await status('/groups', who('alice')), 200);
    assert.equal(await status('/groups', who('bob')), 403);
    assert.equal(await status('/groups', who('carol')), 403, 'a consumer without a group');
  });

  test('scopes: every listed scope is required', async () => {
    assert.equal(await status('/scopes', who('alice', { scope: 'read write admin' })), 200);
    assert.equal(await status('/scopes', who('alice', { scope: 'read' })), 403);
    assert.equal(await status('/scopes', who(undefined, { scope: 'write read' })), 200, 'from the scope claim without a consumer');
    assert.equal(await status('/scopes', who(undefined, { scp: ['read', 'write'] })), 200, 'from an scp claim');
    assert.equal(await status('/scopes', who('alice')), 403);
  });

  test('claims: equality with one value or one of a list', async () => {
    assert.equal(await status('/claims', who('bob', { tenant: 'acme', role: 'ops' })), 200);
    assert.equal(await status('/claims', who('bob', { tenant: 'acme', role: 'admin' })), 200);
    assert.equal(await status('/claims', who('bob', { tenant: 'acme', role: ['user', 'admin'] })), 200, 'an array claim holding an accepted value');
    assert.equal(await status('/claims', who('bob', { tenant: 'globex', role: 'admin' })), 403);
    assert.equal(await status('/claims', who('bob', { tenant: 'acme', role: 'user' })), 403);
    assert.equal(await status('/claims', who('bob', { tenant: 'acme' })), 403, 'every listed claim must hold');
    assert.equal(await status('/claims', who('bob', { tenant: ['acme'], role: { admin: true } })), 403);
  });

  test('claims: dotted names reach nested claims; types compare strictly', async () => {
    assert.equal(await status('/nested', who('bob', { realm_access: { roles: ['admin'] }, level: 3 })), 200);
    assert.equal(await status('/nested', who('bob', { 'realm_access.roles': 'admin', level: 3 })), 200, 'a claim of that exact name first');
    assert.equal(await status('/nested', who('bob', { realm_access: { roles: ['admin'] }, level: '3' })), 403);
    assert.equal(await status('/nested', who('bob', { realm_access: { roles: ['user'] }, level: 3 })), 403);
  });

  test('consumer labels', async () => {
    assert.equal(await status('/labels', who('alice')), 200);
    assert.equal(await status('/labels', who('bob')), 403);
    assert.equal(await status('/labels', who('carol')), 403, 'a consumer without labels');
    assert.equal(await status('/labels'), 403);
  });

  test('methods, with configured rejected_code and rejected_msg', async () => {
    assert.equal(await status('/methods', who('bob'), 'GET'), 200);
    const r = await request(`${gw.http}/methods`, 'POST', who('bob'));
    assert.equal(r.status, 404);
    assert.deepEqual({ code: errorOf(r).code, message: errorOf(r).message }, { code: 'AUTHZ_DENIED', message: 'Nothing here' });
    assert.equal(await status('/methods', who('alice'), 'POST'), 200);
    assert.equal(httpUp.requests.at(-1).headers['x-authz-rule'], '1');
  });

  test('all conditions of a rule must hold', async () => {
    assert.equal(await status('/combined', who('alice', { scope: 'admin' })), 200);
    assert.equal(await status('/combined', who('alice', { scope: 'read' })), 403);
    assert.equal(await status('/combined', who('bob', { scope: 'admin' })), 403);
  });
});

describe('rule order and default deny', () => {
  test('a deny rule before an allow rule wins; the log names it', async () => {
    const before = httpUp.requests.length;
    const r = await request(`${gw.http}/order`, 'GET', who('bob'));
    assert.equal(r.status, 403);
    assert.equal(errorOf(r).code, 'AUTHZ_DENIED');
    assert.equal(httpUp.requests.length, before);
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'order' && l.status === 403));
    assert.match(line.detail, /denied by rules\[0\] \(bob is suspended\)/);
    assert.equal(await status('/order', who('alice')), 200);
    assert.equal(httpUp.requests.at(-1).headers['x-authz-rule'], '1');
  });

  test('first match wins: an allow rule before the deny rule admits', async () => {
    assert.equal(await status('/order-allow-first', who('bob')), 200);
    assert.equal(httpUp.requests.at(-1).headers['x-authz-rule'], '0');
  });

  test('no rule matched: deny', async () => {
    const r = await request(`${gw.http}/default-deny`, 'GET', who('alice', { scope: 'everything' }));
    assert.equal(r.status, 403);
    assert.equal(errorOf(r).code, 'AUTHZ_DENIED');
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'default-deny'));
    assert.match(line.detail, /no rule matched \(default deny\)/);
  });

  test('a rule without conditions matches everything (an explicit allow-all after denials)', async () => {
    assert.equal(await status('/anyone'), 200);
    assert.equal(await status('/anyone', who('alice')), 200);
    assert.equal(await status('/anyone', who('bob')), 403);
  });

  test('the claims header never shows up in the log', async () => {
    await status('/claims', who('bob', { tenant: 'acme', role: 'ops', secretish: 'do-not-log-me' }));
    await eventually(() => gw.log.access().find((l) => l.route === 'claims'));
    assert.ok(!gw.log.raw().includes('do-not-log-me'));
  });
});

describe('config checked at load', () => {
  async function refusal(plugin) {
    const yaml = `upstreams:
  - { id: up, nodes: { "127.0.0.1:1": 1 } }
routes:
  - id: r
    uri: /r
    upstream_id: up
    plugins:
      authz: ${plugin}
`;
    const err = await loadConfigText(yaml, '/tmp/inline.yaml', { registry: createRegistry(), env: {} }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    return err.issues.map((i) => `${i.path}: ${i.message}`).join('\n');
  }

  test('unknown conditions, bad effects and empty lists are refused with their path', async () => {
    assert.match(await refusal('{ rules: [{ claim: { a: b } }] }'), /authz\.rules\[0\]/);
    assert.match(await refusal('{ rules: [{ effect: permit }] }'), /authz\.rules\[0\]\.effect/);
    assert.match(await refusal('{ rules: [] }'), /authz\.rules/);
    assert.match(await refusal('{}'), /rules/);
    assert.match(await refusal('{ rules: [{ scopes: [] }] }'), /authz\.rules\[0\]\.scopes/);
    assert.match(await refusal('{ rules: [{ param_in_claim: { param: room } }] }'), /param_in_claim/);
    assert.match(await refusal('{ rules: [{ claims: { a: { b: c } } }] }'), /authz\.rules\[0\]\.claims/);
  });
});
