// Browser proof: Debian's Chromium, driven by playwright-core, loads the demo page
// (examples/web/) through a gateway running the demo config (examples/portcullis.yaml) in
// front of recording upstreams on port 0. The page's WebSocket carries its JWT as the offered
// subprotocol bearer.<token> and its EventSource carries it in the jwt cookie.
//   (a) a valid token: both work, and the upstream never sees bearer.* nor the cookie;
//   (b) an expired token: the handshake is refused and the EventSource gives up (CLOSED);
//   (c) a token that expires while open: 1008 "credential expired", the stream ends;
//   (d) a page of another origin, with the jwt cookie in the browser: 403 ORIGIN_DENIED.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Gateway, createLogger, createRegistry, loadConfigText } from '../dist/index.js';
import { signDemoToken, webHandler } from '../examples/demo-web.js';
import { eventually, httpUpstream, listen, logSink, wsUpstream } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const LAUNCH = {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};
const DEMO_CONFIG = fileURLToPath(new URL('../examples/portcullis.yaml', import.meta.url));
const SECRET = randomBytes(24).toString('base64url');
const CLOSED = 2; // EventSource.CLOSED
const CONNECTING = 0; // EventSource.CONNECTING

/** Why the browser tests cannot run, or undefined. Installs chromium first when running as root. */
function chromiumMissing() {
  if (existsSync(CHROMIUM)) return undefined;
  if (process.getuid?.() !== 0) {
    return `${CHROMIUM} is missing and this user cannot install it: run \`sudo apt-get install -y chromium\` (npm test installs it when run as root)`;
  }
  const script = fileURLToPath(new URL('../scripts/ensure-test-deps.js', import.meta.url));
  spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing and installing the chromium package failed`);
  return undefined;
}
const skip = chromiumMissing();

/** A free loopback port (bound, then released): the demo config lists the gateway's own origin. */
async function freePort() {
  const s = http.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

/** An SSE upstream: a welcome event, then a tick every 200 ms; records each request and when it closed. */
function sseUpstream() {
  return httpUpstream((req, res, rec) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(`retry: 300\nevent: welcome\ndata: ${JSON.stringify({ consumer: req.headers['x-consumer-username'] ?? null })}\n\n`);
    let n = 0;
    const timer = setInterval(() => res.write(`id: ${++n}\nevent: tick\ndata: ${n}\n\n`), 200);
    res.on('close', () => {
      clearInterval(timer);
      rec.closed = true;
    });
  });
}

/** A page on another origin that opens the gateway's WebSocket and EventSource (cross-site hijacking). */
function evilPage(gwPort) {
  return `<!doctype html><meta charset="utf-8"><title>elsewhere</title><script>
window.result = { ws: { opened: false, errors: 0, close: null }, sse: { opened: false, errors: [], readyState: null } };
// A control: the test's own route to the chat upstream has no origin check, and shows what the browser sent.
window.control = new WebSocket('ws://127.0.0.1:${gwPort}/ws/control/hijack');
const ws = new WebSocket('ws://127.0.0.1:${gwPort}/ws/secure/lobby', ['chat']);
ws.onopen = () => { result.ws.opened = true; };
ws.onerror = () => { result.ws.errors++; };
ws.onclose = (e) => { result.ws.close = { code: e.code, reason: e.reason }; };
const es = new EventSource('http://127.0.0.1:${gwPort}/sse/secure', { withCredentials: true });
es.onopen = () => { result.sse.opened = true; };
es.onerror = () => { result.sse.errors.push(es.readyState); result.sse.readyState = es.readyState; };
</script>`;
}

describe('browser: the demo page through the gateway (Chromium)', { skip }, () => {
  let chat;
  let feed;
  let web;
  let evil;
  let gw;
  let sink;
  let browser;
  let base;
  let evilUrl;
  const chatCloses = [];

  before(async () => {
    chat = await wsUpstream({ handleProtocols: (offered) => (offered.has('chat') ? 'chat' : false) });
    chat.wss.on('connection', (ws) => ws.on('close', (code) => chatCloses.push(code)));
    feed = await sseUpstream();
    web = http.createServer(webHandler({ jwtSecret: SECRET }));
    const webPort = await listen(web);
    let gwPort;
    evil = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(evilPage(gwPort)));
    evilUrl = `http://127.0.0.1:${await listen(evil)}/`;

    // The demo config itself, with the test's upstreams and secret. Its origin-restriction lists
    // the gateway's own origin, so the gateway gets a port chosen beforehand (again if it was taken).
    for (let attempt = 1; !gw; attempt++) {
      gwPort = await freePort();
      const env = {
        ...process.env,
        PORTCULLIS_PORT: String(gwPort),
        DEMO_CHAT_PORT: String(chat.port),
        DEMO_TICKER_PORT: String(feed.port),
        DEMO_WEB_PORT: String(webPort),
        DEMO_OIDC_PORT: String(await freePort()),
        DEMO_JWT_SECRET: SECRET,
      };
      // The demo config, plus a control route of the test's own: the chat upstream without any check.
      const text = readFileSync(DEMO_CONFIG, 'utf8').replace(
        '\nglobal_rules:',
        '\n  - { id: test-control, uri: /ws/control/*, enable_websocket: true, upstream_id: chat }\n\nglobal_rules:',
      );
      const config = await loadConfigText(text, DEMO_CONFIG, { registry: createRegistry(), env });
      sink = logSink();
      try {
        gw = await Gateway.start(config, { logger: createLogger({ ...config.gateway.log, level: 'debug' }, sink) });
      } catch (err) {
        if (err.code !== 'EADDRINUSE' || attempt === 3) throw err;
      }
    }
    base = `http://127.0.0.1:${gwPort}`;

    const { chromium } = await import('playwright-core');
    // launch() gives every run a fresh temporary profile (user-data dir), removed on close.
    browser = await chromium.launch(LAUNCH);
  });

  after(async () => {
    await browser?.close();
    await gw?.close(200);
    await chat?.close();
    await feed?.close();
    for (const s of [web, evil]) {
      s?.closeAllConnections();
      await new Promise((r) => (s ? s.close(r) : r()));
    }
  });

  /** A fresh browser context and page; page errors fail the test. */
  async function openPage(t) {
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    t.after(() => assert.deepEqual(errors, [], 'no script error on the page'));
    return { context, page };
  }

  const accessLines = (route, from) => sink.lines.slice(from).filter((l) => l.type === 'access' && l.route === route);

  test('a valid token: the WebSocket (subprotocol) and the EventSource (cookie) work; the upstream sees neither credential', async (t) => {
    const { context, page } = await openPage(t);
    const handshakes = chat.handshakes.length;
    await page.goto(`${base}/`); // the page fetches /demo/token and connects on load
    await page.waitForFunction(() => demo.state.ws.opened && demo.state.sse.events.some((e) => e.type === 'tick'), null, { timeout: 8000 });
    const state = await page.evaluate(() => demo.state);
    assert.equal(state.ws.protocol, 'chat', 'the gateway answered the real subprotocol');
    assert.deepEqual(JSON.parse(state.sse.events.find((e) => e.type === 'welcome').data), { consumer: 'browser-demo' });

    assert.equal(await page.evaluate(() => demo.send('hello through the gateway')), true);
    await page.waitForFunction(() => demo.state.ws.messages.includes('hello through the gateway'), null, { timeout: 5000 });

    // The token the page used: its cookie, scoped to the SSE route.
    const [cookie] = await context.cookies(`${base}/sse/secure`);
    assert.equal(cookie.name, 'jwt');
    const token = cookie.value;
    assert.match(token, /^ey[\w-]+\.[\w-]+\.[\w-]+$/);

    const hs = chat.handshakes.slice(handshakes);
    assert.equal(hs.length, 1);
    assert.equal(hs[0].url, '/ws/secure/lobby');
    assert.equal(hs[0].headers['sec-websocket-protocol'], 'chat', 'bearer.<token> is withheld from the upstream');
    assert.equal(hs[0].headers['x-consumer-username'], 'browser-demo');
    assert.equal(hs[0].headers.cookie, undefined, 'the cookie is scoped to /sse/secure');
    const sse = feed.requests.filter((r) => r.url === '/sse/secure');
    assert.ok(sse.length >= 1);
    for (const r of sse) {
      assert.equal(r.headers.cookie, undefined, 'hide_credentials removed the jwt cookie');
      assert.equal(r.headers.authorization, undefined);
      assert.equal(r.headers['x-consumer-username'], 'browser-demo');
    }
    const upstreamSaw = JSON.stringify([chat.handshakes, feed.requests]);
    assert.ok(!upstreamSaw.includes('bearer.'));
    assert.ok(!upstreamSaw.includes(token));
    assert.ok(!sink.raw().includes(token), 'the token is in no log line');
    assert.ok(!sink.raw().includes(token.split('.')[2]), 'nor its signature');
  });

  test('an expired token: the handshake is refused and the EventSource gets 401 and stops (CLOSED)', async (t) => {
    const { page } = await openPage(t);
    const from = sink.lines.length;
    const handshakes = chat.handshakes.length;
    const requests = feed.requests.length;
    await page.goto(`${base}/?manual`);
    const token = await signDemoToken(SECRET, { ttl: -120 });
    await page.evaluate((tk) => demo.start(tk), token);
    await page.waitForFunction(() => demo.state.ws.close !== null && demo.state.sse.readyState === 2, null, { timeout: 8000 });
    const state = await page.evaluate(() => demo.state);
    assert.equal(state.ws.opened, false);
    assert.ok(state.ws.errors >= 1, 'the page saw an error event');
    assert.equal(state.ws.close.code, 1006, 'a refused handshake closes abnormally');
    assert.equal(state.sse.opened, 0);
    assert.deepEqual(state.sse.events, []);
    assert.deepEqual(state.sse.errors, [CLOSED], 'no retry after a 401');

    const ws = await eventually(() => accessLines('secure-chat', from).find((l) => l.status === 401));
    assert.equal(ws.error, 'CREDENTIAL_EXPIRED');
    const es = await eventually(() => accessLines('secure-ticker', from).find((l) => l.status === 401));
    assert.equal(es.error, 'CREDENTIAL_EXPIRED');
    assert.equal(chat.handshakes.length, handshakes, 'the chat upstream was not contacted');
    assert.equal(feed.requests.length, requests, 'the SSE upstream was not contacted');
    assert.ok(!sink.raw().includes(token));
  });

  test('a token that expires while open: the WebSocket gets 1008 "credential expired", the event stream ends', async (t) => {
    const { page } = await openPage(t);
    const from = sink.lines.length;
    const closesBefore = chatCloses.length;
    const requests = feed.requests.length;
    await page.goto(`${base}/?manual`);
    const token = await signDemoToken(SECRET, { ttl: 4 });
    await page.evaluate((tk) => demo.start(tk), token);
    await page.waitForFunction(() => demo.state.ws.opened && demo.state.sse.events.some((e) => e.type === 'tick'), null, { timeout: 5000 });
    assert.equal(await page.evaluate(() => demo.state.ws.close), null, 'open before the token expires');

    await page.waitForFunction(() => demo.state.ws.close !== null && demo.state.sse.readyState === 2, null, { timeout: 10_000 });
    const state = await page.evaluate(() => demo.state);
    assert.equal(state.ws.close.code, 1008);
    assert.match(state.ws.close.reason, /expired/);
    // The stream ended (the browser reconnects: CONNECTING), the reconnect got 401 (CLOSED).
    assert.deepEqual(state.sse.errors, [CONNECTING, CLOSED]);
    assert.equal(state.sse.opened, 1);

    // The upstream sides were closed too.
    await eventually(() => chatCloses.length > closesBefore);
    const streams = feed.requests.slice(requests).filter((r) => r.url === '/sse/secure');
    assert.equal(streams.length, 1, 'the reconnect never reached the upstream');
    assert.ok(await eventually(() => streams[0].closed), 'the upstream stream was closed');
    const refused = await eventually(() => accessLines('secure-ticker', from).find((l) => l.status === 401));
    assert.equal(refused.error, 'CREDENTIAL_EXPIRED');
  });

  test('a page of another origin is refused by origin-restriction with 403, even with the jwt cookie', async (t) => {
    const { context, page } = await openPage(t);
    const from = sink.lines.length;
    const handshakes = chat.handshakes.length;
    const requests = feed.requests.length;
    // Cross-site WebSocket hijacking: the browser holds a valid jwt cookie for the gateway's host
    // and attaches it to the foreign page's handshake (127.0.0.1 on another port is same-site).
    const token = await signDemoToken(SECRET, { ttl: 600 });
    await context.addCookies([{ name: 'jwt', value: token, domain: '127.0.0.1', path: '/', sameSite: 'Lax' }]);
    await page.goto(evilUrl);
    await page.waitForFunction(() => result.ws.close !== null && result.sse.readyState === 2, null, { timeout: 8000 });
    const result = await page.evaluate(() => window.result);
    assert.equal(result.ws.opened, false);
    assert.ok(result.ws.errors >= 1);
    assert.equal(result.ws.close.code, 1006);
    assert.equal(result.sse.opened, false);

    // The browser did attach the jwt cookie to the foreign page's handshakes (the control route shows it).
    const control = await eventually(() => chat.handshakes.slice(handshakes).find((h) => h.url === '/ws/control/hijack'));
    assert.equal(control.headers.origin, new URL(evilUrl).origin);
    assert.equal(control.headers.cookie, `jwt=${token}`);

    const ws = await eventually(() => accessLines('secure-chat', from).find((l) => l.status === 403));
    assert.equal(ws.error, 'ORIGIN_DENIED');
    assert.equal(ws.detail, `origin ${new URL(evilUrl).origin} is not allowed`);
    assert.equal(ws.consumer, null, 'refused before any credential was looked at');
    const es = await eventually(() => accessLines('secure-ticker', from).find((l) => l.status === 403));
    assert.equal(es.error, 'ORIGIN_DENIED');
    assert.deepEqual(chat.handshakes.slice(handshakes).map((h) => h.url), ['/ws/control/hijack'], 'no handshake reached /ws/secure');
    assert.equal(feed.requests.length, requests);
  });
});
