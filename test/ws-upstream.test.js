// What a WebSocket client sees when the upstream misbehaves: dies mid-connection,
// refuses connections on some nodes, is down entirely, answers a handshake with
// an error page; and TLS listeners (wss/https).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { WebSocket } from 'ws';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  EXAMPLES, closed, collect, config, eventually, get, nextMessage, openWs, startGateway, wsUpstream,
} from './helpers.js';

const cleanup = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

async function gatewayFor(upPort, routes, extra = '') {
  const gw = await startGateway(config(upPort, routes, extra));
  cleanup.push(() => gw.close());
  return gw;
}

/** A port that refuses connections (a server bound then closed). */
async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

for (const mode of ['tunnel', 'frame']) {
  const plugins = mode === 'frame' ? `, plugins: { block-words: { words: [zzz] } }` : '';
  const extra = `  custom_plugins: [${EXAMPLES}plugins/block-words.js]`;

  test(`${mode} mode: an upstream that dies mid-connection closes the client with 1014`, async () => {
    const up = await wsUpstream({
      onConnection(ws) {
        ws.on('message', () => ws._socket.destroy());
      },
    });
    cleanup.push(() => up.close());
    const gw = await gatewayFor(up.port, `  - { id: w, uri: /w, enable_websocket: true, upstream_id: up${plugins} }`, extra);
    const { ws } = await openWs(`${gw.ws}/w`);
    ws.send('die');
    assert.equal((await closed(ws)).code, 1014);
    const line = await eventually(() => gw.log.access().find((l) => l.route === 'w'));
    assert.equal(line.closed_by, mode === 'tunnel' ? 'gateway' : 'upstream');
  });

  test(`${mode} mode: a node that refuses connections is skipped for the next one`, async () => {
    const up = await wsUpstream();
    cleanup.push(() => up.close());
    const dead = await deadPort();
    const gw = await startGateway(`gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
${extra}
upstreams:
  - id: pair
    nodes: [{ host: 127.0.0.1, port: ${dead}, weight: 1 }, { host: 127.0.0.1, port: ${up.port}, weight: 1 }]
routes:
  - { id: w, uri: /w, enable_websocket: true, upstream_id: pair${plugins} }
`);
    cleanup.push(() => gw.close());
    for (let i = 0; i < 4; i++) {
      const { ws } = await openWs(`${gw.ws}/w`);
      ws.send(`n${i}`);
      assert.equal(await nextMessage(ws), `n${i}`);
      ws.close();
      await closed(ws);
    }
  });

  test(`${mode} mode: every node down gives 502 UPSTREAM_UNAVAILABLE`, async () => {
    const gw = await gatewayFor(await deadPort(), `  - { id: w, uri: /w, enable_websocket: true, upstream_id: up${plugins} }`, extra);
    const r = await openWs(`${gw.ws}/w`);
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.body).error.code, 'UPSTREAM_UNAVAILABLE');
  });

  test(`${mode} mode: an upstream refusing the handshake with 401 is relayed with its body`, async () => {
    const up = await wsUpstream({ verifyClient: (_info, cb) => cb(false, 401, 'Go away') });
    cleanup.push(() => up.close());
    const gw = await gatewayFor(up.port, `  - { id: w, uri: /w, enable_websocket: true, upstream_id: up${plugins} }`, extra);
    const r = await openWs(`${gw.ws}/w`);
    assert.equal(r.status, 401);
    assert.match(r.body, /Unauthorized|Go away/);
  });

  test(`${mode} mode: messages sent by the upstream right after its 101 reach the client`, async () => {
    const up = await wsUpstream({
      onConnection(ws) {
        ws.send('first');
        ws.send('second');
      },
    });
    cleanup.push(() => up.close());
    const gw = await gatewayFor(up.port, `  - { id: w, uri: /w, enable_websocket: true, upstream_id: up${plugins} }`, extra);
    const ws = new WebSocket(`${gw.ws}/w`, { perMessageDeflate: false });
    const got = collect(ws, 2);
    assert.deepEqual(await got, ['first', 'second']);
    ws.close();
  });
}

test('TLS listener: wss and https are served with the configured certificate', async () => {
  const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'portcullis-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const up = await wsUpstream();
  cleanup.push(() => up.close());
  const gw = await startGateway(`gateway:
  listen:
    - { host: 127.0.0.1, port: 0, tls: { cert: ${dir}/cert.pem, key: ${dir}/key.pem } }
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
routes:
  - { id: w, uri: /w, enable_websocket: true, upstream_id: up }
  - { id: h, uri: /h, upstream_id: up }
`);
  cleanup.push(() => gw.close());
  const ca = (await import('node:fs')).readFileSync(join(dir, 'cert.pem'));
  const { ws } = await openWs(`wss://127.0.0.1:${gw.port}/w`, { ca });
  ws.send('over tls');
  assert.equal(await nextMessage(ws), 'over tls');
  ws.close();
  await closed(ws);
  assert.equal(up.handshakes.at(-1).headers['x-forwarded-proto'], 'https');
  const https = await import('node:https');
  const status = await new Promise((resolve, reject) => {
    https.get(`https://127.0.0.1:${gw.port}/h`, { ca }, (res) => { res.resume(); resolve(res.statusCode); }).on('error', reject);
  });
  assert.equal(status, 200);
});
