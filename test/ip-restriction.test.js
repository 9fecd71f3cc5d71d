// ip-restriction: whitelist xor blacklist of IPv4/IPv6 addresses and CIDRs, judged
// on the client address resolved through trusted_proxies. A forwarding header from
// an untrusted peer changes nothing; through a trusted proxy the reported client
// is judged. Refused handshakes never reach the upstream.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closed, config, eventually, get, httpUpstream, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';

let up;
let httpUp;
let direct; // no trusted proxies: the TCP peer (127.0.0.1) is the client
let proxied; // 127.0.0.1 is a trusted proxy: X-Forwarded-For is believed

function routes(prefix) {
  return (list) => list.map(([id, uri, plugin, upstream = 'up', ws = true]) => `  - id: ${prefix}${id}
    uri: ${uri}
    upstream_id: ${upstream}
    enable_websocket: ${ws}
    plugins:
      ip-restriction: ${plugin}`).join('\n');
}

before(async () => {
  up = await wsUpstream();
  httpUp = await httpUpstream();
  const extraUpstream = `  - { id: http, nodes: { "127.0.0.1:${httpUp.port}": 1 } }`;
  direct = await startGateway(
    config(up.port, routes('d-')([
      ['bl', '/bl', '{ blacklist: [127.0.0.1] }'],
      ['wl', '/wl', '{ whitelist: [10.0.0.0/8, "2001:db8::/32"] }'],
      ['wl-local', '/wl-local', '{ whitelist: [127.0.0.0/8, "::1"] }'],
      ['custom', '/custom', '{ blacklist: ["127.0.0.1/32"], message: "Go away", response_code: 404 }', 'http', false],
      ['http-bl', '/http-bl', '{ blacklist: [127.0.0.1] }', 'http', false],
    ])).replace('upstreams:\n', `upstreams:\n${extraUpstream}\n`),
  );
  proxied = await startGateway(
    config(up.port, routes('p-')([
      ['bl', '/bl', '{ blacklist: [203.0.113.0/24, "2001:db8::/32"] }', 'http', false],
      ['wl', '/wl', '{ whitelist: [198.51.100.0/24] }', 'http', false],
      ['mapped', '/mapped', '{ whitelist: ["::ffff:198.51.100.0/120"] }', 'http', false],
      ['ws-bl', '/ws-bl', '{ blacklist: [203.0.113.7] }'],
    ]), `  trusted_proxies: [127.0.0.1]`).replace('upstreams:\n', `upstreams:\n${extraUpstream}\n`),
  );
});

after(async () => {
  await direct.close();
  await proxied.close();
  await up.close();
  await httpUp.close();
});

function errorOf(r) {
  return JSON.parse(r.body).error;
}

describe('judged on the TCP peer when no proxy is trusted', () => {
  test('a blacklisted client is refused a WebSocket handshake with 403 IP_DENIED; the upstream sees nothing', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${direct.ws}/bl`);
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-portcullis-error'], 'IP_DENIED');
    assert.deepEqual(
      { code: errorOf(r).code, message: errorOf(r).message },
      { code: 'IP_DENIED', message: 'Your IP address is not allowed' },
    );
    assert.equal(up.handshakes.length, before);
    const line = await eventually(() => direct.log.access().find((l) => l.route === 'd-bl'));
    assert.match(line.detail, /127\.0\.0\.1 is in the blacklist/);
  });

  test('a spoofed X-Forwarded-For from an untrusted peer does not get around a blacklist', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${direct.ws}/bl`, { headers: { 'x-forwarded-for': '198.51.100.1', forwarded: 'for=198.51.100.1' } });
    assert.equal(r.status, 403);
    assert.equal(up.handshakes.length, before);
    const h = await get(`${direct.http}/http-bl`, { 'x-forwarded-for': '198.51.100.1', 'x-real-ip': '198.51.100.1' });
    assert.equal(h.status, 403);
    assert.equal(errorOf(h).code, 'IP_DENIED');
  });

  test('a spoofed X-Forwarded-For does not get a client into a whitelist', async () => {
    const r = await openWs(`${direct.ws}/wl`, { headers: { 'x-forwarded-for': '10.1.2.3' } });
    assert.equal(r.status, 403);
    assert.equal(errorOf(r).code, 'IP_DENIED');
  });

  test('a whitelisted client passes (IPv4 CIDR beside an IPv6 entry)', async () => {
    const { ws } = await openWs(`${direct.ws}/wl-local`);
    ws.send('hello');
    assert.equal(await nextMessage(ws), 'hello');
    ws.close();
    await closed(ws);
  });

  test('message and response_code are configurable', async () => {
    const before = httpUp.requests.length;
    const r = await get(`${direct.http}/custom`);
    assert.equal(r.status, 404);
    assert.deepEqual({ code: errorOf(r).code, message: errorOf(r).message }, { code: 'IP_DENIED', message: 'Go away' });
    assert.equal(httpUp.requests.length, before);
  });
});

