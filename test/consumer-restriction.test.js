// consumer-restriction: whitelist, blacklist or allowed_by_methods over the consumer
// name, its group id, or the route id (set on a consumer: "this consumer may use
// only these routes"). No consumer: 401 with WWW-Authenticate; refused: the
// configured rejected_code (403) with CONSUMER_DENIED, before any upstream contact.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { closed, eventually, get, httpUpstream, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';

const P = new URL('./fixtures/plugins/', import.meta.url).pathname;
let up;
let httpUp;
let gw;

function route(id, uri, plugins, { ws = false } = {}) {
  return `  - id: ${id}
    uri: ${uri}
    upstream_id: ${ws ? 'up' : 'http'}
    enable_websocket: ${ws}
    plugins:
      test-auth: {}
${plugins ? `      consumer-restriction: ${plugins}\n` : ''}`;
}

before(async () => {
  up = await wsUpstream();
  httpUp = await httpUpstream();
  gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  custom_plugins: [${P}test-auth.js]
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: http, nodes: { "127.0.0.1:${httpUp.port}": 1 } }
consumer_groups:
  - { id: staff }
  - { id: guests }
consumers:
  - { username: alice, group_id: staff }
  - { username: bob, group_id: guests }
  - { username: carol }
  - username: dave
    plugins:
      consumer-restriction: { type: route_id, whitelist: [open-a] }
routes:
${route('ws-wl', '/ws-wl', '{ whitelist: [alice] }', { ws: true })}
${route('wl', '/wl', '{ whitelist: [alice, carol] }')}
${route('bl', '/bl', '{ blacklist: [bob], rejected_code: 451, rejected_msg: "Not you, bob" }')}
${route('group', '/group', '{ type: consumer_group_id, whitelist: [staff] }')}
${route('group-bl', '/group-bl', '{ type: consumer_group_id, blacklist: [guests] }')}
${route('methods', '/methods', '{ allowed_by_methods: [{ user: bob, methods: [POST, PUT] }] }')}
${route('ws-methods', '/ws-methods', '{ allowed_by_methods: [{ user: bob, methods: [POST] }] }', { ws: true })}
${route('group-methods', '/group-methods', '{ type: consumer_group_id, allowed_by_methods: [{ user: guests, methods: [GET] }] }')}
${route('open-a', '/open-a', '{ blacklist: [dave] }')}
${route('open-b', '/open-b', '')}
${route('route-bl', '/route-bl', '{ type: route_id, blacklist: [route-bl] }')}
`);
});

after(async () => {
  await gw.close();
  await up.close();
  await httpUp.close();
});

const as = (user) => (user ? { 'x-test-user': user } : {});

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

function errorOf(r) {
  return JSON.parse(r.body).error;
}

describe('consumer_name', () => {
  test('a whitelisted consumer opens a WebSocket; the upstream learns who it is', async () => {
    const { ws } = await openWs(`${gw.ws}/ws-wl`, { headers: { ...as('alice'), 'x-consumer-username': 'mallory' } });
    ws.send('hi');
    assert.equal(await nextMessage(ws), 'hi');
    const h = up.handshakes.at(-1).headers;
    assert.equal(h['x-consumer-username'], 'alice', 'the client-sent copy is replaced');
    assert.equal(h['x-consumer-group'], 'staff');
    ws.close();
    await closed(ws);
  });

  test('a consumer not in the whitelist gets 403 CONSUMER_DENIED and the upstream sees nothing', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/ws-wl`, { headers: as('bob') });
    assert.equal(r.status, 403);
    assert.deepEqual(
      { code: errorOf(r).code, message: errorOf(r).message },
      { code: 'CONSUMER_DENIED', message: 'The consumer_name is forbidden.' },
    );
    assert.equal(up.handshakes.length, before);
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'ws-wl' && l.status === 403));
    assert.equal(line.consumer, 'bob');
    assert.match(line.detail, /consumer_name "bob" is not in the whitelist/);
  });

  test('no consumer identified: 401 with WWW-Authenticate, as APISIX', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/ws-wl`);
    assert.equal(r.status, 401);
    assert.ok(r.headers['www-authenticate'], 'a 401 carries WWW-Authenticate');
    assert.deepEqual(
      { code: errorOf(r).code, message: errorOf(r).message },
      { code: 'AUTH_MISSING', message: 'Missing authentication or identity verification.' },
    );
    assert.equal(up.handshakes.length, before);
    const h = await get(`${gw.http}/wl`);
    assert.equal(h.status, 401);
  });

  test('whitelist over plain HTTP', async () => {
    assert.equal((await get(`${gw.http}/wl`, as('alice'))).status, 200);
    assert.equal((await get(`${gw.http}/wl`, as('carol'))).status, 200);
    assert.equal((await get(`${gw.http}/wl`, as('bob'))).status, 403);
  });

  test('a blacklisted consumer gets the configured rejected_code and rejected_msg', async () => {
    const before = httpUp.requests.length;
    const r = await get(`${gw.http}/bl`, as('bob'));
    assert.equal(r.status, 451);
    assert.deepEqual({ code: errorOf(r).code, message: errorOf(r).message }, { code: 'CONSUMER_DENIED', message: 'Not you, bob' });
    assert.equal(httpUp.requests.length, before);
    const ok = await get(`${gw.http}/bl`, as('alice'));
    assert.equal(ok.status, 200);
    assert.equal(httpUp.requests.at(-1).headers['x-consumer-username'], 'alice');
  });
});

describe('consumer_group_id', () => {
  test('the consumer group is judged', async () => {
    assert.equal((await get(`${gw.http}/group`, as('alice'))).status, 200);
    const r = await get(`${gw.http}/group`, as('bob'));
    assert.equal(r.status, 403);
    assert.equal(errorOf(r).message, 'The consumer_group_id is forbidden.');
    assert.equal((await get(`${gw.http}/group-bl`, as('bob'))).status, 403);
    assert.equal((await get(`${gw.http}/group-bl`, as('alice'))).status, 200);
  });

  test('a consumer without a group is refused (403), an anonymous request gets 401', async () => {
    const r = await get(`${gw.http}/group`, as('carol'));
    assert.equal(r.status, 403);
    assert.equal(errorOf(r).code, 'CONSUMER_DENIED');
    assert.equal((await get(`${gw.http}/group-bl`, as('carol'))).status, 403, 'no group is not "not blacklisted"');
    assert.equal((await get(`${gw.http}/group`)).status, 401);
  });

  test('allowed_by_methods names group ids when type is consumer_group_id', async () => {
    assert.equal((await request(`${gw.http}/group-methods`, 'GET', as('bob'))).status, 200);
    assert.equal((await request(`${gw.http}/group-methods`, 'POST', as('bob'))).status, 403);
    assert.equal((await request(`${gw.http}/group-methods`, 'POST', as('alice'))).status, 200);
  });
});

describe('allowed_by_methods', () => {
  test('a listed consumer may use only its methods', async () => {
    assert.equal((await request(`${gw.http}/methods`, 'POST', as('bob'))).status, 200);
    assert.equal((await request(`${gw.http}/methods`, 'PUT', as('bob'))).status, 200);
    const r = await request(`${gw.http}/methods`, 'GET', as('bob'));
    assert.equal(r.status, 403);
    assert.equal(errorOf(r).code, 'CONSUMER_DENIED');
    const d = await request(`${gw.http}/methods`, 'DELETE', as('bob'));
    assert.equal(d.status, 403);
  });

  test('a consumer not listed is not restricted (APISIX semantics)', async () => {
    assert.equal((await request(`${gw.http}/methods`, 'GET', as('alice'))).status, 200);
    assert.equal((await request(`${gw.http}/methods`, 'DELETE', as('carol'))).status, 200);
  });

  test('a WebSocket handshake is a GET', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/ws-methods`, { headers: as('bob') });
    assert.equal(r.status, 403);
    assert.equal(up.handshakes.length, before);
    const { ws } = await openWs(`${gw.ws}/ws-methods`, { headers: as('alice') });
    ws.close();
    await closed(ws);
  });
});

