/**
 * Which address is the client: the TCP peer, or an address a trusted proxy reported.
 *
 * - A peer that is not in `trusted_proxies` is the client; its forwarding headers are
 *   not believed at all (clientIp = peer, forwardedFor = []).
 * - A trusted peer's configured header (X-Forwarded-For or RFC 7239 Forwarded; never
 *   both, never the other one) is walked right to left. Trusted entries are skipped; the
 *   first untrusted entry is the client. If every entry is trusted, the leftmost is the
 *   client. An entry that is not an IP address (`unknown`, `_hidden`, junk, a Forwarded
 *   element without `for=`) ends the walk, and the last valid hop to its right (or the
 *   peer) is the client.
 * - `forwardedFor` holds the believed entries, from the client rightwards, so the outgoing
 *   X-Forwarded-For is `[...forwardedFor, peer]`.
 *
 * Addresses are returned normalised: IPv4-mapped IPv6 (`::ffff:1.2.3.4`, also written in
 * hex) becomes IPv4; IPv6 read from headers is put in canonical lower-case form; ports and
 * brackets are removed. Trust is checked with `net.BlockList`.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isIP, isIPv4 } from 'node:net';
import { AddressList, canonicalV6, mappedToV4 } from './address-list.js';

export { checkCidr } from './address-list.js';

export interface ResolvedClient {
  clientIp: string;
  forwardedFor: string[];
}

/** The socket's peer address with an IPv4-mapped prefix removed. */
function normalizePeer(peer: string): string {
  if (peer.length > 7 && peer.charCodeAt(0) === 0x3a && peer.startsWith('::ffff:')) {
    const rest = peer.slice(7);
    if (isIPv4(rest)) return rest;
  }
  return peer;
}

/** IPv6 from a header: canonical form, IPv4-mapped turned into IPv4. */
function normalizeV6(addr: string): string | undefined {
  if (addr.includes('%')) return undefined;
  const canon = canonicalV6(addr);
  if (canon === undefined) return undefined;
  return mappedToV4(canon) ?? canon;
}

