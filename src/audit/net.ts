/**
 * Address facts the audit needs about CIDRs: how wide an entry is, and whether it
 * stays inside private address space (RFC 1918, loopback, link-local, CGNAT, ULA).
 */
import { isIPv4 } from 'node:net';
import { canonicalV6, parseCidr } from '../server/address-list.js';

export interface CidrFacts {
  family: 4 | 6;
  /** The prefix length; 32 / 128 for a bare address. */
  prefix: number;
  /** Entirely inside private, loopback or link-local space. */
  private: boolean;
}

const PRIVATE_V4: ReadonlyArray<[string, number]> = [
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['100.64.0.0', 10],
];

const PRIVATE_V6: ReadonlyArray<[string, number]> = [
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
];

function v4ToBig(a: string): bigint {
  return a.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function v6ToBig(a: string): bigint | undefined {
  const canon = canonicalV6(a);
  if (canon === undefined) return undefined;
  let text = canon;
  // A dotted IPv4 tail (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`) becomes two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (isIPv4(tail)) {
    const n = v4ToBig(tail);
    text = `${text.slice(0, lastColon + 1)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = rest ? rest.split(':') : [];
  const groups = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  if (groups.length !== 8) return undefined;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function inBlock(addr: bigint, prefix: number, bits: number, block: bigint, blockPrefix: number): boolean {
  if (prefix < blockPrefix) return false;
  const shift = BigInt(bits - blockPrefix);
  return addr >> shift === block >> shift;
}

/** Facts about one `trusted_proxies` / ip-restriction entry; undefined if it does not parse. */
export function cidrFacts(entry: string): CidrFacts | undefined {
  const parsed = parseCidr(entry);
  if (typeof parsed === 'string') return undefined;
  const bits = parsed.family === 4 ? 32 : 128;
  const prefix = parsed.prefix ?? bits;
  const addr = parsed.family === 4 ? v4ToBig(parsed.address) : v6ToBig(parsed.address);
  if (addr === undefined) return undefined;
  const blocks = parsed.family === 4 ? PRIVATE_V4 : PRIVATE_V6;
  const isPrivate = blocks.some(([b, p]) => {
    const block = parsed.family === 4 ? v4ToBig(b) : v6ToBig(b);
    return block !== undefined && inBlock(addr, prefix, bits, block, p);
  });
  return { family: parsed.family, prefix, private: isPrivate };
}
