/**
 * Origins as browsers serialise them (RFC 6454): `scheme://host[:port]`, no path,
 * no userinfo. Two origins are the same when their canonical forms are equal:
 * scheme and host lower-cased; for http, https, ws and wss the host as the WHATWG
 * URL parser writes it (punycode, canonical IPv4 and IPv6) and the default port
 * dropped (`https://a.com:443` is `https://a.com`).
 */

const DEFAULT_PORTS: Readonly<Record<string, string>> = { http: '80', https: '443', ws: '80', wss: '443' };

/**
 * scheme, host (reg-name, IPv4 or [IPv6]), optional port; nothing else: no path,
 * no userinfo, no percent-escapes (browsers never send them in an Origin).
 */
const ORIGIN_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[0-9A-Fa-f:.]+\]|[^\s\x00-\x1f\x7f/?#@[\]:\\%]+)(?::([0-9]{1,5}))?$/;

/** Longest Origin header considered; a longer one is refused without parsing. */
export const MAX_ORIGIN_LENGTH = 2048;

/** The canonical form of an origin, or undefined when `s` is not one. */
export function canonicalOrigin(s: string): string | undefined {
  if (s.length > MAX_ORIGIN_LENGTH) return undefined;
  const m = ORIGIN_RE.exec(s);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  const port = m[3];
  if (port !== undefined && Number(port) > 65535) return undefined;
  if (scheme in DEFAULT_PORTS) {
    // The WHATWG URL parser: lower-case, IDNA to punycode, IPv4/IPv6 canonical, default port dropped.
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      return undefined;
    }
    return `${scheme}://${url.host}`;
  }
  const host = m[2]!.toLowerCase();
  return port === undefined ? `${scheme}://${host}` : `${scheme}://${host}:${Number(port)}`;
}
