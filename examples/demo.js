// `npm start`: the demo upstreams and the gateway in front of them, on examples/portcullis.yaml.
//   chat    a WebSocket chat room per path (answers the subprotocol `chat` when offered)
//   ticker  an SSE ticker for /sse/* and a small JSON API at /api/*
//   web     the browser page (examples/web/), its token endpoint and a forward-auth service
//   oidc    a local OpenID provider (oidc-provider, a dev dependency; skipped when missing)
// Everything listens on 127.0.0.1 and needs no network.
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { ConfigError, Gateway, createRegistry, loadConfigFile } from '../dist/index.js';
import { DEMO_PASS, webHandler } from './demo-web.js';

/** A setting from the environment with the demo's default (`${NAME:-default}` semantics). */
function setting(name, dflt) {
  const v = process.env[name];
  const set = v !== undefined && v !== '';
  // What the printed lines show: the default, or a reference to the variable you exported.
  return { value: set ? v : dflt, shown: set ? `$${name}` : dflt };
}

const CHAT_PORT = Number(setting('DEMO_CHAT_PORT', '7001').value);
const TICKER_PORT = Number(setting('DEMO_TICKER_PORT', '7002').value);
const WEB_PORT = Number(setting('DEMO_WEB_PORT', '7003').value);
const OIDC_PORT = Number(setting('DEMO_OIDC_PORT', '7004').value);
// The same names and defaults as in examples/portcullis.yaml.
const ALICE_KEY = setting('DEMO_ALICE_KEY', 'alice-demo-key');
const BOB_KEY = setting('DEMO_BOB_KEY', 'bob-demo-key');
const JWT_SECRET = setting('DEMO_JWT_SECRET', 'demo-jwt-secret-change-me-0123456789abcdef');
const OIDC_GATEWAY_SECRET = setting('DEMO_OIDC_CLIENT_SECRET', 'demo-gateway-secret');
const OIDC_APP_SECRET = setting('DEMO_OIDC_APP_SECRET', 'demo-app-secret');

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** A chat room per path: every message is broadcast to everyone in the room. */
function startChat() {
  const server = http.createServer((_req, res) => res.writeHead(426).end('WebSocket only\n'));
  const wss = new WebSocketServer({
    server,
    maxPayload: 64 * 1024,
    // Answer `chat` when it is offered (the browser page offers ['chat', 'bearer.<token>']).
    handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
  });
  const rooms = new Map();
  wss.on('connection', (ws, req) => {
    const room = new URL(req.url, 'http://x').pathname;
    if (!rooms.has(room)) rooms.set(room, new Set());
    const members = rooms.get(room);
    members.add(ws);
    // Show what reached the upstream: the consumer the gateway identified, and the
    // subprotocols it was offered (never a bearer.<token>).
    ws.send(
      JSON.stringify({
        type: 'welcome',
        room,
        members: members.size,
        consumer: req.headers['x-consumer-username'] ?? null,
        offered_subprotocols: req.headers['sec-websocket-protocol'] ?? null,
      }),
    );
    ws.on('message', (data, isBinary) => {
      for (const peer of members) if (peer.readyState === peer.OPEN) peer.send(data, { binary: isBinary });
    });
    ws.on('close', () => {
      members.delete(ws);
      if (members.size === 0) rooms.delete(room);
    });
  });
  return listen(server, CHAT_PORT);
}

/** An SSE ticker for every /sse/* path and a small JSON API at /api/*. */
function startTicker() {
  let price = 100;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname.startsWith('/sse/')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      // The first event shows what reached the upstream: the consumer, a forward-auth user.
      const seen = {
        path: url.pathname,
        consumer: req.headers['x-consumer-username'] ?? null,
        user: req.headers['x-demo-user'] ?? null,
      };
      res.write(`retry: 2000\nevent: welcome\ndata: ${JSON.stringify(seen)}\n\n`);
      let id = Number(req.headers['last-event-id'] ?? 0);
      const timer = setInterval(() => {
        price = Math.max(1, price + (Math.random() - 0.5) * 2);
        res.write(`id: ${++id}\nevent: tick\ndata: ${JSON.stringify({ symbol: 'PCLS', price: price.toFixed(2), at: new Date().toISOString() })}\n\n`);
      }, 1000);
      req.on('close', () => clearInterval(timer));
      return;
    }
    if (url.pathname.startsWith('/api/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ hello: req.headers['x-tenant-verified'] ?? 'stranger', path: url.pathname }) + '\n');
      return;
    }
    res.writeHead(404).end();
  });
  return listen(server, TICKER_PORT);
}

