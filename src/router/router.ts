/**
 * Route matching on a normalised path, the request's Host and its method.
 *
 * URI patterns (APISIX semantics):
 * - exact: `/chat`;
 * - prefix: a trailing `*` matches any tail, empty included, after the literal before it:
 *   `/ws/chat/*` matches `/ws/chat/` and `/ws/chat/a/b` but not `/ws/chat`; `/ws*` matches
 *   `/ws` and `/wsx`. The tail is `params['*']`;
 * - parameters: a whole segment `:name` matches one non-empty segment (`/rooms/:room/ws`),
 *   and may be combined with a trailing `*` (`/rooms/:room/*`).
 * Parameter values are taken from the normalised path as they are (unreserved characters
 * decoded, any other `%XX` still encoded).
 *
 * Hosts are compared in lower case with the port and one trailing dot removed; IPv6
 * literals are compared without brackets. `*.example.com` matches any subdomain at any
 * depth but not `example.com` itself. A route with no hosts matches any host.
 *
 * Precedence among routes whose URI matches: the most specific URI (exact, then
 * parameter patterns with more literal segments first, then prefixes with the longest
 * literal first), then a route whose hosts matched over one with no hosts, then higher
 * `priority`, then config order. A candidate whose host or method does not match is
 * skipped and the next one is tried.
 *
 * Everything is compiled in the constructor: exact URIs sit in a Map, the patterns in
 * one list sorted by precedence; `match()` compiles nothing and allocates nothing for an
 * exact match. Bad patterns throw a TypeError at construction (a config error, caught at
 * start); use `checkUri` / `checkHost` to validate first.
 */
import type { RouteConfig } from '../config/types.js';
import { normalizePath } from './normalize.js';
import { isIP } from 'node:net';

export interface RouteMatch {
  readonly route: RouteConfig;
  /** `:name` values and, for a prefix pattern, the tail as `'*'`. Frozen and shared for exact matches. */
  readonly params: Readonly<Record<string, string>>;
}

const KIND_EXACT = 0;
const KIND_PARAM = 1;
const KIND_PREFIX = 2;

const EMPTY_PARAMS: Readonly<Record<string, string>> = Object.freeze(Object.create(null) as Record<string, string>);

interface HostRule {
  /** Exact host names, lower case, no brackets. */
  readonly exact: readonly string[];
  /** Wildcard suffixes including the leading dot: `*.example.com` -> `.example.com`. */
  readonly suffixes: readonly string[];
}

interface Candidate {
  readonly route: RouteConfig;
  readonly kind: number;
  /** exact: the URI; prefix: the literal before `*`; param: unused. */
  readonly literal: string;
  /** param patterns: one entry per segment; a name for `:name`, else the literal text. */
  readonly segments: readonly string[];
  readonly isParam: readonly boolean[];
  readonly star: boolean;
  readonly literalSegments: number;
  readonly literalChars: number;
  readonly hosts: HostRule | undefined;
  /** Upper-case methods, or undefined for any method. */
  readonly methods: readonly string[] | undefined;
  readonly priority: number;
  readonly order: number;
  /** Pre-built result for exact URIs. */
  readonly fixed: RouteMatch | undefined;
}

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Returns an error message for a URI pattern the router would refuse, else undefined. */
export function checkUri(uri: string): string | undefined {
  if (typeof uri !== 'string' || uri.length === 0 || uri.charCodeAt(0) !== 0x2f) {
    return `uri "${String(uri)}" must start with "/"`;
  }
  const star = uri.indexOf('*');
  if (star !== -1 && star !== uri.length - 1) return `uri "${uri}": "*" is only allowed at the end`;
  const norm = normalizePath(star === -1 ? uri : uri.slice(0, -1));
  if (!norm.ok) return `uri "${uri}": ${norm.reason}`;
  const body = norm.path;
  const names = new Set<string>();
  let start = 1;
  while (start <= body.length) {
    let end = body.indexOf('/', start);
    if (end === -1) end = body.length;
    const seg = body.slice(start, end);
    if (seg.charCodeAt(0) === 0x3a /* : */) {
      const name = seg.slice(1);
      if (!PARAM_NAME.test(name)) return `uri "${uri}": bad parameter name "${name}"`;
      if (names.has(name)) return `uri "${uri}": parameter "${name}" appears twice`;
      names.add(name);
      if (star !== -1 && end === body.length) {
        return `uri "${uri}": "*" cannot follow a parameter directly; write "/:${name}/*"`;
      }
    }
    // A ':' inside a segment is literal text (e.g. `/v1/items:batch`).
    start = end + 1;
  }
  return undefined;
}

