// The browser side of the Portcullis demo (examples/web/index.html). Through the gateway it opens
//   - a WebSocket to /ws/secure/<room>, offering the subprotocols ['chat', 'bearer.<token>']: the
//     gateway verifies the token, never passes `bearer.<token>` to the upstream, and answers `chat`;
//   - an EventSource to /sse/secure, with the token in the `jwt` cookie (path /sse/secure, so the
//     WebSocket handshake carries the token only as a subprotocol).
// What the page observes is also kept in `window.demo.state`; test/browser.test.js reads it.
// Open the page with `?manual` to stop it from fetching a token and connecting on load.

const WS_PATH = '/ws/secure/';
const SSE_PATH = '/sse/secure';

const state = {
  exp: null,
  ws: { url: null, opened: false, protocol: null, messages: [], errors: 0, close: null },
  sse: { opened: 0, events: [], errors: [], readyState: null },
};
let ws;
let es;

const $ = (id) => document.getElementById(id);

function line(list, text, cls) {
  const el = $(list);
  if (!el) return;
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (cls) li.className = cls;
  el.append(li);
  el.scrollTop = el.scrollHeight;
}

function status(id, text, cls = '') {
  const el = $(id);
  if (!el) return;
  el.textContent = text;
  el.className = `status ${cls}`;
}

/** The `exp` claim of a JWT (for display only: the page never trusts it). */
function expOf(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).exp ?? null;
  } catch {
    return null;
  }
}

/** Open the WebSocket and the EventSource with `token`. */
function start(token, { room = 'lobby' } = {}) {
  stop();
  state.exp = expOf(token);
  state.ws = { url: null, opened: false, protocol: null, messages: [], errors: 0, close: null };
  state.sse = { opened: 0, events: [], errors: [], readyState: null };

  // EventSource cannot set headers: the token travels in a cookie scoped to the SSE route. A real
  // application would rather set it from its server (HttpOnly; Secure; SameSite=Strict).
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = `jwt=${token}; Path=${SSE_PATH}; SameSite=Strict${secure}`;

  // WebSocket: offer a real subprotocol beside the token's. The browser fails the connection
  // unless the server answers with one it offered, and the gateway never answers bearer.*.
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${WS_PATH}${encodeURIComponent(room)}`;
  state.ws.url = url;
  status('ws-status', 'connecting');
  ws = new WebSocket(url, ['chat', `bearer.${token}`]);
  const s = state.ws;
  ws.onopen = () => {
    s.opened = true;
    s.protocol = ws.protocol;
    status('ws-status', `open (subprotocol ${ws.protocol})`, 'open');
    line('ws-log', `open ${url}, server chose subprotocol "${ws.protocol}"`);
  };
  ws.onmessage = (e) => {
    const text = typeof e.data === 'string' ? e.data : '[binary]';
    s.messages.push(text);
    line('ws-log', `< ${text}`);
  };
  ws.onerror = () => {
    s.errors++;
    if (!s.opened) line('ws-log', 'the handshake was refused (the browser does not show why: see the gateway log)', 'gateway');
  };
  const socket = ws;
  ws.onclose = (e) => {
    s.close = { code: e.code, reason: e.reason, wasClean: e.wasClean };
    if (ws === socket || ws === undefined) status('ws-status', `closed ${e.code}`, 'closed');
    line('ws-log', `closed: ${e.code} ${e.reason}`, e.code === 1000 ? '' : 'gateway');
  };

  status('sse-status', 'connecting');
  es = new EventSource(SSE_PATH);
  const t = state.sse;
  const source = es;
  source.onopen = () => {
    t.opened++;
    t.readyState = source.readyState;
    status('sse-status', 'open', 'open');
    line('sse-log', t.opened === 1 ? `open ${SSE_PATH}` : 'reconnected');
  };
  const onEvent = (e) => {
    t.events.push({ type: e.type, data: e.data, id: e.lastEventId });
    line('sse-log', `${e.type}: ${e.data}`);
  };
  for (const type of ['message', 'welcome', 'tick']) source.addEventListener(type, onEvent);
  source.onerror = () => {
    t.readyState = source.readyState;
    t.errors.push(source.readyState);
    if (source.readyState === EventSource.CLOSED) {
      status('sse-status', 'closed', 'closed');
      line('sse-log', 'refused: the EventSource gave up (401/403 from the gateway, see its log)', 'gateway');
    } else {
      status('sse-status', 'reconnecting');
      line('sse-log', 'the stream ended; the browser reconnects', 'gateway');
    }
  };
}

function stop() {
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, 'page closed it');
  if (es) es.close();
  ws = undefined;
  es = undefined;
}

function send(text) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(text);
  line('ws-log', `> ${text}`);
  return true;
}

/** Ask the demo upstream for a token (a demo shortcut: see the note on the page). */
async function fetchToken(ttl) {
  const res = await fetch(`/demo/token${ttl ? `?ttl=${ttl}` : ''}`, { cache: 'no-store' });
  if (!res.ok) throw new Error(`/demo/token answered ${res.status}`);
  return (await res.json()).token;
}

async function connect(ttl) {
  try {
    start(await fetchToken(ttl));
  } catch (err) {
    line('ws-log', String(err), 'gateway');
  }
}

function showExpiry() {
  const el = $('token-info');
  if (!el || state.exp === null) return;
  const left = Math.round(state.exp - Date.now() / 1000);
  el.textContent = left > 0 ? `token expires in ${left} s` : `token expired ${-left} s ago`;
}

window.demo = { state, start, stop, send, fetchToken, connect };

$('fresh')?.addEventListener('click', () => connect());
$('short')?.addEventListener('click', () => connect(15));
$('stop')?.addEventListener('click', () => stop());
$('send-form')?.addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('send-text');
  if (input.value && send(input.value)) input.value = '';
});
setInterval(showExpiry, 1000);
if (!new URLSearchParams(location.search).has('manual')) connect();
