// The demo's web upstream: the browser page (examples/web/), a token endpoint for it, and the
// small authorization service that the demo's forward-auth route asks. examples/demo.js runs it
// behind the gateway; test/browser.test.js serves the same page through its own gateway.
//
// /demo/token signs a JWT for anyone who asks. That is a demo shortcut so the page can show a
// credential at work: a real application signs its users in first and hands out tokens itself.
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';

/** The jwt-auth credential the page's tokens name in their `key` claim (consumer browser-demo). */
export const DEMO_JWT_KEY = 'demo-page';
/** The rooms a page token may enter (its `rooms` claim; the authz rule of /ws/secure/:room). */
export const DEMO_ROOMS = ['lobby', 'random'];
/** The header value the demo authorization service admits. */
export const DEMO_PASS = 'open-sesame';

const WEB = new URL('./web/', import.meta.url);
const FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/demo/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/demo/app.css': ['app.css', 'text/css; charset=utf-8'],
};
const PAGE_HEADERS = {
  'cache-control': 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/**
 * Sign an HS256 demo token: `key` (the jwt-auth credential), `sub`, `rooms`, `iat`, `exp`.
 * `ttl` in seconds (negative for an already expired token).
 */
export function signDemoToken(secret, { ttl = 600, key = DEMO_JWT_KEY, rooms = DEMO_ROOMS, sub = 'demo-visitor' } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ key, rooms })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .sign(new TextEncoder().encode(secret));
}

/** The request handler of the web upstream. `jwtSecret` is the HS256 secret of consumer browser-demo. */
export function webHandler({ jwtSecret, pass = DEMO_PASS }) {
  const files = new Map(
    Object.entries(FILES).map(([path, [name, type]]) => [path, { body: readFileSync(new URL(name, WEB)), type }]),
  );
  return async function handle(req, res) {
    const url = new URL(req.url, 'http://upstream');
    if (req.method !== 'GET' && req.method !== 'HEAD') return res.writeHead(405, { allow: 'GET, HEAD' }).end();

    const file = files.get(url.pathname);
    if (file) return res.writeHead(200, { 'content-type': file.type, ...PAGE_HEADERS }).end(file.body);

    if (url.pathname === '/demo/token' || url.pathname === '/demo/token.txt') {
      // ttl: 5 s to 10 min, default 10 min.
      const ttl = Math.min(600, Math.max(5, Number.parseInt(url.searchParams.get('ttl') ?? '600', 10) || 600));
      const token = await signDemoToken(jwtSecret, { ttl });
      const headers = { 'cache-control': 'no-store' };
      if (url.pathname === '/demo/token.txt') return res.writeHead(200, { ...headers, 'content-type': 'text/plain' }).end(`${token}\n`);
      const body = { token, expires_in: ttl, note: 'demo only: a real application never hands tokens to whoever asks' };
      return res.writeHead(200, { ...headers, 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
    }

    // The authorization service of the forward-auth route (not routed through the gateway).
    if (url.pathname === '/auth/forward') {
      if (req.headers['x-demo-pass'] === pass) return res.writeHead(200, { 'x-demo-user': 'demo-visitor' }).end();
      return res
        .writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'DemoPass realm="demo"' })
        .end(`${JSON.stringify({ message: 'send the header x-demo-pass' })}\n`);
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  };
}
