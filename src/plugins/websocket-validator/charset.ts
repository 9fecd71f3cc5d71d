/**
 * Sets of Unicode code points as sorted, disjoint, inclusive ranges, for the
 * regular-expression safety analysis (`regex-safety.ts`): which characters a
 * piece of a pattern can consume, and whether two pieces can consume the same one.
 */

export const MAX_CP = 0x10ffff;

/** Sorted, disjoint, non-adjacent inclusive ranges: [lo0, hi0, lo1, hi1, ...]. */
export type CharSet = readonly number[];

export const EMPTY: CharSet = [];
export const ANY: CharSet = [0, MAX_CP];

/** Normalise a list of (possibly overlapping, unsorted) [lo, hi] pairs. */
export function fromRanges(pairs: ReadonlyArray<readonly [number, number]>): CharSet {
  const sorted = pairs.filter(([lo, hi]) => lo <= hi).sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [lo, hi] of sorted) {
    const n = out.length;
    if (n > 0 && lo <= out[n - 1]! + 1) {
      if (hi > out[n - 1]!) out[n - 1] = hi;
    } else {
      out.push(lo, hi);
    }
  }
  return out;
}

export function single(cp: number): CharSet {
  return [cp, cp];
}

export function union(a: CharSet, b: CharSet): CharSet {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < a.length; i += 2) pairs.push([a[i]!, a[i + 1]!]);
  for (let i = 0; i < b.length; i += 2) pairs.push([b[i]!, b[i + 1]!]);
  return fromRanges(pairs);
}

export function complement(a: CharSet): CharSet {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < a.length; i += 2) {
    if (a[i]! > next) out.push(next, a[i]! - 1);
    next = a[i + 1]! + 1;
  }
  if (next <= MAX_CP) out.push(next, MAX_CP);
  return out;
}

export function intersect(a: CharSet, b: CharSet): CharSet {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const lo = Math.max(a[i]!, b[j]!);
    const hi = Math.min(a[i + 1]!, b[j + 1]!);
    if (lo <= hi) out.push(lo, hi);
    if (a[i + 1]! < b[j + 1]!) i += 2;
    else j += 2;
  }
  return out;
}

export function has(a: CharSet, cp: number): boolean {
  let lo = 0;
  let hi = a.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < a[mid * 2]!) hi = mid - 1;
    else if (cp > a[mid * 2 + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}

// ---- the classes of JavaScript regular expressions (with the `u` flag) ------------

export const DIGIT: CharSet = [0x30, 0x39];
export const WORD: CharSet = fromRanges([[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]]);
export const SPACE: CharSet = fromRanges([
  [0x09, 0x0d], [0x20, 0x20], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a],
  [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff],
]);
export const LINE_TERMINATORS: CharSet = fromRanges([[0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029]]);
/** `.` without the `s` flag. */
export const DOT: CharSet = complement(LINE_TERMINATORS);

// ---- case folding (the `i` flag) ---------------------------------------------------

let foldClasses: number[][] | undefined;

/**
 * Groups of code points that match each other case-insensitively (k, K and the
 * Kelvin sign; s, S and the long s; ...). Computed once, on first use of `i`.
 */
function caseClasses(): number[][] {
  if (foldClasses) return foldClasses;
  const byKey = new Map<string, number[]>();
  const cased = /\p{Changes_When_Casemapped}/u;
  for (let cp = 0; cp <= 0x1ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const s = String.fromCodePoint(cp);
    if (!cased.test(s)) continue;
    const up = s.toUpperCase();
    const key = [...up].length === 1 ? up.toLowerCase() : s.toLowerCase();
    if (key === s && up === s) continue; // no case at all
    let group = byKey.get(key);
    if (!group) byKey.set(key, (group = []));
    group.push(cp);
    const low = s.toLowerCase();
    if ([...low].length === 1) group.push(low.codePointAt(0)!);
    if ([...up].length === 1) group.push(up.codePointAt(0)!);
  }
  foldClasses = [...byKey.values()].map((g) => [...new Set(g)]).filter((g) => g.length > 1);
  return foldClasses;
}

/** The set extended with every case variant of its members (over-approximated, never under). */
export function caseFold(a: CharSet): CharSet {
  const extra: Array<[number, number]> = [];
  for (const group of caseClasses()) {
    if (group.some((cp) => has(a, cp))) for (const cp of group) extra.push([cp, cp]);
  }
  if (extra.length === 0) return a;
  for (let i = 0; i < a.length; i += 2) extra.push([a[i]!, a[i + 1]!]);
  return fromRanges(extra);
}
