// The access log as an operator reads it: one JSON line per finished request or
// connection, written to its own file when `gateway.log.access_log.destination` says
// so (read back from the file), with the client address resolved through
// trusted_proxies, the consumer, status or close code and who closed, duration,
// messages and bytes each way, the error code, its class and the plugin that refused;
// never the query string, a credential or a message body. Its level, `false` and
// `enabled: false`, and the config errors of a bad `access_log`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { closed, collect, config, get, httpUpstream, openWs, startGateway, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';

const KEY = 'access-log-key-0123456789abcdef';
const WRONG = 'wrong-key-9876543210fedcba';
const BODY = 'secret-message-body-5f1e';

let up;
let sseUp;

before(async () => {
  up = await wsUpstream();
  sseUp = await httpUpstream((req, res) => {
    if (req.url.startsWith('/events')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('data: one\n\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('hello');
  });
});

after(async () => {
  await up.close();
  await sseUp.close();
});

const consumers = `consumers:
  - username: alice
    plugins:
      key-auth: { key: ${KEY} }
`;

const routes = (sse) => `  - id: ws
    uri: /ws
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: { query: apikey }
  - id: frames
    uri: /frames
    enable_websocket: true
    upstream_id: up
    plugins:
      websocket-validator: { client: { json: true } }
  - id: plain
    uris: [/plain, /events]
    upstream: { nodes: { "127.0.0.1:${sse}": 1 } }
`;

function gatewayConfig(logYaml, extraGateway = '') {
  return config(up.port, routes(sseUp.port), extraGateway)
    .replace('log: { level: debug }', logYaml)
    .replace('routes:', `${consumers}routes:`);
}

test('a file destination of its own: one line per request and connection, with every field, nothing secret', async () => {
  const g = await startGateway(gatewayConfig('log: { level: info, access_log: { destination: ./logs/access.log } }', '  trusted_proxies: [127.0.0.1]'));
  const file = join(g.dir, 'logs', 'access.log');
  try {
    // An accepted WebSocket, through a trusted proxy, key in the query string; closed by the client.
    const { ws } = await openWs(`${g.ws}/ws?apikey=${KEY}&room=7`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
    const echoes = collect(ws, 2);
    ws.send(BODY);
    ws.send('two');
    await echoes;
    ws.close(1000);
    await closed(ws);
    // Refused by key-auth (a wrong key in the query string).
    assert.equal((await openWs(`${g.ws}/ws?apikey=${WRONG}`)).status, 401);
    // Frame mode: an invalid message closes the connection (1007, by the gateway).
    const f = await openWs(`${g.ws}/frames`);
    f.ws.send('not json');
    assert.equal((await closed(f.ws)).code, 1007);
    // Plain HTTP and an SSE stream, and a request that matches no route.
    assert.equal((await get(`${g.http}/plain?token=${KEY}`)).body, 'hello');
    assert.equal((await get(`${g.http}/events`, { accept: 'text/event-stream' })).body, 'data: one\n\n');
    assert.equal((await get(`${g.http}/nowhere?apikey=${KEY}`)).status, 404);
  } finally {
    await g.close();
  }
  const text = readFileSync(file, 'utf8');
  const lines = text.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(g.log.access().length, 0, 'nothing in the main log');
  assert.equal(lines.length, 6);
  for (const l of lines) {
    assert.equal(l.type, 'access');
    assert.equal(l.level, 'info');
    assert.ok(!Number.isNaN(Date.parse(l.time)), 'an ISO time');
    assert.equal(typeof l.duration_ms, 'number');
  }
  for (const secret of [KEY, WRONG, BODY, 'apikey=', 'room=7', 'token=']) assert.ok(!text.includes(secret), `${secret} in the access log`);

  // Lines come in the order things finished: pick each by what it is.
  const one = (pred, what) => {
    const found = lines.filter(pred);
    assert.equal(found.length, 1, what);
    return found[0];
  };
  const accepted = one((l) => l.route === 'ws' && l.status === 101, 'accepted');
  const refused = one((l) => l.route === 'ws' && l.status === 401, 'refused');
  const frames = one((l) => l.route === 'frames', 'frames');
  const plain = one((l) => l.path === '/plain', 'plain');
  const sse = one((l) => l.path === '/events', 'sse');
  const none = one((l) => l.route === null, 'no route');
  assert.deepEqual(
    {
      route: accepted.route, protocol: accepted.protocol, path: accepted.path, client_ip: accepted.client_ip, consumer: accepted.consumer,
      status: accepted.status, close_code: accepted.close_code, closed_by: accepted.closed_by, error: accepted.error, reason: accepted.reason,
      messages_in: accepted.messages_in, messages_out: accepted.messages_out, rejected_by: accepted.rejected_by,
    },
    {
      route: 'ws', protocol: 'websocket', path: '/ws', client_ip: '203.0.113.7', consumer: 'alice',
      status: 101, close_code: 1000, closed_by: 'client', error: null, reason: null,
      messages_in: 2, messages_out: 2, rejected_by: undefined,
    },
  );
  // Tunnel mode counts frame bytes: two masked frames and a close frame each way.
  assert.equal(accepted.bytes_in, 6 + BODY.length + 6 + 3 + 8);
  assert.equal(accepted.bytes_out, 2 + BODY.length + 2 + 3 + 4);

  assert.equal(refused.status, 401);
  assert.equal(refused.error, 'AUTH_INVALID');
  assert.equal(refused.reason, 'auth');
  assert.equal(refused.rejected_by, 'key-auth');
  assert.equal(refused.closed_by, 'gateway');
  assert.equal(refused.client_ip, '127.0.0.1');

  assert.equal(frames.route, 'frames');
  assert.equal(frames.status, 101);
  assert.equal(frames.close_code, 1007);
  assert.equal(frames.closed_by, 'gateway');
  assert.equal(frames.error, 'MESSAGE_INVALID');
  assert.equal(frames.reason, 'validation');
  assert.equal(frames.rejected_by, 'websocket-validator');
  assert.equal(frames.messages_in, 1);
  assert.equal(frames.bytes_in, 0, 'the refused message was not forwarded');

  assert.equal(plain.protocol, 'http');
  assert.equal(plain.path, '/plain');
  assert.equal(plain.status, 200);
  assert.equal(plain.bytes_out, 5);
  assert.equal(plain.messages_in, null);

  assert.equal(sse.protocol, 'sse');
  assert.equal(sse.status, 200);
  assert.equal(sse.closed_by, 'upstream');
  assert.equal(sse.bytes_out, Buffer.byteLength('data: one\n\n'));

  assert.equal(none.route, null);
  assert.equal(none.status, 404);
  assert.equal(none.error, 'ROUTE_NOT_FOUND');
  assert.equal(none.reason, 'validation');
  assert.equal(none.path, '/nowhere');
});

test('level: access lines at the configured level in the main log; false and enabled: false write none', async () => {
  let g = await startGateway(gatewayConfig('log: { level: info, access_log: { level: warn } }'));
  try {
    await get(`${g.http}/plain`);
  } finally {
    await g.close();
  }
  const lines = g.log.access();
  assert.equal(lines.length, 1);
  assert.equal(lines[0].level, 'warn');
  assert.equal(lines[0].route, 'plain');

  for (const off of ['false', '{ enabled: false, destination: ./never.log }']) {
    g = await startGateway(gatewayConfig(`log: { level: info, access_log: ${off} }`));
    try {
      await get(`${g.http}/plain`);
      assert.equal((await openWs(`${g.ws}/ws?apikey=${WRONG}`)).status, 401);
    } finally {
      await g.close();
    }
    assert.equal(g.log.access().length, 0, off);
  }
});

test('the access_log setting: true/false or a mapping; a file path made absolute; bad values refused with their path', async () => {
  const load = (log) => loadConfigText(`gateway:\n  log: ${log}\n`, '/etc/portcullis/config.yaml', { registry: createRegistry(), env: {} });
  assert.equal((await load('{ access_log: true }')).gateway.log.access_log, true);
  assert.deepEqual((await load('{ access_log: { destination: logs/a.log } }')).gateway.log.access_log, {
    enabled: true,
    destination: '/etc/portcullis/logs/a.log',
    level: 'info',
  });
  assert.deepEqual((await load('{ access_log: { destination: stderr, level: debug } }')).gateway.log.access_log, {
    enabled: true,
    destination: 'stderr',
    level: 'debug',
  });
  for (const [bad, path, fragment] of [
    ['"yes"', 'gateway.log.access_log', 'expected true or false or a mapping'],
    ['{ destination: "" }', 'gateway.log.access_log.destination', 'a non-empty string'],
    ['{ level: silent }', 'gateway.log.access_log.level', 'one of fatal, error, warn, info, debug, trace'],
    ['{ file: a.log }', 'gateway.log.access_log.file', 'unknown key "file" (expected one of: enabled, destination, level)'],
  ]) {
    await assert.rejects(load(`{ access_log: ${bad} }`), (err) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.issues.length, 1, bad);
      assert.equal(err.issues[0].path, path);
      assert.ok(err.issues[0].message.includes(fragment), err.issues[0].message);
      return true;
    });
  }
});
