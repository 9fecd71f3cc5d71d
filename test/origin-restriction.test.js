// origin-restriction: a WebSocket handshake or SSE request whose Origin is not
// listed gets 403 ORIGIN_DENIED before any upstream contact (cross-site WebSocket
// hijacking). Origins compare case-insensitively on scheme and host, with default
// ports normalised; a missing Origin is refused unless allowed; `null` never passes.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closed, eventually, get, handshake, httpUpstream, nextMessage, openWs, rawExchange, startGateway, statusOf, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';
import { canonicalOrigin } from '../dist/plugins/origin-restriction/origin.js';

const P = new URL('./fixtures/plugins/', import.meta.url).pathname;
const ALLOWED = '[https://app.example.com, "http://localhost:8080", "HTTPS://Mixed.Example:443", "http://[2001:DB8::1]:80"]';
let up;
let sseUp;
let gw;

before(async () => {
  up = await wsUpstream();
  sseUp = await httpUpstream((req, res) => {
    if ((req.headers.accept ?? '').includes('text/event-stream')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('data: hello\n\n');
    } else res.writeHead(200, { 'content-type': 'text/plain' }).end('plain\n');
  });
  gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  custom_plugins: [${P}test-auth.js]
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: sse, nodes: { "127.0.0.1:${sseUp.port}": 1 } }
routes:
  - id: ws
    uri: /ws
    enable_websocket: true
    upstream_id: up
    plugins:
      origin-restriction: { allow_origins: ${ALLOWED} }
  - id: ws-missing-ok
    uri: /ws-missing-ok
    enable_websocket: true
    upstream_id: up
    plugins:
      origin-restriction: { allow_origins: [https://app.example.com], allow_missing_origin: true }
  - id: ws-auth
    uri: /ws-auth
    enable_websocket: true
    upstream_id: up
    plugins:
      origin-restriction: { allow_origins: [https://app.example.com] }
      test-auth: { required: true }
  - id: events
    uri: /events
    upstream_id: sse
    plugins:
      origin-restriction: { allow_origins: [https://app.example.com] }
  - id: everything
    uri: /everything
    upstream_id: sse
    plugins:
      origin-restriction: { allow_origins: [https://app.example.com], protocols: [websocket, sse, http] }
`);
});

after(async () => {
  await gw.close();
  await up.close();
  await sseUp.close();
});

/** A WebSocket handshake to `path` with these headers; returns the status (101 when opened). */
async function handshakeStatus(path, headers) {
  const r = await openWs(`${gw.ws}${path}`, { headers });
  if (r.ws) {
    r.ws.close();
    await closed(r.ws);
    return 101;
  }
  if (r.status === 403) assert.equal(JSON.parse(r.body).error.code, 'ORIGIN_DENIED');
  return r.status;
}

describe('WebSocket handshakes', () => {
  test('a handshake from https://evil.example gets 403 ORIGIN_DENIED and the upstream sees nothing', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${gw.ws}/ws`, { headers: { origin: 'https://evil.example' } });
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-portcullis-error'], 'ORIGIN_DENIED');
    assert.equal(JSON.parse(r.body).error.code, 'ORIGIN_DENIED');
    assert.equal(up.handshakes.length, before);
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'ws' && l.status === 403));
    assert.equal(line.error, 'ORIGIN_DENIED');
    assert.match(line.detail, /origin https:\/\/evil\.example is not allowed/);
  });

  test('a listed origin passes and the connection works', async () => {
    const before = up.handshakes.length;
    const { ws } = await openWs(`${gw.ws}/ws`, { headers: { origin: 'https://app.example.com' } });
    ws.send('ping');
    assert.equal(await nextMessage(ws), 'ping');
    assert.equal(up.handshakes.length, before + 1);
    assert.equal(up.handshakes.at(-1).headers.origin, 'https://app.example.com', 'the Origin is forwarded unchanged');
    ws.close();
    await closed(ws);
  });

  test('scheme and host compare case-insensitively; default ports are normalised', async () => {
    assert.equal(await handshakeStatus('/ws', { origin: 'HTTPS://APP.Example.COM' }), 101);
    assert.equal(await handshakeStatus('/ws', { origin: 'https://app.example.com:443' }), 101);
    assert.equal(await handshakeStatus('/ws', { origin: 'https://mixed.example' }), 101, 'configured as HTTPS://Mixed.Example:443');
    assert.equal(await handshakeStatus('/ws', { origin: 'http://localhost:8080' }), 101);
    assert.equal(await handshakeStatus('/ws', { origin: 'http://[2001:db8::1]' }), 101, 'IPv6 literal, default port');
  });

  test('a different scheme, port or host is refused', async () => {
    for (const origin of [
      'http://app.example.com',
      'https://app.example.com:8443',
      'https://app.example.com.evil.example',
      'https://evilapp.example.com',
      'https://sub.app.example.com',
      'http://localhost',
      'http://localhost:8081',
      'wss://app.example.com',
    ]) {
      assert.equal(await handshakeStatus('/ws', { origin }), 403, origin);
    }
  });

  test('malformed origins are refused: path, trailing slash, userinfo, a list', async () => {
    for (const origin of [
      'https://app.example.com/',
      'https://app.example.com/path',
      'https://user@app.example.com',
      'https://app.example.com https://evil.example',
      'https://app.example.com, https://evil.example',
      'app.example.com',
      'https://app.example.com:99999',
    ]) {
      assert.equal(await handshakeStatus('/ws', { origin }), 403, origin);
    }
  });

  test('two Origin headers are refused (Node joins them into a list)', async () => {
    const before = up.handshakes.length;
    const text = await rawExchange(gw.port, handshake('/ws', 'Origin: https://app.example.com\r\nOrigin: https://evil.example\r\n'));
    assert.equal(statusOf(text), 403);
    assert.match(text, /ORIGIN_DENIED/);
    assert.equal(up.handshakes.length, before);
  });

  test('the opaque origin "null" is refused', async () => {
    assert.equal(await handshakeStatus('/ws', { origin: 'null' }), 403);
    assert.equal(await handshakeStatus('/ws-missing-ok', { origin: 'null' }), 403, 'even where a missing Origin is allowed');
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'ws-missing-ok' && l.status === 403));
    assert.match(line.detail, /"null"/);
  });

  test('a missing Origin is refused by default and admitted with allow_missing_origin', async () => {
    const text = await rawExchange(gw.port, handshake('/ws'), { waitForClose: true });
    assert.equal(statusOf(text), 403);
    assert.match(text, /ORIGIN_DENIED/);
    const ok = await rawExchange(gw.port, handshake('/ws-missing-ok'), { waitForClose: false });
    assert.equal(statusOf(ok), 101);
    assert.equal(await handshakeStatus('/ws-missing-ok', { origin: 'https://evil.example' }), 403, 'a present Origin is still judged');
  });

  test('the origin is judged before authentication: a cross-site handshake without credentials gets 403, not 401', async () => {
    const r = await openWs(`${gw.ws}/ws-auth`, { headers: { origin: 'https://evil.example' } });
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.body).error.code, 'ORIGIN_DENIED');
    const r2 = await openWs(`${gw.ws}/ws-auth`, { headers: { origin: 'https://app.example.com' } });
    assert.equal(r2.status, 401, 'a listed origin reaches authentication');
  });
});