function isPort(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  if (s.charCodeAt(0) === 0x5f /* _ */) return /^_[A-Za-z0-9._-]+$/.test(s); // RFC 7239 obfport
  if (n > 5) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * One node from X-Forwarded-For or a Forwarded `for=` value (already unquoted and
 * trimmed): `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
 * Returns the normalised address, or undefined for anything else (`unknown`, `_x`, junk).
 */
export function parseNode(tok: string): string | undefined {
  const fam = isIP(tok);
  if (fam === 4) return tok;
  if (fam === 6) return normalizeV6(tok);
  if (tok.charCodeAt(0) === 0x5b /* [ */) {
    const close = tok.indexOf(']');
    if (close === -1) return undefined;
    if (close + 1 < tok.length) {
      if (tok.charCodeAt(close + 1) !== 0x3a || !isPort(tok.slice(close + 2))) return undefined;
    }
    const addr = tok.slice(1, close);
    return isIP(addr) === 6 ? normalizeV6(addr) : undefined;
  }
  const colon = tok.indexOf(':');
  if (colon > 0 && tok.indexOf(':', colon + 1) === -1) {
    const addr = tok.slice(0, colon);
    if (isIPv4(addr) && isPort(tok.slice(colon + 1))) return addr;
  }
  return undefined;
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/**
 * The `for=` value of each element of a Forwarded header, unquoted, in order. An element
 * with no `for=`, or that cannot be parsed, yields '' (not an address: it stops the walk).
 * Empty list elements are skipped.
 */
export function parseForwardedFor(value: string): string[] {
  const out: string[] = [];
  const n = value.length;
  let i = 0;
  while (i < n) {
    let forValue: string | undefined;
    let sawPair = false;
    let broken = false;
    // One element: pairs separated by ';', ended by ',' or the end.
    for (;;) {
      while (i < n && isOws(value.charCodeAt(i))) i++;
      if (i >= n || value.charCodeAt(i) === 0x2c /* , */) break;
      if (value.charCodeAt(i) === 0x3b /* ; */) {
        i++;
        continue;
      }
      const nameStart = i;
      while (i < n) {
        const c = value.charCodeAt(i);
        if (c === 0x3d /* = */ || c === 0x3b || c === 0x2c || isOws(c)) break;
        i++;
      }
      const name = value.slice(nameStart, i);
      sawPair = true;
      while (i < n && isOws(value.charCodeAt(i))) i++;
      if (i >= n || value.charCodeAt(i) !== 0x3d) {
        broken = true; // a name without '=': skip to the end of the element
        while (i < n && value.charCodeAt(i) !== 0x2c) i++;
        break;
      }
      i++;
      while (i < n && isOws(value.charCodeAt(i))) i++;
      let v: string;
      if (i < n && value.charCodeAt(i) === 0x22 /* " */) {
        i++;
        v = '';
        let closed = false;
        let runStart = i;
        while (i < n) {
          const c = value.charCodeAt(i);
          if (c === 0x22) {
            v += value.slice(runStart, i);
            i++;
            closed = true;
            break;
          }
          if (c === 0x5c /* \ */ && i + 1 < n) {
            v += value.slice(runStart, i);
            runStart = i + 1;
            i += 2;
            continue;
          }
          i++;
        }
        if (!closed) {
          broken = true;
          break;
        }
      } else {
        const vStart = i;
        while (i < n) {
          const c = value.charCodeAt(i);
          if (c === 0x3b || c === 0x2c || isOws(c)) break;
          i++;
        }
        v = value.slice(vStart, i);
      }
      if (forValue === undefined && name.length === 3 && name.toLowerCase() === 'for') forValue = v;
    }
    if (sawPair) out.push(broken || forValue === undefined ? '' : forValue);
    i++; // past the ','
  }
  return out;
}

function headerString(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(', ');
}

export class ClientIpResolver {
  readonly #trusted: AddressList;
  readonly #enabled: boolean;
  readonly #header: 'x-forwarded-for' | 'forwarded';

  /** Throws a TypeError for an invalid entry (validate with checkCidr first). */
  constructor(trusted: readonly string[], header: 'x-forwarded-for' | 'forwarded') {
    this.#trusted = new AddressList(trusted, 'trusted_proxies');
    this.#enabled = trusted.length > 0;
    this.#header = header;
  }

  /** True when the address (IPv4, IPv6, or IPv4-mapped IPv6) is a trusted proxy. */
  isTrusted(ip: string): boolean {
    if (!this.#enabled) return false;
    return this.#check(normalizePeer(ip));
  }

  #check(ip: string): boolean {
    return this.#trusted.has(ip);
  }

  /** `peer` is the socket's remoteAddress; `headers` the request's headers. */
  resolve(peer: string, headers: IncomingHttpHeaders): ResolvedClient {
    const p = normalizePeer(peer);
    if (!this.#enabled || !this.#check(p)) return { clientIp: p, forwardedFor: [] };
    const raw = headerString(headers[this.#header]);
    if (raw === undefined || raw.length === 0) return { clientIp: p, forwardedFor: [] };
    return this.#header === 'x-forwarded-for' ? this.#walkXff(p, raw) : this.#walkForwarded(p, raw);
  }

  /** Walks an X-Forwarded-For list from the right without splitting it first. */
  #walkXff(peer: string, raw: string): ResolvedClient {
    const believed: string[] = [];
    let client = peer;
    let end = raw.length;
    while (end > 0) {
      const comma = raw.lastIndexOf(',', end - 1);
      const tok = raw.slice(comma + 1, end).trim();
      end = comma === -1 ? 0 : comma;
      if (tok.length === 0) continue; // empty list element
      const ip = parseNode(tok);
      if (ip === undefined) break;
      client = ip;
      believed.push(ip);
      if (!this.#check(ip)) break;
    }
    believed.reverse();
    return { clientIp: client, forwardedFor: believed };
  }

  #walkForwarded(peer: string, raw: string): ResolvedClient {
    const nodes = parseForwardedFor(raw);
    const believed: string[] = [];
    let client = peer;
    for (let i = nodes.length - 1; i >= 0; i--) {
      const ip = parseNode(nodes[i] as string);
      if (ip === undefined) break;
      client = ip;
      believed.push(ip);
      if (!this.#check(ip)) break;
    }
    believed.reverse();
    return { clientIp: client, forwardedFor: believed };
  }
}
