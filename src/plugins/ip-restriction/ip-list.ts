/**
 * A list of IP addresses and CIDRs (IPv4 and IPv6), compiled once into a
 * `net.BlockList`. Entries are validated strictly at load: no zone identifiers,
 * prefix lengths 0-32 / 0-128. An IPv4-mapped IPv6 entry (`::ffff:10.0.0.1`,
 * `::ffff:10.0.0.0/104`) matches the IPv4 address or subnet it maps, because the
 * gateway judges IPv4 clients by their IPv4 form.
 *
 * The client address it is asked about is `ctx.clientIp`, already normalised by
 * the client-IP resolver (IPv4-mapped turned into IPv4, IPv6 canonical).
 */
import { BlockList, SocketAddress, isIP, isIPv4 } from 'node:net';

/** Recent answers are remembered (BlockList.check on a string costs about 2 us). */
const CACHE_MAX = 4096;

interface Entry {
  address: string;
  prefix: number | undefined;
  family: 4 | 6;
}

/** Parses one entry; returns an error sentence for an invalid one. */
export function parseEntry(s: string): Entry | string {
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
    const canon = new SocketAddress({ address, family: 'ipv6' }).address;
    const rest = canon.startsWith('::ffff:') ? canon.slice(7) : '';
    if (isIPv4(rest) && (prefix === undefined || prefix >= 96)) {
      address = rest;
      family = 4;
      if (prefix !== undefined) prefix -= 96;
    }
  }
  return { address, prefix, family };
}

export class IpList {
  readonly #list = new BlockList();
  readonly #cache = new Map<string, boolean>();

  /** Throws a TypeError naming the first invalid entry. */
  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      const e = parseEntry(raw);
      if (typeof e === 'string') throw new TypeError(e);
      const type = e.family === 4 ? 'ipv4' : 'ipv6';
      if (e.prefix === undefined) this.#list.addAddress(e.address, type);
      else this.#list.addSubnet(e.address, e.prefix, type);
    }
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
