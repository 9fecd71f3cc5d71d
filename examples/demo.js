// `npm start`: the demo upstreams (a WebSocket chat room and an SSE ticker) and the
// gateway in front of them, on examples/portcullis.yaml.
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { ConfigError, Gateway, createRegistry, loadConfigFile } from '../dist/index.js';

const CHAT_PORT = Number(process.env.DEMO_CHAT_PORT ?? 7001);
const TICKER_PORT = Number(process.env.DEMO_TICKER_PORT ?? 7002);

/** A chat room per path: every message is broadcast to everyone in the room. */
function startChat() {
  const server = http.createServer((_req, res) => res.writeHead(426).end('WebSocket only\n'));
  const wss = new WebSocketServer({ server, maxPayload: 64 * 1024 });
  const rooms = new Map();
  wss.on('connection', (ws, req) => {
    const room = new URL(req.url, 'http://x').pathname;
    if (!rooms.has(room)) rooms.set(room, new Set());
    const members = rooms.get(room);
    members.add(ws);
    ws.send(JSON.stringify({ type: 'welcome', room, members: members.size }));
    ws.on('message', (data, isBinary) => {
      for (const peer of members) if (peer.readyState === peer.OPEN) peer.send(data, { binary: isBinary });
    });
    ws.on('close', () => members.delete(ws));
  });
  return new Promise((resolve) => server.listen(CHAT_PORT, '127.0.0.1', () => resolve(server)));
}

/** An SSE ticker at /sse/ticker and a small JSON API at /api/*. */
function startTicker() {
  let price = 100;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/sse/ticker') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
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
  return new Promise((resolve) => server.listen(TICKER_PORT, '127.0.0.1', () => resolve(server)));
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
const upstreams = await Promise.all([startChat(), startTicker()]);
const gw = await Gateway.start(config);
const { port } = gw.addresses()[0];
const base = `127.0.0.1:${port}`;

console.log(`
Portcullis demo is running on http://${base}  (Ctrl-C to stop)

  WebSocket chat, tunnel mode (open two to chat):
    npx wscat -c ws://${base}/ws/chat/lobby
    node -e "const W=require('ws');const w=new W('ws://${base}/ws/chat/lobby');w.on('open',()=>w.send('hello'));w.on('message',m=>console.log(String(m)))"

  The same room through the block-words plugin (frame mode; "spam" is dropped):
    npx wscat -c ws://${base}/ws/moderated/lobby

  Server-Sent Events ticker:
    curl -N http://${base}/sse/ticker

  HTTP behind the tenant-header plugin (demo credential: header x-tenant: acme):
    curl -i http://${base}/api/hello -H 'x-tenant: acme'     # 200
    curl -i http://${base}/api/hello                           # 403 ACCESS_DENIED

  Refused by the gateway itself:
    curl -i 'http://${base}/ws/chat/a%2Fb'                        # 400 BAD_PATH (encoded slash)
    curl -i 'http://${base}/ws/chat/%2e%2e/%2e%2e/api/hello'     # routed as /api/hello: 403 ACCESS_DENIED
    curl -i http://${base}/nowhere                                # 404 ROUTE_NOT_FOUND
`);

let stopping = false;
async function stop() {
  if (stopping) process.exit(1);
  stopping = true;
  await gw.close(2000);
  for (const s of upstreams) s.closeAllConnections?.(), s.close();
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
