/**
 * Stored basic-auth passwords: plain text, a bcrypt hash (`$2a$`, `$2b$`, `$2y$`,
 * checked with bcryptjs) or an scrypt hash in the PHC-like form
 *
 *   $scrypt$ln=<log2 N>,r=<block size>,p=<parallelism>$<base64 salt>$<base64 hash>
 *
 * (standard base64, padding optional; `.` is accepted for `+`, as passlib writes
 * it). Parsing happens once at load and refuses malformed hashes with a message
 * that never quotes the stored value; verification of a hash is asynchronous
 * (scrypt runs on libuv's thread pool).
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { safeEqual } from '../shared/credentials.js';

export type StoredPassword =
  | { readonly kind: 'plain'; readonly password: string }
  | { readonly kind: 'bcrypt'; readonly hash: string }
  | {
      readonly kind: 'scrypt';
      readonly options: Readonly<ScryptOptions>;
      readonly salt: Buffer;
      readonly hash: Buffer;
    };

const BCRYPT_PREFIX = /^\$2[aby]\$/;
const BCRYPT_RE = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
const SCRYPT_PREFIX = '$scrypt$';
const SCRYPT_RE = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/.]+={0,2})\$([A-Za-z0-9+/.]+={0,2})$/;

/** Bounds that keep one verification's memory and time sane (128·N·r bytes of memory). */
export const SCRYPT_LIMITS = { lnMin: 10, lnMax: 20, rMax: 32, pMax: 16, memoryMax: 256 * 1024 * 1024, saltMin: 8, hashMin: 16, hashMax: 128 };

/** The defaults of hashPassword: OWASP's scrypt profile N=2^15, r=8, p=3 (32 MiB, about 0.1 s). */
export const SCRYPT_DEFAULTS = { ln: 15, r: 8, p: 3 } as const;
export const BCRYPT_DEFAULT_COST = 10;

/** Classify and parse a stored password. Throws an Error (never quoting the value) when a hash is malformed. */
export function parseStoredPassword(stored: string): StoredPassword {
  if (BCRYPT_PREFIX.test(stored)) {
    const m = BCRYPT_RE.exec(stored);
    const cost = m ? Number(m[1]) : NaN;
    if (!m || cost < 4 || cost > 31) {
      throw new Error('the password looks like a bcrypt hash but is not a valid one (expected $2b$<cost 04-31>$ and 53 characters of [./A-Za-z0-9])');
    }
    return { kind: 'bcrypt', hash: stored };
  }
  if (stored.startsWith(SCRYPT_PREFIX)) return parseScrypt(stored);
  return { kind: 'plain', password: stored };
}

function parseScrypt(stored: string): StoredPassword {
  const m = SCRYPT_RE.exec(stored);
  if (!m) {
    throw new Error('the password looks like an scrypt hash but is not of the form $scrypt$ln=<log2 N>,r=<r>,p=<p>$<base64 salt>$<base64 hash>');
  }
  const L = SCRYPT_LIMITS;
  const ln = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  if (ln < L.lnMin || ln > L.lnMax) throw new Error(`scrypt ln must be between ${L.lnMin} and ${L.lnMax} (found ${ln})`);
  if (r < 1 || r > L.rMax) throw new Error(`scrypt r must be between 1 and ${L.rMax} (found ${r})`);
  if (p < 1 || p > L.pMax) throw new Error(`scrypt p must be between 1 and ${L.pMax} (found ${p})`);
  const N = 2 ** ln;
  if (128 * N * r > L.memoryMax) throw new Error(`scrypt ln=${ln}, r=${r} needs ${(128 * N * r) / 2 ** 20} MiB per check; at most ${L.memoryMax / 2 ** 20} MiB is allowed`);
  const salt = b64(m[4]!);
  const hash = b64(m[5]!);
  if (salt.length < L.saltMin) throw new Error(`the scrypt salt must be at least ${L.saltMin} bytes (found ${salt.length})`);
  if (hash.length < L.hashMin || hash.length > L.hashMax) {
    throw new Error(`the scrypt hash must be ${L.hashMin} to ${L.hashMax} bytes (found ${hash.length})`);
  }
  // OpenSSL needs 128·r·(N + 2 + p) bytes; leave a little room.
  const maxmem = 128 * r * (N + 2 + p) + 1024 * 1024;
  return { kind: 'scrypt', options: Object.freeze({ N, r, p, maxmem }), salt, hash };
}

function b64(s: string): Buffer {
  return Buffer.from(s.replaceAll('.', '+'), 'base64');
}

/** Plain text only: constant-time comparison. */
export function checkPlain(stored: StoredPassword & { kind: 'plain' }, password: string): boolean {
  return safeEqual(password, stored.password);
}

/** A hashed password: bcrypt (bcryptjs, async) or scrypt (thread pool). */
export function checkHashed(stored: StoredPassword, password: string): Promise<boolean> {
  switch (stored.kind) {
    case 'plain':
      return Promise.resolve(checkPlain(stored, password));
    case 'bcrypt':
      return bcrypt.compare(password, stored.hash);
    case 'scrypt':
      return new Promise((resolve, reject) => {
        scrypt(password, stored.salt, stored.hash.length, stored.options, (err, derived) => {
          if (err) reject(err);
          else resolve(timingSafeEqual(derived, stored.hash));
        });
      });
  }
}

export interface HashOptions {
  algorithm?: 'scrypt' | 'bcrypt';
  /** scrypt: log2 of N. */
  ln?: number;
  r?: number;
  p?: number;
  /** bcrypt: cost (log2 rounds). */
  cost?: number;
}

/** Hash a password in a form parseStoredPassword accepts (used by scripts/hash-password.js). */
export async function hashPassword(password: string, opts: HashOptions = {}): Promise<string> {
  if (opts.algorithm === 'bcrypt') {
    const cost = opts.cost ?? BCRYPT_DEFAULT_COST;
    if (!Number.isInteger(cost) || cost < 4 || cost > 31) throw new RangeError('bcrypt cost must be an integer from 4 to 31');
    return bcrypt.hash(password, cost);
  }
  const { ln = SCRYPT_DEFAULTS.ln, r = SCRYPT_DEFAULTS.r, p = SCRYPT_DEFAULTS.p } = opts;
  for (const [name, v] of [['ln', ln], ['r', r], ['p', p]] as const) {
    if (!Number.isInteger(v)) throw new RangeError(`scrypt ${name} must be an integer`);
  }
  const salt = randomBytes(16);
  const text = `$scrypt$ln=${ln},r=${r},p=${p}$${unpadded(salt)}$${unpadded(Buffer.alloc(32))}`;
  // Validates ln, r, p against the same limits the plugin applies.
  const parsed = parseStoredPassword(text) as StoredPassword & { kind: 'scrypt' };
  const hash = await new Promise<Buffer>((resolve, reject) => {
    scrypt(password, salt, 32, parsed.options, (err, derived) => (err ? reject(err) : resolve(derived)));
  });
  return `$scrypt$ln=${ln},r=${r},p=${p}$${unpadded(salt)}$${unpadded(hash)}`;
}

function unpadded(b: Buffer): string {
  return b.toString('base64').replace(/=+$/, '');
}