describe('route_id', () => {
  test('set on a consumer, it limits that consumer to the listed routes', async () => {
    assert.equal((await get(`${gw.http}/open-a`, as('dave'))).status, 200);
    const r = await get(`${gw.http}/open-b`, as('dave'));
    assert.equal(r.status, 403);
    assert.equal(errorOf(r).message, 'The route_id is forbidden.');
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'open-b' && l.status === 403));
    assert.match(line.detail, /route_id "open-b" is not in the whitelist/);
  });

  test('other consumers are not affected by a consumer\'s own restriction', async () => {
    assert.equal((await get(`${gw.http}/open-b`, as('alice'))).status, 200);
    assert.equal((await get(`${gw.http}/open-b`)).status, 200);
  });

  test('the consumer\'s own config replaces the route\'s (APISIX precedence)', async () => {
    // open-a blacklists dave by name; dave's own config (route_id whitelist [open-a]) applies instead.
    assert.equal((await get(`${gw.http}/open-a`, as('dave'))).status, 200);
    assert.equal((await get(`${gw.http}/open-a`, as('alice'))).status, 200);
  });

  test('on a route, route_id needs no consumer', async () => {
    assert.equal((await get(`${gw.http}/route-bl`, as('alice'))).status, 403);
    assert.equal((await get(`${gw.http}/route-bl`)).status, 403);
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
      consumer-restriction: ${plugin}
`;
    const err = await loadConfigText(yaml, '/tmp/inline.yaml', { registry: createRegistry(), env: {} }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    assert.equal(err.issues.length, 1);
    return `${err.issues[0].path}: ${err.issues[0].message}`;
  }

  test('service_id is refused: there are no services', async () => {
    assert.match(await refusal('{ type: service_id, whitelist: [s1] }'), /"service_id" is not supported.*route_id/);
  });

  test('exactly one of whitelist, blacklist, allowed_by_methods', async () => {
    assert.match(await refusal('{ whitelist: [a], blacklist: [b] }'), /only one of .* \(found whitelist and blacklist\)/);
    assert.match(await refusal('{ rejected_code: 403 }'), /set one of whitelist, blacklist or allowed_by_methods/);
  });

  test('bad methods, unknown types and duplicate users are refused', async () => {
    assert.match(await refusal('{ allowed_by_methods: [{ user: a, methods: [FETCH] }] }'), /methods/);
    assert.match(await refusal('{ type: consumer, whitelist: [a] }'), /type/);
    assert.match(await refusal('{ allowed_by_methods: [{ user: a, methods: [GET] }, { user: a, methods: [POST] }] }'), /"a" is listed twice/);
    assert.match(await refusal('{ whitelist: [a], rejected_code: 99 }'), /rejected_code/);
  });
});
