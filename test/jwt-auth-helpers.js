// Helpers for the jwt-auth tests: key pairs, signed and hand-crafted tokens, a JWKS
// endpoint that counts its fetches, and a trap server that must never be contacted.
import http from 'node:http';
import { createHmac, generateKeyPairSync, randomUUID } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import { listen } from './helpers.js';

/** Seconds since the epoch, as in `exp`. */
export const nowS = () => Math.floor(Date.now() / 1000);

function pair(type, opts) {
  const { privateKey, publicKey } = generateKeyPairSync(type, opts);
  return { privateKey, publicKey, pem: publicKey.export({ type: 'spki', format: 'pem' }) };
}

/** One key pair of each kind the tests sign with. */
export function keyPairs() {
  return {
    rsa: pair('rsa', { modulusLength: 2048 }),
    ec: pair('ec', { namedCurve: 'P-256' }),
    ec2: pair('ec', { namedCurve: 'P-256' }),
    ed: pair('ed25519'),
  };
}

/** A signed JWT: `claims` (exp one hour ahead unless given, `exp: undefined` to omit), `alg`, extra header. */
export async function sign(claims, key, alg, header = {}) {
  const body = { exp: nowS() + 3600, jti: randomUUID(), ...claims };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return new SignJWT(body).setProtectedHeader({ alg, ...header }).sign(key);
}

export const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HMAC-signed token made by hand (any header, any secret, e.g. a PEM text). */
export function hmacToken(header, payload, secret, hash = 'sha256') {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`;
}

/** An unsigned token (`alg` as given, e.g. "none", "nOnE"), with an empty or junk signature. */
export function unsignedToken(alg, payload, signature = '') {
  return `${b64({ alg, typ: 'JWT' })}.${b64(payload)}.${signature}`;
}

/** A public JWK for a key pair, with `kid` and `alg`. */
export async function publicJwk(kp, kid, alg) {
  return { ...(await exportJWK(kp.publicKey)), kid, alg, use: 'sig' };
}

/** A JWKS endpoint on port 0. `keys` can be replaced; `fetches` counts GETs; `stop()` takes it down. */
export async function jwksServer(keys) {
  const sockets = new Set();
  const srv = {
    keys,
    fetches: 0,
    url: '',
    server: http.createServer((req, res) => {
      srv.fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: srv.keys }));
    }),
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => srv.server.close(r));
    },
  };
  srv.server.on('connection', (s) => sockets.add(s));
  const port = await listen(srv.server);
  srv.url = `http://127.0.0.1:${port}/jwks.json`;
  return srv;
}

/** A server that records every request: a token's `jku`/`x5u` point here, and nothing may come. */
export async function trapServer() {
  const hits = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    hits.push(req.url);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
  });
  server.on('connection', (s) => {
    hits.push('connection');
    sockets.add(s);
  });
  const port = await listen(server);
  return {
    hits,
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A port nothing listens on. */
export async function closedPort() {
  const s = http.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}