/** The browser page, /demo/token, and the forward-auth service (examples/demo-web.js). */
function startWeb() {
  const handle = webHandler({ jwtSecret: JWT_SECRET.value });
  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => res.headersSent || res.writeHead(500).end());
  });
  return listen(server, WEB_PORT);
}

/**
 * A local OpenID provider for the openid-connect route: client demo-app may get tokens with
 * the client-credentials grant, and the gateway (client portcullis-demo) may introspect them.
 * Returns undefined when the oidc-provider package is not installed.
 */
async function startOidc() {
  // oidc-provider warns that it prefers Node 22 (it runs on Node 20 all the same) and that its
  // in-memory store is for development (right for a demo): keep those two off the console.
  const warn = console.warn;
  console.warn = (...args) => {
    if (!/Unsupported runtime|in-memory adapter/.test(String(args[0]))) warn(...args);
  };
  try {
    return await oidcProvider();
  } finally {
    console.warn = warn;
  }
}

async function oidcProvider() {
  let Provider;
  try {
    ({ default: Provider } = await import('oidc-provider'));
  } catch (err) {
    if (err.code !== 'ERR_MODULE_NOT_FOUND') console.error(`demo: cannot load oidc-provider: ${err.message}`);
    return undefined;
  }
  const { exportJWK, generateKeyPair } = await import('jose');
  const es = await generateKeyPair('ES256', { extractable: true }); // fast to make, unlike RSA
  const issuer = `http://127.0.0.1:${OIDC_PORT}`;
  const provider = new Provider(issuer, {
    jwks: { keys: [{ ...(await exportJWK(es.privateKey)), kid: 'demo-es-1', alg: 'ES256', use: 'sig' }] },
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    clients: [
      {
        client_id: 'demo-app',
        client_secret: OIDC_APP_SECRET.value,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: 'ticker:read',
      },
      { client_id: 'portcullis-demo', client_secret: OIDC_GATEWAY_SECRET.value, grant_types: [], redirect_uris: [], response_types: [] },
    ],
    scopes: ['openid', 'ticker:read'],
    cookies: { keys: ['demo-cookie-key-not-used-by-bearer-flows'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: (ctx) => ctx.oidc.client.clientId === 'portcullis-demo' },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:portcullis:demo',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          audience: 'urn:portcullis:demo',
          scope: 'ticker:read',
          accessTokenFormat: 'opaque',
          accessTokenTTL: 600,
        }),
      },
    },
  });
  const server = http.createServer(provider.callback());
  return listen(server, OIDC_PORT);
}

const configFile = fileURLToPath(new URL('./portcullis.yaml', import.meta.url));
let config;
try {
  config = await loadConfigFile(configFile, { registry: createRegistry() });
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.format());
    process.exit(2);
  }
  throw err;
}
let upstreams;
let gw;
try {
  upstreams = await Promise.all([startChat(), startTicker(), startWeb(), startOidc()]);
  gw = await Gateway.start(config);
} catch (err) {
  console.error(`demo: cannot start: ${err.message}`);
  console.error('(another demo running? set PORTCULLIS_PORT, DEMO_CHAT_PORT, DEMO_TICKER_PORT, DEMO_WEB_PORT, DEMO_OIDC_PORT)');
  process.exit(1);
}
const oidc = upstreams[3];
const { port } = gw.addresses()[0];
const B = `http://127.0.0.1:${port}`;
const W = `ws://127.0.0.1:${port}`;
const CLIENT = 'node examples/ws-client.js';
const TOKEN = `TOKEN=$(curl -s ${B}/demo/token.txt)`;

const oidcLines = oidc
  ? `  openid-connect, with the local OpenID provider http://127.0.0.1:${OIDC_PORT} (client demo-app, secret ${OIDC_APP_SECRET.shown}):
    OIDC_TOKEN=$(curl -s -u demo-app:${OIDC_APP_SECRET.shown} -d grant_type=client_credentials -d scope=ticker:read http://127.0.0.1:${OIDC_PORT}/token | node -pe 'JSON.parse(require("fs").readFileSync(0)).access_token')
    curl -N -H "authorization: Bearer $OIDC_TOKEN" ${B}/sse/oidc          # consumer demo-app
    curl -i ${B}/sse/oidc                                                 # 401 AUTH_MISSING`
  : `  openid-connect: the oidc-provider package (a dev dependency) is not installed, so no local
  OpenID provider runs, and a token sent to ${B}/sse/oidc gets 503 AUTH_UNAVAILABLE. Run
  \`npm install\` (with dev dependencies), or point the route's \`discovery\` at your own provider.`;

