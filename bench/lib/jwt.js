// ES256 tokens for the portcullis-auth targets, made with node:crypto only
// (the bench does not depend on the gateway's own JWT code). Shared by the
// harness (key pair, probe token) and the load generator (tokens for the
// handshake-rate windows, signed before the window opens).

import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';

/** The consumer credential `key` the bench tokens name in their `key` claim. */
export const BENCH_JWT_KEY = 'bench';

const b64u = (v) => Buffer.from(v).toString('base64url');
const HEADER = b64u(JSON.stringify({ alg: 'ES256', typ: 'JWT' }));

/** A P-256 key pair as PEM (SPKI public, PKCS#8 private). */
export function makeKeyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }),
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }),
  };
}

/**
 * `count` distinct ES256 tokens for consumer credential `key`, valid for an
 * hour; token i carries `jti: "<prefix>-<i>"`, so no two are alike. About 45 µs
 * each on the reference machine.
 */
export function signTokens(privateKeyPem, count, { key = BENCH_JWT_KEY, prefix = String(process.pid), lifetimeSec = 3600 } = {}) {
  const privateKey = createPrivateKey(privateKeyPem);
  const now = Math.floor(Date.now() / 1000);
  const tokens = new Array(count);
  for (let i = 0; i < count; i++) {
    const payload = b64u(JSON.stringify({ key, iat: now, exp: now + lifetimeSec, jti: `${prefix}-${i}` }));
    const input = `${HEADER}.${payload}`;
    const signature = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    tokens[i] = `${input}.${signature}`;
  }
  return tokens;
}