describe('SSE and plain HTTP', () => {
  const sse = (origin) => ({ accept: 'text/event-stream', ...(origin ? { origin } : {}) });

  test('an SSE request from another origin gets 403 and the upstream sees nothing', async () => {
    const before = sseUp.requests.length;
    const r = await get(`${gw.http}/events`, sse('https://evil.example'));
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.body).error.code, 'ORIGIN_DENIED');
    assert.equal(sseUp.requests.length, before);
  });

  test('an SSE request from a listed origin streams', async () => {
    const r = await get(`${gw.http}/events`, sse('https://app.example.com'));
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /text\/event-stream/);
    assert.equal(r.body, 'data: hello\n\n');
  });

  test('an SSE request without Origin is refused by default', async () => {
    const r = await get(`${gw.http}/events`, sse());
    assert.equal(r.status, 403);
  });

  test('plain HTTP requests are not judged unless protocols includes http', async () => {
    assert.equal((await get(`${gw.http}/events`)).status, 200);
    assert.equal((await get(`${gw.http}/events`, { origin: 'https://evil.example' })).status, 200);
    assert.equal((await get(`${gw.http}/everything`, { origin: 'https://evil.example' })).status, 403);
    assert.equal((await get(`${gw.http}/everything`)).status, 403);
    assert.equal((await get(`${gw.http}/everything`, { origin: 'https://app.example.com' })).status, 200);
  });
});

