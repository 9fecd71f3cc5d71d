/**
 * A list of IP addresses and CIDRs (IPv4 and IPv6) compiled once into a
 * `net.BlockList`, with a bounded cache of recent answers (`BlockList.check` on a
 * string costs about 2 us). Used for `trusted_proxies` and by ip-restriction.
 *
 * Entries are validated strictly: no zone identifiers, prefix lengths 0-32 / 0-128.
 * An IPv4-mapped IPv6 entry (`::ffff:10.0.0.1`, `::ffff:10.0.0.0/104`) matches the
 * IPv4 address or subnet it maps, because the gateway judges IPv4 clients by their
 * IPv4 form. Addresses asked about must already be normalised the same way.
 */
import { BlockList, SocketAddress, isIP, isIPv4 } from 'node:net';

const CACHE_MAX = 4096;

export interface ParsedCidr {
  address: string;
  prefix: number | undefined;
  family: 4 | 6;
}

/** Parses one entry; returns an error sentence for an invalid one. */
export function parseCidr(s: string): ParsedCidr | string {
  if (typeof s !== 'string' || s.length === 0) return 'expected an IP address or CIDR';
  const slash = s.indexOf('/');
  let address = slash === -1 ? s : s.slice(0, slash);
  if (address.includes('%')) return `"${s}": zone identifiers are not allowed`;
  const fam = isIP(address);
  if (fam === 0) return `"${s}" is not an IP address or CIDR`;
  let family: 4 | 6 = fam === 4 ? 4 : 6;
  let prefix: number | undefined;
  if (slash !== -1) {
    const p = s.slice(slash + 1);
    const max = family === 4 ? 32 : 128;
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > max) return `"${s}": prefix length must be 0-${max}`;
    prefix = Number(p);
  }
  if (family === 6) {
    // An IPv4-mapped entry stands for the IPv4 address (or subnet) it maps.
    const mapped = mappedToV4(canonicalV6(address) ?? address);
    if (mapped !== undefined && (prefix === undefined || prefix >= 96)) {
      address = mapped;
      family = 4;
      if (prefix !== undefined) prefix -= 96;
    }
  }
  return { address, prefix, family };
}

/** An error message for an invalid address/CIDR (for the config loader), or undefined. */
export function checkCidr(s: string): string | undefined {
  const r = parseCidr(s);
  return typeof r === 'string' ? r : undefined;
}

/** `::ffff:1.2.3.4` -> `1.2.3.4` for an already canonical IPv6 string; undefined otherwise. */
export function mappedToV4(v6: string): string | undefined {
  if (v6.length > 7 && v6.startsWith('::ffff:')) {
    const rest = v6.slice(7);
    if (isIPv4(rest)) return rest;
  }
  return undefined;
}

export function canonicalV6(addr: string): string | undefined {
  try {
    return new SocketAddress({ address: addr, family: 'ipv6' }).address;
  } catch {
    return undefined;
  }
}

export class AddressList {
  readonly #list = new BlockList();
  readonly #cache = new Map<string, boolean>();
  readonly size: number;

  /** Throws a TypeError naming the first invalid entry (prefixed with `label`). */
  constructor(entries: readonly string[], label = '') {
    for (const raw of entries) {
      const e = parseCidr(raw);
      if (typeof e === 'string') throw new TypeError(label ? `${label}: ${e}` : e);
      const type = e.family === 4 ? 'ipv4' : 'ipv6';
      if (e.prefix === undefined) this.#list.addAddress(e.address, type);
      else this.#list.addSubnet(e.address, e.prefix, type);
    }
    this.size = entries.length;
  }

  /** True when the (normalised) address is in the list. Anything that is not an IP is not. */
  has(ip: string): boolean {
    const cached = this.#cache.get(ip);
    if (cached !== undefined) return cached;
    const fam = isIP(ip);
    let found = false;
    if (fam !== 0) {
      try {
        found = this.#list.check(ip, fam === 4 ? 'ipv4' : 'ipv6');
      } catch {
        found = false;
      }
    }
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    this.#cache.set(ip, found);
    return found;
  }
}