/** Returns an error message for a route host the router would refuse, else undefined. */
export function checkHost(host: string): string | undefined {
  if (typeof host !== 'string' || host.length === 0) return 'host must be a non-empty string';
  if (host.startsWith('*.')) {
    const rest = host.slice(2);
    if (rest.length === 0 || rest.includes('*')) return `host "${host}": bad wildcard`;
    return rest.includes(':') ? `host "${host}" must not carry a port` : undefined;
  }
  if (host.includes('*')) return `host "${host}": "*" is only allowed as a leading "*." label`;
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    if (host.charCodeAt(host.length - 1) !== 0x5d || isIP(host.slice(1, -1)) !== 6) {
      return `host "${host}": bad IPv6 literal`;
    }
    return undefined;
  }
  if (host.includes(':') && isIP(host) !== 6) return `host "${host}" must not carry a port`;
  return undefined;
}

/**
 * The Host header as the router compares it: lower case, port removed, brackets removed
 * from an IPv6 literal, one trailing dot removed. Allocates only when something changes.
 */
export function normalizeHost(host: string): string {
  const n = host.length;
  if (n === 0) return host;
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    const close = host.indexOf(']');
    return (close === -1 ? host : host.slice(1, close)).toLowerCase();
  }
  let end = n;
  const colon = host.indexOf(':');
  // One colon: host:port. More than one: an unbracketed IPv6 literal, kept whole.
  if (colon !== -1 && host.indexOf(':', colon + 1) === -1) end = colon;
  if (end > 1 && host.charCodeAt(end - 1) === 0x2e /* . */) end--;
  let upper = false;
  for (let i = 0; i < end; i++) {
    const c = host.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) {
      upper = true;
      break;
    }
  }
  const h = end === n ? host : host.slice(0, end);
  return upper ? h.toLowerCase() : h;
}

function compileHosts(route: RouteConfig): HostRule | undefined {
  const hosts = route.hosts;
  if (hosts === undefined || hosts.length === 0) return undefined;
  const exact: string[] = [];
  const suffixes: string[] = [];
  for (const h of hosts) {
    const err = checkHost(h);
    if (err !== undefined) throw new TypeError(`route "${route.id}": ${err}`);
    if (h.startsWith('*.')) suffixes.push(normalizeHost(h.slice(1)));
    else exact.push(normalizeHost(h));
  }
  return { exact, suffixes };
}

function hostMatches(rule: HostRule, host: string): boolean {
  const exact = rule.exact;
  for (let i = 0; i < exact.length; i++) if (exact[i] === host) return true;
  const suffixes = rule.suffixes;
  for (let i = 0; i < suffixes.length; i++) {
    const s = suffixes[i] as string;
    if (host.length > s.length && host.endsWith(s)) return true;
  }
  return false;
}

function compile(route: RouteConfig, uri: string, order: number, hosts: HostRule | undefined): Candidate {
  const err = checkUri(uri);
  if (err !== undefined) throw new TypeError(`route "${route.id}": ${err}`);
  const star = uri.charCodeAt(uri.length - 1) === 0x2a;
  const norm = normalizePath(star ? uri.slice(0, -1) : uri);
  if (!norm.ok) throw new TypeError(`route "${route.id}": uri "${uri}": ${norm.reason}`);
  const body = norm.path;
  const methods =
    route.methods === undefined || route.methods.length === 0
      ? undefined
      : route.methods.map((m) => m.toUpperCase());
  const segments: string[] = [];
  const isParam: boolean[] = [];
  let anyParam = false;
  let literalSegments = 0;
  let literalChars = 0;
  let start = 1;
  while (start <= body.length) {
    let end = body.indexOf('/', start);
    if (end === -1) end = body.length;
    const seg = body.slice(start, end);
    const param = seg.charCodeAt(0) === 0x3a;
    segments.push(param ? seg.slice(1) : seg);
    isParam.push(param);
    if (param) anyParam = true;
    else if (seg.length > 0) {
      literalSegments++;
      literalChars += seg.length;
    }
    start = end + 1;
  }
  const kind = anyParam ? KIND_PARAM : star ? KIND_PREFIX : KIND_EXACT;
  const c: Candidate = {
    route,
    kind,
    literal: body,
    segments,
    isParam,
    star,
    literalSegments,
    literalChars,
    hosts,
    methods,
    priority: typeof route.priority === 'number' ? route.priority : 0,
    order,
    fixed: kind === KIND_EXACT ? Object.freeze({ route, params: EMPTY_PARAMS }) : undefined,
  };
  return c;
}

/** Orders candidates of equal URI specificity: host-bound first, then priority, then config order. */
function tieBreak(a: Candidate, b: Candidate): number {
  const ha = a.hosts === undefined ? 1 : 0;
  const hb = b.hosts === undefined ? 1 : 0;
  return ha - hb || b.priority - a.priority || a.order - b.order;
}

