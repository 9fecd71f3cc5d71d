/**
 * A parser for JavaScript regular expressions with the `u` flag, producing the
 * small tree the safety analysis needs: character sets, sequences, alternatives,
 * repetitions, zero-width assertions, lookarounds and backreferences. Capture
 * groups are just their contents. The source must already have compiled with
 * `new RegExp(source, 'u')`: syntax errors are V8's to report, so this parser
 * can stay lenient.
 */
import type { CharSet } from './charset.js';
import {
  ANY, DIGIT, DOT, SPACE, WORD, caseFold, complement, fromRanges, single, union,
} from './charset.js';

export type Node =
  | { readonly k: 'set'; readonly set: CharSet; readonly at: number }
  | { readonly k: 'seq'; readonly items: readonly Node[] }
  | { readonly k: 'alt'; readonly alts: readonly Node[] }
  | { readonly k: 'rep'; readonly body: Node; readonly min: number; readonly max: number; readonly at: number }
  | { readonly k: 'assert'; readonly kind: '^' | '$' | 'b' | 'B' }
  | { readonly k: 'look'; readonly body: Node; readonly behind: boolean; readonly at: number }
  | { readonly k: 'backref'; readonly at: number };

export interface Flags {
  readonly ignoreCase: boolean;
  readonly multiline: boolean;
  readonly dotAll: boolean;
}

export function parseRegex(source: string, flags: Flags): Node {
  const p = new Parser(source, flags);
  const node = p.disjunction();
  if (p.i < source.length) throw new SyntaxError(`unexpected "${source[p.i]}" at offset ${p.i}`);
  return node;
}

const CONTROL_ESCAPES: Record<string, number> = { t: 9, n: 10, v: 11, f: 12, r: 13 };

class Parser {
  i = 0;
  readonly src: string;
  readonly flags: Flags;

  constructor(src: string, flags: Flags) {
    this.src = src;
    this.flags = flags;
  }

