/**
 * Cheap checks on JSON text and values that must run before anything recursive
 * sees them: the nesting depth, counted on the raw bytes before JSON.parse and the
 * schema validator, and keys that poison prototypes when a backend merges objects.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_SQUARE = 0x5b;
const CLOSE_SQUARE = 0x5d;
const OPEN_CURLY = 0x7b;
const CLOSE_CURLY = 0x7d;

/**
 * True when the bracket nesting of `data` goes deeper than `max`: `[` and `{`
 * outside double-quoted strings count one level each (`[]` is depth 1,
 * `{"a":[1]}` depth 2). Works on the UTF-8 bytes: the structural characters are
 * ASCII and never occur inside a multi-byte sequence. One pass, no allocation;
 * string contents are skipped with a native search for the closing quote.
 */
export function depthExceeds(data: Uint8Array, max: number): boolean {
  // The depth can never exceed the number of bytes.
  if (data.length <= max) return false;
  let depth = 0;
  const n = data.length;
  for (let i = 0; i < n; i++) {
    const c = data[i]!;
    if (c === QUOTE) {
      i = closingQuote(data, i + 1);
      if (i < 0) return false; // an unterminated string: not JSON, JSON.parse will say so
    } else if (c === OPEN_SQUARE || c === OPEN_CURLY) {
      if (++depth > max) return true;
    } else if (c === CLOSE_SQUARE || c === CLOSE_CURLY) {
      depth--;
    }
  }
  return false;
}

/** Index of the quote that ends a string whose contents start at `from`, or -1. */
function closingQuote(data: Uint8Array, from: number): number {
  let j = from;
  for (;;) {
    j = data.indexOf(QUOTE, j);
    if (j < 0) return -1;
    // Escaped when preceded by an odd number of backslashes.
    let k = j - 1;
    while (k >= from && data[k] === BACKSLASH) k--;
    if ((j - 1 - k) % 2 === 0) return j;
    j++;
  }
}

/** Could the JSON text hold one of the keys? (Escapes such as \u005f could spell them: look then.) */
const SUSPECT = /__proto__|constructor|prototype|\\u/;

/**
 * True when some object in the parsed value has an own key `__proto__`,
 * `constructor` or `prototype`. JSON.parse itself is safe with them (it makes own
 * properties), but a backend that merges the object into another may pollute its
 * prototypes. The walk is skipped when the text cannot contain such a key, and is
 * iterative (the depth is bounded before parsing, but nothing here recurses anyway).
 */
export function hasProtoKey(value: unknown, text: string): boolean {
  if (typeof value !== 'object' || value === null || !SUSPECT.test(text)) return false;
  const stack: object[] = [value];
  while (stack.length > 0) {
    const o = stack.pop()!;
    if (Array.isArray(o)) {
      for (const v of o) if (typeof v === 'object' && v !== null) stack.push(v as object);
      continue;
    }
    for (const k of Object.keys(o)) {
      if (k === '__proto__' || k === 'constructor' || k === 'prototype') return true;
      const v = (o as Record<string, unknown>)[k];
      if (typeof v === 'object' && v !== null) stack.push(v);
    }
  }
  return false;
}