function byPrecedence(a: Candidate, b: Candidate): number {
  if (a.kind !== b.kind) return a.kind - b.kind;
  if (a.kind === KIND_PARAM) {
    const d =
      b.literalSegments - a.literalSegments ||
      (a.star ? 1 : 0) - (b.star ? 1 : 0) ||
      b.literalChars - a.literalChars;
    if (d !== 0) return d;
  } else if (a.kind === KIND_PREFIX) {
    const d = b.literal.length - a.literal.length;
    if (d !== 0) return d;
  }
  return tieBreak(a, b);
}

// Scratch space for parameter positions; match() is synchronous, so one set is enough.
let scratch = new Int32Array(32);

/**
 * Matches a parameter pattern against the path. Returns the params on success. Each
 * segment of the pattern consumes a `/` and then either its literal text or one
 * non-empty path segment; with `star` the last literal is a prefix and the rest is the tail.
 */
function matchParams(c: Candidate, path: string): Record<string, string> | undefined {
  const segs = c.segments;
  const isParam = c.isParam;
  const count = segs.length;
  if (scratch.length < count * 2) scratch = new Int32Array(count * 2);
  const n = path.length;
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos >= n || path.charCodeAt(pos) !== 0x2f) return undefined;
    pos++;
    const seg = segs[i] as string;
    if (isParam[i]) {
      let end = path.indexOf('/', pos);
      if (end === -1) end = n;
      if (end === pos) return undefined;
      scratch[i * 2] = pos;
      scratch[i * 2 + 1] = end;
      pos = end;
    } else {
      if (!path.startsWith(seg, pos)) return undefined;
      pos += seg.length;
    }
  }
  if (!c.star && pos !== n) return undefined;
  const params = Object.create(null) as Record<string, string>;
  for (let i = 0; i < count; i++) {
    if (isParam[i]) params[segs[i] as string] = path.slice(scratch[i * 2], scratch[i * 2 + 1]);
  }
  if (c.star) params['*'] = path.slice(pos);
  return params;
}

export class Router {
  readonly #exact = new Map<string, Candidate[]>();
  readonly #patterns: Candidate[] = [];

  constructor(routes: readonly RouteConfig[]) {
    for (let r = 0; r < routes.length; r++) {
      const route = routes[r] as RouteConfig;
      if (!Array.isArray(route.uris) || route.uris.length === 0) {
        throw new TypeError(`route "${route.id}" has no uris`);
      }
      const hosts = compileHosts(route);
      for (const uri of route.uris) {
        const c = compile(route, uri, r, hosts);
        if (c.kind === KIND_EXACT) {
          const list = this.#exact.get(c.literal);
          if (list === undefined) this.#exact.set(c.literal, [c]);
          else list.push(c);
        } else {
          this.#patterns.push(c);
        }
      }
    }
    for (const list of this.#exact.values()) list.sort(tieBreak);
    this.#patterns.sort(byPrecedence);
  }

  /**
   * The best route for a request, or undefined. `path` must come from normalizePath;
   * `host` is the raw Host header (port and case are handled here).
   */
  match(method: string, host: string | undefined, path: string): RouteMatch | undefined {
    return this.#find(method, host, path);
  }

  /**
   * True when some route matches the host and path with any method: after match()
   * returns undefined, tells "405 Method not allowed" apart from "404 Route not found".
   */
  hasPath(host: string | undefined, path: string): boolean {
    return this.#find(undefined, host, path) !== undefined;
  }

  #find(method: string | undefined, rawHost: string | undefined, path: string): RouteMatch | undefined {
    let host: string | undefined; // normalised lazily, only if a host-bound candidate is tried
    let hostDone = false;
    const exact = this.#exact.get(path);
    if (exact !== undefined) {
      for (let i = 0; i < exact.length; i++) {
        const c = exact[i] as Candidate;
        if (c.hosts !== undefined) {
          if (!hostDone) {
            host = rawHost === undefined ? undefined : normalizeHost(rawHost);
            hostDone = true;
          }
          if (host === undefined || !hostMatches(c.hosts, host)) continue;
        }
        if (method !== undefined && c.methods !== undefined && !c.methods.includes(method)) continue;
        return c.fixed;
      }
    }
    const patterns = this.#patterns;
    for (let i = 0; i < patterns.length; i++) {
      const c = patterns[i] as Candidate;
      let params: Record<string, string> | undefined;
      if (c.kind === KIND_PREFIX) {
        if (!path.startsWith(c.literal)) continue;
      } else {
        params = matchParams(c, path);
        if (params === undefined) continue;
      }
      if (c.hosts !== undefined) {
        if (!hostDone) {
          host = rawHost === undefined ? undefined : normalizeHost(rawHost);
          hostDone = true;
        }
        if (host === undefined || !hostMatches(c.hosts, host)) continue;
      }
      if (method !== undefined && c.methods !== undefined && !c.methods.includes(method)) continue;
      if (params === undefined) {
        params = Object.create(null) as Record<string, string>;
        params['*'] = path.slice(c.literal.length);
      }
      return { route: c.route, params };
    }
    return undefined;
  }
}