console.log(`
Portcullis demo is running on ${B}  (Ctrl-C to stop)

  Open ${B}/ in a browser: a page whose WebSocket carries a JWT as the subprotocol bearer.<token>
  and whose EventSource carries it in the jwt cookie, through jwt-auth, origin-restriction and
  authz; with a 15-second token you watch the gateway close both when it expires. The page gets its
  token from ${B}/demo/token, which signs one for anyone: a demo shortcut (docs/browser.md).

  Open routes. WebSocket chat, tunnel mode (open two to chat; type lines to send):
    ${CLIENT} ${W}/ws/chat/lobby
  The same room through the block-words plugin (frame mode; "spam" is dropped):
    ${CLIENT} ${W}/ws/moderated/lobby
  The same room through websocket-validator (type {"type":"say","text":"hi"}; anything else is refused):
    ${CLIENT} ${W}/ws/validated/lobby
  Server-Sent Events ticker:
    curl -N ${B}/sse/ticker

  jwt-auth (consumer browser-demo, HS256 secret ${JWT_SECRET.shown}):
    ${TOKEN}
    curl -N -H "authorization: Bearer $TOKEN" ${B}/sse/secure
    curl -N -b "jwt=$TOKEN" ${B}/sse/secure
    ${CLIENT} ${W}/ws/secure/lobby -p chat -p "bearer.$TOKEN" -o ${B}
    ${CLIENT} ${W}/ws/secure/vip -p chat -p "bearer.$TOKEN" -o ${B}            # 403 AUTHZ_DENIED (authz: not in the rooms claim)
    ${CLIENT} ${W}/ws/secure/lobby -p chat -p "bearer.$TOKEN" -o https://evil.example   # 403 ORIGIN_DENIED (origin-restriction)
    curl -i ${B}/sse/secure                                                # 401 AUTH_MISSING
  Lifetime enforcement: a 5-second token; the gateway closes the WebSocket with 1008 "credential expired":
    ${CLIENT} ${W}/ws/secure/lobby -p chat -p "bearer.$(curl -s '${B}/demo/token.txt?ttl=5')" -o ${B}

  key-auth + consumer-restriction (group staff only). Keys: alice ${ALICE_KEY.shown} (staff), bob ${BOB_KEY.shown} (guests):
    ${CLIENT} ${W}/ws/keyed/lobby -H "apikey: ${ALICE_KEY.shown}"
    ${CLIENT} ${W}/ws/keyed/lobby -p chat -p "apikey.${ALICE_KEY.shown}"
    ${CLIENT} ${W}/ws/keyed/lobby -H "apikey: ${BOB_KEY.shown}"     # 403 CONSUMER_DENIED
    ${CLIENT} ${W}/ws/keyed/lobby -H "apikey: wrong"                # 401 AUTH_INVALID

  basic-auth (user carol, password carol-demo-password, stored as an scrypt hash):
    curl -N -u carol:carol-demo-password ${B}/sse/basic
    curl -i ${B}/sse/basic                                          # 401 AUTH_MISSING, WWW-Authenticate: Basic

  forward-auth (the demo authorization service admits the header x-demo-pass: ${DEMO_PASS}):
    curl -N -H 'x-demo-pass: ${DEMO_PASS}' ${B}/sse/forward
    curl -i ${B}/sse/forward                                        # 401 from the service

${oidcLines}

  ip-restriction (office network 10.0.0.0/8 only):
    curl -i ${B}/sse/office                                         # 403 IP_DENIED

  HTTP behind the tenant-header plugin (a custom plugin; header x-tenant: acme):
    curl -i ${B}/api/hello -H 'x-tenant: acme'     # 200
    curl -i ${B}/api/hello                           # 403 ACCESS_DENIED

  Refused by the gateway itself:
    curl -i '${B}/ws/chat/a%2Fb'                        # 400 BAD_PATH (encoded slash)
    curl -i '${B}/ws/chat/%2e%2e/%2e%2e/api/hello'     # routed as /api/hello: 403 ACCESS_DENIED
    curl -i ${B}/nowhere                                # 404 ROUTE_NOT_FOUND
`);

let stopping = false;
async function stop() {
  if (stopping) process.exit(1);
  stopping = true;
  await gw.close(2000);
  for (const s of upstreams) if (s) s.closeAllConnections?.(), s.close();
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
