/**
 * Request-target splitting and path normalisation.
 *
 * `normalizePath` runs once per request; routing, every plugin and the request sent
 * upstream all use its result, so that no two parts of the gateway can disagree on
 * what path a request names (`/ws/../admin` and `/ws/%2e%2e/admin` are both `/admin`).
 *
 * Rules, in order of a single left-to-right pass:
 * - the path must start with `/` (origin-form; `*` and absolute-form are refused);
 * - raw control characters (0x00-0x1F, 0x7F), raw `\`, raw `#` and raw non-ASCII are refused;
 * - `%XX` is checked: malformed sequences are refused, `%2F` (slash), `%5C` (backslash) and
 *   encoded control characters are refused, unreserved characters (ALPHA DIGIT - . _ ~) are
 *   decoded, every other sequence is kept with its hex in upper case;
 * - dot segments are removed (RFC 3986 5.2.4), including those that only appear after
 *   decoding (`.%2E`); `..` above the root stays at the root;
 * - runs of `/` collapse to one; a trailing slash is kept.
 *
 * Fast path: a path with no `%`, no `//`, no `.` or `..` segment and nothing to refuse is
 * returned as the same string. Refusals return shared frozen results, so they allocate nothing.
 */

export type PathRejectReason =
  | 'not origin-form'
  | 'control character'
  | 'backslash'
  | 'fragment'
  | 'non-ascii character'
  | 'encoded slash'
  | 'bad percent-encoding'
  | 'dot segment with parameters';

export interface NormalizedPath {
  ok: true;
  path: string;
}

export interface RejectedPath {
  ok: false;
  reason: PathRejectReason;
}

export type NormalizeResult = NormalizedPath | RejectedPath;

export interface SplitTarget {
  path: string;
  /** The query string without the `?`; `''` when there is none. */
  query: string;
}

function reject(reason: PathRejectReason): RejectedPath {
  return Object.freeze({ ok: false, reason }) as RejectedPath;
}

const NOT_ORIGIN_FORM = reject('not origin-form');
const CONTROL = reject('control character');
const BACKSLASH = reject('backslash');
const FRAGMENT = reject('fragment');
const NON_ASCII = reject('non-ascii character');
const ENCODED_SLASH = reject('encoded slash');
/** `/..;x/`: servlet containers treat it as `..`, so it could walk past a route. */
const DOT_PARAMS = reject('dot segment with parameters');
const SEMICOLON = 0x3b;
const BAD_PERCENT = reject('bad percent-encoding');

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const BACKSLASH_CODE = 0x5c;
const HASH = 0x23;

const HEX_DIGITS = '0123456789ABCDEF';

/**
 * Splits a request target at the first `?`. A `#` is never valid in a request target;
 * wherever it appears it is left in `path` (the whole target is returned as the path when
 * the `#` sits in the query), so that `normalizePath` refuses the request.
 */
export function splitTarget(url: string): SplitTarget {
  const q = url.indexOf('?');
  if (q === -1) return { path: url, query: '' };
  if (url.indexOf('#', q + 1) !== -1) return { path: url, query: '' };
  return { path: url.slice(0, q), query: url.slice(q + 1) };
}

/** Refusal for a single raw (not percent-decoded) character, or undefined if it is allowed. */
function rawCharProblem(c: number): RejectedPath | undefined {
  if (c <= 0x1f || c === 0x7f) return CONTROL;
  if (c === BACKSLASH_CODE) return BACKSLASH;
  if (c === HASH) return FRAGMENT;
  if (c >= 0x80) return NON_ASCII;
  return undefined;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20; // ASCII lower case
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

function isUnreserved(b: number): boolean {
  return (
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === DOT ||
    b === 0x5f || // _
    b === 0x7e // ~
  );
}

/** True when the `.` at index i starts a `.` or `..` segment (or `.;…`, `..;…`). */
function isDotSegment(s: string, i: number): boolean {
  if (s.charCodeAt(i - 1) !== SLASH) return false;
  const n = s.length;
  let j = i + 1;
  if (j < n && s.charCodeAt(j) === DOT) j++;
  return j === n || s.charCodeAt(j) === SLASH || s.charCodeAt(j) === SEMICOLON;
}

export function normalizePath(raw: string): NormalizeResult {
  const n = raw.length;
  if (n === 0 || raw.charCodeAt(0) !== SLASH) return NOT_ORIGIN_FORM;
  for (let i = 1; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (c === PERCENT) return slowPath(raw);
    if (c === SLASH) {
      if (raw.charCodeAt(i - 1) === SLASH) return slowPath(raw);
    } else if (c === DOT) {
      if (isDotSegment(raw, i)) return slowPath(raw);
    } else if (c <= 0x1f || c >= 0x7f || c === BACKSLASH_CODE || c === HASH) {
      return rawCharProblem(c) as RejectedPath;
    }
  }
  return { ok: true, path: raw };
}

function slowPath(raw: string): NormalizeResult {
  // Pass 1: validate and percent-decode the unreserved characters.
  const n = raw.length;
  let dec = '';
  let last = 0;
  for (let i = 1; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (c !== PERCENT) {
      const problem = rawCharProblem(c);
      if (problem !== undefined) return problem;
      continue;
    }
    if (i + 2 >= n) return BAD_PERCENT;
    const hi = hexValue(raw.charCodeAt(i + 1));
    const lo = hexValue(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return BAD_PERCENT;
    const b = (hi << 4) | lo;
    if (b === SLASH) return ENCODED_SLASH;
    if (b === BACKSLASH_CODE) return BACKSLASH;
    if (b <= 0x1f || b === 0x7f) return CONTROL;
    dec += raw.slice(last, i);
    dec += isUnreserved(b) ? String.fromCharCode(b) : '%' + HEX_DIGITS[hi] + HEX_DIGITS[lo];
    i += 2;
    last = i + 1;
  }
  dec = last === 0 ? raw : dec + raw.slice(last);

  // Pass 2: remove dot segments and empty segments. Every `/` left is a real separator,
  // because encoded slashes were refused above.
  const segments: string[] = [];
  let trailingSlash = false;
  let start = 1;
  const m = dec.length;
  for (;;) {
    let end = dec.indexOf('/', start);
    const isLast = end === -1;
    if (isLast) end = m;
    const len = end - start;
    if (len === 0 || (len === 1 && dec.charCodeAt(start) === DOT)) {
      trailingSlash = true;
    } else if (len === 2 && dec.charCodeAt(start) === DOT && dec.charCodeAt(start + 1) === DOT) {
      segments.pop();
      trailingSlash = true;
    } else if (dec.charCodeAt(start) === DOT && (dec.charCodeAt(start + 1) === SEMICOLON || (dec.charCodeAt(start + 1) === DOT && dec.charCodeAt(start + 2) === SEMICOLON))) {
      return DOT_PARAMS;
    } else {
      segments.push(dec.slice(start, end));
      trailingSlash = false;
    }
    if (isLast) break;
    start = end + 1;
  }
  if (segments.length === 0) return { ok: true, path: '/' };
  const path = '/' + segments.join('/');
  return { ok: true, path: trailingSlash ? path + '/' : path };
}