describe('canonical origins (pure)', () => {
  test('case, default ports, IDNA and IP literals are normalised', () => {
    assert.equal(canonicalOrigin('HTTPS://App.Example.COM:443'), 'https://app.example.com');
    assert.equal(canonicalOrigin('http://localhost:80'), 'http://localhost');
    assert.equal(canonicalOrigin('http://localhost:0080'), 'http://localhost');
    assert.equal(canonicalOrigin('wss://a.example:443'), 'wss://a.example');
    assert.equal(canonicalOrigin('https://a.example:8443'), 'https://a.example:8443');
    assert.equal(canonicalOrigin('https://Bücher.example'), 'https://xn--bcher-kva.example');
    assert.equal(canonicalOrigin('https://[2001:DB8:0::1]:443'), 'https://[2001:db8::1]');
    assert.equal(canonicalOrigin('chrome-extension://ABCdef'), 'chrome-extension://abcdef');
  });

  test('anything that is not scheme://host[:port] is not an origin', () => {
    for (const s of [
      'null',
      '',
      'https://',
      'https://a.example/',
      'https://a.example:',
      'https://a.example:65536',
      'https://u:p@a.example',
      'https://a%62.example',
      'https://a.example\u0000',
      'https://a.example\t',
      'https://a<b.example',
      'https://[zz::1]',
      'https://1.2.3.4.5',
      `https://${'a'.repeat(3000)}.example`,
    ]) {
      assert.equal(canonicalOrigin(s), undefined, JSON.stringify(s));
    }
  });
});

describe('allow_origins is checked at load', () => {
  async function refusal(plugin) {
    const yaml = `upstreams:
  - { id: up, nodes: { "127.0.0.1:1": 1 } }
routes:
  - id: r
    uri: /r
    upstream_id: up
    plugins:
      origin-restriction: ${plugin}
`;
    const err = await loadConfigText(yaml, '/tmp/inline.yaml', { registry: createRegistry(), env: {} }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    assert.equal(err.issues.length, 1);
    return `${err.issues[0].path}: ${err.issues[0].message}`;
  }

  test('paths, wildcards, null and bare hosts are refused with the offending entry', async () => {
    assert.match(await refusal('{ allow_origins: ["https://a.example/"] }'), /"https:\/\/a\.example\/" is not an origin/);
    assert.match(await refusal('{ allow_origins: ["https://a.example/app"] }'), /is not an origin/);
    assert.match(await refusal('{ allow_origins: [a.example] }'), /"a\.example" is not an origin/);
    assert.match(await refusal('{ allow_origins: ["*"] }'), /"\*" cannot be allowed/);
    assert.match(await refusal('{ allow_origins: ["null"] }'), /"null" cannot be allowed/);
    assert.match(await refusal('{ allow_origins: [] }'), /allow_origins/);
    assert.match(await refusal('{ allow_origins: [https://a.example], protocols: [ftp] }'), /protocols/);
  });
});