describe('judged on the address resolved through trusted_proxies', () => {
  test('the client a trusted proxy reports is judged, not the proxy', async () => {
    assert.equal((await get(`${proxied.http}/bl`, { 'x-forwarded-for': '203.0.113.7' })).status, 403);
    assert.equal((await get(`${proxied.http}/bl`, { 'x-forwarded-for': '198.51.100.1' })).status, 200);
    assert.equal((await get(`${proxied.http}/bl`)).status, 200, 'no header: the proxy itself is the client');
  });

  test('IPv6 clients are matched against IPv6 CIDRs', async () => {
    assert.equal((await get(`${proxied.http}/bl`, { 'x-forwarded-for': '2001:DB8:0:0::5' })).status, 403);
    assert.equal((await get(`${proxied.http}/bl`, { 'x-forwarded-for': '[2001:db8::9]:4711' })).status, 403);
    assert.equal((await get(`${proxied.http}/bl`, { 'x-forwarded-for': '2001:db9::1' })).status, 200);
  });

  test('entries left of the first untrusted hop are not believed', async () => {
    // The client could have written 198.51.100.1 itself; the trusted proxy saw 203.0.113.7.
    const r = await get(`${proxied.http}/bl`, { 'x-forwarded-for': '198.51.100.1, 203.0.113.7' });
    assert.equal(r.status, 403);
    const w = await get(`${proxied.http}/wl`, { 'x-forwarded-for': '198.51.100.20, 203.0.113.7' });
    assert.equal(w.status, 403);
  });

  test('a whitelist admits the resolved client and refuses the bare proxy', async () => {
    assert.equal((await get(`${proxied.http}/wl`, { 'x-forwarded-for': '198.51.100.20' })).status, 200);
    assert.equal((await get(`${proxied.http}/wl`)).status, 403);
  });

  test('an IPv4-mapped IPv6 entry matches the IPv4 clients it maps', async () => {
    assert.equal((await get(`${proxied.http}/mapped`, { 'x-forwarded-for': '198.51.100.77' })).status, 200);
    assert.equal((await get(`${proxied.http}/mapped`, { 'x-forwarded-for': '::ffff:198.51.100.78' })).status, 200);
    assert.equal((await get(`${proxied.http}/mapped`, { 'x-forwarded-for': '198.51.101.1' })).status, 403);
  });

  test('a WebSocket handshake from a blacklisted client behind the proxy never reaches the upstream', async () => {
    const before = up.handshakes.length;
    const r = await openWs(`${proxied.ws}/ws-bl`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
    assert.equal(r.status, 403);
    assert.equal(up.handshakes.length, before);
    const { ws } = await openWs(`${proxied.ws}/ws-bl`, { headers: { 'x-forwarded-for': '203.0.113.8' } });
    assert.equal(up.handshakes.length, before + 1);
    ws.close();
    await closed(ws);
  });
});

describe('invalid lists are refused at load', () => {
  async function refusal(plugin) {
    const yaml = config(1, `  - id: r
    uri: /r
    upstream_id: up
    plugins:
      ip-restriction: ${plugin}`);
    const err = await loadConfigText(yaml, '/tmp/inline.yaml', { registry: createRegistry(), env: {} }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    assert.equal(err.issues.length, 1);
    assert.match(err.issues[0].path, /ip-restriction/);
    return `${err.issues[0].path}: ${err.issues[0].message}`;
  }

  test('bad addresses and prefixes name the entry', async () => {
    assert.match(await refusal('{ blacklist: [10.0.0.0/33] }'), /"10\.0\.0\.0\/33": prefix length must be 0-32/);
    assert.match(await refusal('{ blacklist: ["2001:db8::/129"] }'), /prefix length must be 0-128/);
    assert.match(await refusal('{ whitelist: [not-an-ip] }'), /"not-an-ip" is not an IP address or CIDR/);
    assert.match(await refusal('{ whitelist: [10.0.0.1/] }'), /prefix length/);
    assert.match(await refusal('{ whitelist: ["fe80::1%eth0"] }'), /zone identifiers are not allowed/);
    assert.match(await refusal('{ whitelist: [999.1.1.1] }'), /not an IP address/);
  });

  test('exactly one of whitelist and blacklist', async () => {
    assert.match(await refusal('{ whitelist: [10.0.0.1], blacklist: [10.0.0.2] }'), /exactly one of whitelist or blacklist/);
    assert.match(await refusal('{ message: hi }'), /exactly one of whitelist or blacklist/);
  });

  test('response_code is 403 or 404, as in APISIX', async () => {
    assert.match(await refusal('{ blacklist: [10.0.0.1], response_code: 500 }'), /ip-restriction\.response_code: expected an integer between 403 and 404/);
  });
});