  #set(set: CharSet, at: number): Node {
    return { k: 'set', set: this.flags.ignoreCase ? caseFold(set) : set, at };
  }

  disjunction(): Node {
    const alts: Node[] = [this.alternative()];
    while (this.src[this.i] === '|') {
      this.i++;
      alts.push(this.alternative());
    }
    return alts.length === 1 ? alts[0]! : { k: 'alt', alts };
  }

  alternative(): Node {
    const items: Node[] = [];
    while (this.i < this.src.length && this.src[this.i] !== '|' && this.src[this.i] !== ')') {
      items.push(this.term());
    }
    return items.length === 1 ? items[0]! : { k: 'seq', items };
  }

  term(): Node {
    const at = this.i;
    const atom = this.atom();
    if (atom.k === 'assert' || (atom.k === 'look' && atom.behind)) return atom;
    return this.quantifier(atom, at);
  }

  quantifier(atom: Node, at: number): Node {
    const c = this.src[this.i];
    let min: number;
    let max: number;
    if (c === '*') [min, max] = [0, Infinity];
    else if (c === '+') [min, max] = [1, Infinity];
    else if (c === '?') [min, max] = [0, 1];
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i));
      if (!m) return atom;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      this.i += m[0].length - 1;
    } else {
      return atom;
    }
    this.i++;
    if (this.src[this.i] === '?') this.i++; // lazy: same paths, other order
    return { k: 'rep', body: atom, min, max, at };
  }

  atom(): Node {
    const at = this.i;
    const c = this.src[this.i]!;
    switch (c) {
      case '^':
        this.i++;
        return { k: 'assert', kind: '^' };
      case '$':
        this.i++;
        return { k: 'assert', kind: '$' };
      case '.':
        this.i++;
        return this.#set(this.flags.dotAll ? ANY : DOT, at);
      case '[':
        return this.#set(this.charClass(), at);
      case '(':
        return this.group();
      case '\\':
        return this.atomEscape();
      default: {
        const cp = this.src.codePointAt(this.i)!;
        this.i += cp > 0xffff ? 2 : 1;
        return this.#set(single(cp), at);
      }
    }
  }

  group(): Node {
    const at = this.i;
    this.i++; // (
    let look: { behind: boolean } | undefined;
    if (this.src.startsWith('?:', this.i)) this.i += 2;
    else if (this.src.startsWith('?=', this.i) || this.src.startsWith('?!', this.i)) {
      this.i += 2;
      look = { behind: false };
    } else if (this.src.startsWith('?<=', this.i) || this.src.startsWith('?<!', this.i)) {
      this.i += 3;
      look = { behind: true };
    } else if (this.src.startsWith('?<', this.i)) {
      const end = this.src.indexOf('>', this.i);
      this.i = end + 1;
    }
    const body = this.disjunction();
    if (this.src[this.i] !== ')') throw new SyntaxError(`unterminated group at offset ${at}`);
    this.i++;
    return look ? { k: 'look', body, behind: look.behind, at } : body;
  }

  atomEscape(): Node {
    const at = this.i;
    const c = this.src[this.i + 1];
    if (c === 'b' || c === 'B') {
      this.i += 2;
      return { k: 'assert', kind: c };
    }
    if (c !== undefined && c >= '1' && c <= '9') {
      this.i += 2;
      while (/[0-9]/.test(this.src[this.i] ?? '')) this.i++;
      return { k: 'backref', at };
    }
    if (c === 'k') {
      const end = this.src.indexOf('>', this.i);
      this.i = end + 1;
      return { k: 'backref', at };
    }
    return this.#set(this.escapeSet(false), at);
  }

  /** An escape that stands for a set of characters (inside or outside a class). `this.i` is at the backslash. */
  escapeSet(inClass: boolean): CharSet {
    const c = this.src[this.i + 1]!;
    this.i += 2;
    switch (c) {
      case 'd':
        return DIGIT;
      case 'D':
        return complement(DIGIT);
      case 's':
        return SPACE;
      case 'S':
        return complement(SPACE);
      case 'w':
        return this.flags.ignoreCase ? union(WORD, fromRanges([[0x17f, 0x17f], [0x212a, 0x212a]])) : WORD;
      case 'W':
        return complement(WORD);
      case 'p':
      case 'P': {
        // Unicode property: which characters it names does not matter to the analysis; any is safe (larger).
        const end = this.src.indexOf('}', this.i);
        this.i = end + 1;
        return ANY;
      }
      case 'b':
        if (inClass) return single(8);
        break;
      case 'c': {
        const letter = this.src.charCodeAt(this.i);
        this.i++;
        return single(letter % 32);
      }
      case '0':
        return single(0);
      case 'x': {
        const hex = this.src.slice(this.i, this.i + 2);
        this.i += 2;
        return single(parseInt(hex, 16));
      }
      case 'u':
        return single(this.unicodeEscape());
    }
    if (c in CONTROL_ESCAPES) return single(CONTROL_ESCAPES[c]!);
    // Identity escape (a syntax character, '/', '-'): the character itself.
    const cp = this.src.codePointAt(this.i - 1)!;
    if (cp > 0xffff) this.i++;
    return single(cp);
  }

  /** After `\u`: `{H...}`, `HHHH`, or a surrogate pair `HHHH\uHHHH`. */
  unicodeEscape(): number {
    if (this.src[this.i] === '{') {
      const end = this.src.indexOf('}', this.i);
      const cp = parseInt(this.src.slice(this.i + 1, end), 16);
      this.i = end + 1;
      return cp;
    }
    const hi = parseInt(this.src.slice(this.i, this.i + 4), 16);
    this.i += 4;
    if (hi >= 0xd800 && hi <= 0xdbff && this.src.startsWith('\\u', this.i)) {
      const lo = parseInt(this.src.slice(this.i + 2, this.i + 6), 16);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        this.i += 6;
        return (hi - 0xd800) * 0x400 + (lo - 0xdc00) + 0x10000;
      }
    }
    return hi;
  }

  charClass(): CharSet {
    this.i++; // [
    let negate = false;
    if (this.src[this.i] === '^') {
      negate = true;
      this.i++;
    }
    let set: CharSet = [];
    while (this.i < this.src.length && this.src[this.i] !== ']') {
      const lo = this.classAtom();
      if (this.src[this.i] === '-' && this.src[this.i + 1] !== ']' && lo.length === 2 && lo[0] === lo[1]) {
        this.i++;
        const hi = this.classAtom();
        set = union(set, fromRanges([[lo[0]!, hi[hi.length - 1]!]]));
      } else {
        set = union(set, lo);
      }
    }
    this.i++; // ]
    // Case folding (in #set) comes after the complement: [^a-z] with `i` may then hold a few
    // characters too many (A-Z), never one too few (such as the dotless i, which V8 matches).
    return negate ? complement(set) : set;
  }

  classAtom(): CharSet {
    if (this.src[this.i] === '\\') return this.escapeSet(true);
    const cp = this.src.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return single(cp);
  }
}
