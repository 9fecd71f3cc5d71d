/**
 * Is a regular expression safe to run on untrusted text with V8's backtracking
 * engine? Answered once, at load, by an ambiguity analysis of the pattern's
 * automaton (the approach of Weideman et al. and of tools such as rxxr2/recheck):
 *
 *  1. The pattern becomes a Glushkov automaton: one state per character position,
 *     an edge p -> q when q's character can follow p's. Edges keep their
 *     multiplicity (how many ways the pattern structure allows that step), so
 *     `(a+)+` has two a -> a edges where a plain `a+` has one: that is where a
 *     backtracking engine has two ways to go on.
 *  2. A search that is not anchored with `^` tries every start position: that is
 *     modelled by a leading "any character" state that loops on itself.
 *  3. Once the pattern can end (a state followed only by optional parts), the
 *     search succeeds: such states keep no outgoing edges.
 *  4. Refused: exponential ambiguity (EDA: a state with two different paths back
 *     to itself reading the same text: `(a+)+`, `(a|a)*`, `(\w+\s?)*`, `(.*)*`) and
 *     polynomial ambiguity (IDA: two different looping states p, q where the same
 *     text leads p -> p, p -> q and q -> q: `\d+\d+`, `^\d+\.?\d+$`, and, with the
 *     leading state, `\s+$`, `a.*b`, `<x[^>]*>` in an unanchored search). Without
 *     either, backtracking costs time linear in the input, with a constant that
 *     depends on the pattern.
 *  5. Backreferences are refused (matching them is NP-hard). A lookaround must be
 *     bounded (no unbounded repetition inside), except a lookahead right after the
 *     leading `^` of an anchored pattern (`^(?=.*\d)`), which runs once and is
 *     itself analysed like an anchored pattern.
 *
 * The analysis is conservative: a pattern it refuses may in fact be safe, never the
 * other way round (within the model: bounded repetitions larger than the expansion
 * budget are analysed as unbounded, unknown Unicode properties as "any character").
 */
import type { CharSet } from './charset.js';
import { ANY, intersect } from './charset.js';
import type { Flags, Node } from './regex-parse.js';
import { parseRegex } from './regex-parse.js';

/** A bounded repetition is expanded exactly while copies x positions stays under this. */
const EXPAND_LIMIT = 256;
/** More positions than this and the pattern is refused as too complex to analyse. */
const MAX_POSITIONS = 4000;
/** Work budget of the product-automaton searches. */
const MAX_STEPS = 2_000_000;

export class UnsafePatternError extends Error {
  override readonly name = 'UnsafePatternError';
}

export interface SafePattern {
  readonly regex: RegExp;
  /** The source without its leading inline flags. */
  readonly source: string;
  readonly flags: string;
}

/**
 * Compile a pattern for `.test()` on untrusted text, refusing it when it is not
 * valid or not provably free of catastrophic backtracking. A leading `(?i)`,
 * `(?m)`, `(?s)` (or a combination such as `(?is)`) sets those flags. The `u`
 * flag is always on.
 */
export function compileSafePattern(pattern: string): SafePattern {
  let source = pattern;
  let flags = 'u';
  const inline = /^\(\?([ims]+)\)/.exec(source);
  if (inline) {
    flags += [...new Set(inline[1]!)].join('');
    source = source.slice(inline[0].length);
  }
  let regex: RegExp;
  try {
    regex = new RegExp(source, flags);
  } catch (err) {
    throw new UnsafePatternError(`is not a valid regular expression: ${(err as Error).message}`);
  }
  checkSafe(source, flags);
  return { regex, source, flags };
}

/** Throws UnsafePatternError when `source` (valid with `flags`, which include `u`) may backtrack catastrophically. */
export function checkSafe(source: string, flags: string): void {
  const f: Flags = { ignoreCase: flags.includes('i'), multiline: flags.includes('m'), dotAll: flags.includes('s') };
  const root = parseRegex(source, f);
  const found = new Finder();
  found.scan(root);
  if (found.backref !== undefined) {
    throw new UnsafePatternError(`uses a backreference at offset ${found.backref}, which cannot be matched in bounded time`);
  }
  const anchored = !f.multiline && startsAnchored(root);
  const startLooks = anchored ? collectStartLooks(root) : new Set<Node>();
  for (const look of found.looks) {
    if (startLooks.has(look)) {
      analyse(look.body, true);
    } else {
      const a = new Automaton(false);
      a.build(look.body);
      if (a.hasCycle()) {
        throw new UnsafePatternError(
          `has an unbounded repetition inside the lookaround at offset ${look.at}: a lookaround must be bounded, ` +
            'unless it is a lookahead right after the ^ of an anchored pattern',
        );
      }
    }
  }
  analyse(root, anchored);
}

type Look = Extract<Node, { k: 'look' }>;

/** Finds backreferences and lookarounds anywhere in the tree. */
class Finder {
  backref: number | undefined;
  readonly looks: Look[] = [];

  scan(n: Node): void {
    switch (n.k) {
      case 'backref':
        this.backref ??= n.at;
        return;
      case 'seq':
        for (const i of n.items) this.scan(i);
        return;
      case 'alt':
        for (const a of n.alts) this.scan(a);
        return;
      case 'rep':
        this.scan(n.body);
        return;
      case 'look':
        this.looks.push(n);
        this.scan(n.body);
        return;
      default:
        return;
    }
  }
}

/** True when every match must begin at the start of the input (a leading `^`). */
function startsAnchored(n: Node): boolean {
  switch (n.k) {
    case 'assert':
      return n.kind === '^';
    case 'seq':
      for (const item of n.items) {
        if (startsAnchored(item)) return true;
        if (item.k === 'look' || item.k === 'assert') continue;
        return false;
      }
      return false;
    case 'alt':
      return n.alts.every(startsAnchored);
    default:
      return false;
  }
}

/** Lookaheads that come right after the leading `^`, before anything is consumed: they run once per search. */
function collectStartLooks(n: Node, out = new Set<Node>(), anchoredAlready = false): Set<Node> {
  if (n.k === 'alt') {
    for (const a of n.alts) collectStartLooks(a, out, anchoredAlready);
  } else if (n.k === 'seq') {
    let anchoredHere = anchoredAlready;
    for (const item of n.items) {
      if (item.k === 'assert') {
        if (item.kind === '^') anchoredHere = true;
        continue;
      }
      if (item.k === 'look') {
        if (anchoredHere && !item.behind) out.add(item);
        continue;
      }
      break;
    }
  }
  return out;
}

// ---- the automaton ---------------------------------------------------------------

/** Multiplicities saturate at 2: all the analysis needs is "one way" or "more than one". */
type Counts = Map<number, number>;

interface Frag {
  first: Counts;
  last: Counts;
  /** Ways to match the empty string (assertions and lookarounds count as empty here). */
  nullW: number;
  /** Can match empty with no assertion in the way: the pattern may end here. */
  nullAcc: boolean;
  /** Positions after which the rest of this fragment can be skipped with no assertion in the way. */
  lastAcc: Set<number>;
}

function addCount(m: Counts, k: number, n: number): void {
  if (n <= 0) return;
  m.set(k, Math.min(2, (m.get(k) ?? 0) + n));
}

function scaled(m: Counts, by: number, into: Counts = new Map()): Counts {
  if (by > 0) for (const [k, n] of m) addCount(into, k, n * by);
  return into;
}

/**
 * The Glushkov automaton of a pattern. With `loopAll`, every repetition that may
 * repeat (max >= 2) becomes a loop: that automaton is for the exponential check,
 * where `(a|aa){1,30}` must look like `(a|aa)+`. Without it, bounded repetitions
 * are expanded exactly while small (`.{0,100}` is a chain, not a loop), which is
 * what the polynomial check needs to accept `<x.{0,100}>`.
 */
class Automaton {
  readonly sets: CharSet[] = [];
  /** Source offset of each position (for messages). */
  readonly at: number[] = [];
  readonly follow: Counts[] = [];
  readonly loopAll: boolean;

  constructor(loopAll: boolean) {
    this.loopAll = loopAll;
  }

  #newPos(set: CharSet, at: number): number {
    if (this.sets.length >= MAX_POSITIONS) {
      throw new UnsafePatternError(`is too complex to prove safe (more than ${MAX_POSITIONS} character positions once bounded repetitions are expanded)`);
    }
    this.sets.push(set);
    this.at.push(at);
    this.follow.push(new Map());
    return this.sets.length - 1;
  }

  #link(from: Counts, to: Counts): void {
    for (const [p, a] of from) for (const [q, b] of to) addCount(this.follow[p]!, q, a * b);
  }

  build(n: Node): Frag {
    switch (n.k) {
      case 'set': {
        const p = this.#newPos(n.set, n.at);
        return { first: new Map([[p, 1]]), last: new Map([[p, 1]]), nullW: 0, nullAcc: false, lastAcc: new Set([p]) };
      }
      case 'assert':
      case 'look':
      case 'backref':
        return { first: new Map(), last: new Map(), nullW: 1, nullAcc: false, lastAcc: new Set() };
      case 'seq': {
        let acc = this.#empty();
        for (const item of n.items) acc = this.#concat(acc, this.build(item));
        return acc;
      }
      case 'alt': {
        const out: Frag = { first: new Map(), last: new Map(), nullW: 0, nullAcc: false, lastAcc: new Set() };
        for (const a of n.alts) {
          const f = this.build(a);
          scaled(f.first, 1, out.first);
          scaled(f.last, 1, out.last);
          out.nullW = Math.min(2, out.nullW + f.nullW);
          out.nullAcc ||= f.nullAcc;
          for (const p of f.lastAcc) out.lastAcc.add(p);
        }
        return out;
      }
      case 'rep':
        return this.loopAll ? this.#repeatAsLoop(n.body, n.min, n.max, n.at) : this.#repeat(n.body, n.min, n.max);
    }
  }

  #repeatAsLoop(body: Node, min: number, max: number, at: number): Frag {
    if (max <= 1) {
      if (max === 0) return this.#empty();
      const f = this.build(body);
      return min === 0 ? this.#optional(f) : f;
    }
    const f = this.build(body);
    if (f.nullW > 0 && f.first.size > 0) {
      // (a?){20}a{20}: every copy may or may not take a character, 2^20 ways to try.
      throw new UnsafePatternError(
        `can take exponential time: the repetition at offset ${at} repeats something that can also match nothing ` +
          '(as in (a?){20} or (a|)*); make the repeated part always consume a character',
      );
    }
    this.#link(f.last, f.first);
    return min === 0 ? { ...f, nullW: 1, nullAcc: true } : f;
  }

  #empty(): Frag {
    return { first: new Map(), last: new Map(), nullW: 1, nullAcc: true, lastAcc: new Set() };
  }

  #concat(a: Frag, b: Frag): Frag {
    this.#link(a.last, b.first);
    const first = scaled(a.first, 1);
    scaled(b.first, a.nullW, first);
    const last = scaled(b.last, 1);
    scaled(a.last, b.nullW, last);
    const lastAcc = new Set(b.lastAcc);
    if (b.nullAcc) for (const p of a.lastAcc) lastAcc.add(p);
    return { first, last, nullW: Math.min(2, a.nullW * b.nullW), nullAcc: a.nullAcc && b.nullAcc, lastAcc };
  }

  #optional(f: Frag): Frag {
    return { ...f, nullW: Math.min(2, f.nullW + 1), nullAcc: true };
  }

  /** body+ (one copy with a back edge), or body* when `star`. */
  #loop(body: Node, star: boolean): Frag {
    const f = this.build(body);
    this.#link(f.last, f.first);
    return star ? { ...f, nullW: 1, nullAcc: true } : f;
  }

  #repeat(body: Node, min: number, max: number): Frag {
    const w = weight(body);
    if (max !== Infinity && max * w <= EXPAND_LIMIT) {
      // Exact: min copies, then (max - min) nested optional copies: x{2,4} = x x (x (x)?)?
      let acc = this.#empty();
      for (let i = 0; i < min; i++) acc = this.#concat(acc, this.build(body));
      if (max > min) acc = this.#concat(acc, this.#nestedOptional(body, max - min));
      return acc;
    }
    // Unbounded, or bounded but large: analysed as unbounded (a larger language: conservative).
    const copies = Math.min(min, Math.max(1, Math.floor(EXPAND_LIMIT / Math.max(1, w))));
    if (copies === 0) return this.#loop(body, true);
    let acc = this.#empty();
    for (let i = 0; i < copies - 1; i++) acc = this.#concat(acc, this.build(body));
    return this.#concat(acc, this.#loop(body, false));
  }

  #nestedOptional(body: Node, n: number): Frag {
    let inner: Frag | undefined;
    // Build from the outside in so positions are numbered left to right, then nest.
    const frags: Frag[] = [];
    for (let i = 0; i < n; i++) frags.push(this.build(body));
    for (let i = n - 1; i >= 0; i--) {
      inner = this.#optional(inner ? this.#concat(frags[i]!, inner) : frags[i]!);
    }
    return inner!;
  }

  /** True when some position can reach itself (the automaton has a loop). */
  hasCycle(): boolean {
    return sccs(this.follow).some((c) => c.cyclic);
  }
}

/** How many positions one copy of `n` creates (to decide whether to expand a bounded repetition). */
function weight(n: Node): number {
  switch (n.k) {
    case 'set':
      return 1;
    case 'seq':
      return n.items.reduce((s, i) => s + weight(i), 0);
    case 'alt':
      return n.alts.reduce((s, a) => s + weight(a), 0);
    case 'rep': {
      const w = weight(n.body);
      if (n.max !== Infinity && n.max * w <= EXPAND_LIMIT) return n.max * w;
      return Math.min(n.min, Math.max(1, Math.floor(EXPAND_LIMIT / Math.max(1, w)))) * w || w;
    }
    default:
      return 0;
  }
}

// ---- strongly connected components -------------------------------------------------

interface Scc {
  members: number[];
  cyclic: boolean;
}

/** Tarjan's algorithm, iterative. Returns components and fills `compOf`. */
function sccs(follow: readonly Counts[], compOf: number[] = []): Scc[] {
  const n = follow.length;
  const index = new Array<number>(n).fill(-1);
  const low = new Array<number>(n).fill(0);
  const onStack = new Array<boolean>(n).fill(false);
  const stack: number[] = [];
  const out: Scc[] = [];
  let next = 0;
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    const work: Array<[number, Iterator<number>]> = [[root, follow[root]!.keys()]];
    index[root] = low[root] = next++;
    stack.push(root);
    onStack[root] = true;
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      const [v, it] = top;
      const step = it.next();
      if (!step.done) {
        const w = step.value;
        if (index[w] === -1) {
          index[w] = low[w] = next++;
          stack.push(w);
          onStack[w] = true;
          work.push([w, follow[w]!.keys()]);
        } else if (onStack[w]) {
          low[v] = Math.min(low[v]!, index[w]!);
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]![0];
        low[parent] = Math.min(low[parent]!, low[v]!);
      }
      if (low[v] === index[v]) {
        const members: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = false;
          compOf[w] = out.length;
          members.push(w);
        } while (w !== v);
        const cyclic = members.length > 1 || follow[v]!.has(v);
        out.push({ members, cyclic });
      }
    }
  }
  return out;
}

// ---- the ambiguity checks ------------------------------------------------------------

/** Memoised intersections of the position sets. */
class Sets {
  readonly #ids = new Map<string, number>();
  readonly #byId: CharSet[] = [];
  readonly #pair = new Map<number, number>();
  readonly idOf: number[];

  constructor(sets: readonly CharSet[]) {
    this.idOf = sets.map((s) => this.intern(s));
  }

  intern(s: CharSet): number {
    const key = s.join(',');
    let id = this.#ids.get(key);
    if (id === undefined) {
      id = this.#byId.length;
      this.#ids.set(key, id);
      this.#byId.push(s);
    }
    return id;
  }

  /** Id of the intersection of two interned sets (-1 when empty). */
  meet(a: number, b: number): number {
    if (a < 0 || b < 0) return -1;
    if (a === b) return a;
    const key = a < b ? a * 1_000_003 + b : b * 1_000_003 + a;
    let r = this.#pair.get(key);
    if (r === undefined) {
      const s = intersect(this.#byId[a]!, this.#byId[b]!);
      r = s.length === 0 ? -1 : this.intern(s);
      this.#pair.set(key, r);
    }
    return r;
  }
}

function analyse(root: Node, anchored: boolean): void {
  const budget = new Budget();
  const loops = new Automaton(true);
  loops.build(root);
  checkExponential(loops, budget);
  checkPolynomial(root, anchored, budget);
}

class Budget {
  steps = 0;
  spend(n: number): void {
    this.steps += n;
    if (this.steps > MAX_STEPS) throw new UnsafePatternError('is too complex to prove safe (the ambiguity analysis ran out of budget)');
  }
}

/**
 * EDA: inside one cyclic component C, the pair automaton on C x C has a cycle through
 * a diagonal pair (q, q) that also visits an off-diagonal pair or takes a double edge.
 */
function checkExponential(a: Automaton, budget: Budget): void {
  const follow = a.follow;
  const compOf: number[] = [];
  const comps = sccs(follow, compOf);
  const sets = new Sets(a.sets);
  const spend = (n: number): void => budget.spend(n);
  for (const comp of comps) {
    if (!comp.cyclic) continue;
    const members = comp.members;
    const local = new Map<number, number>();
    members.forEach((p, i) => local.set(p, i));
    const m = members.length;
    const pairFollow: Counts[] = [];
    const pairIndex = new Map<number, number>();
    const pairs: Array<[number, number]> = [];
    const doubleEdges: Array<[number, number]> = [];
    const node = (x: number, y: number): number => {
      const key = local.get(x)! * m + local.get(y)!;
      let id = pairIndex.get(key);
      if (id === undefined) {
        id = pairs.length;
        pairIndex.set(key, id);
        pairs.push([x, y]);
        pairFollow.push(new Map());
      }
      return id;
    };
    const queue: number[] = members.map((q) => node(q, q));
    for (let qi = 0; qi < queue.length; qi++) {
      const id = queue[qi]!;
      const [x, y] = pairs[id]!;
      for (const [x2, nx] of follow[x]!) {
        if (compOf[x2] !== compOf[x]) continue;
        for (const [y2, ny] of follow[y]!) {
          if (compOf[y2] !== compOf[y]) continue;
          spend(1);
          if (sets.meet(sets.idOf[x2]!, sets.idOf[y2]!) < 0) continue;
          const before = pairs.length;
          const to = node(x2, y2);
          if (to >= before) queue.push(to);
          pairFollow[id]!.set(to, 1);
          if (x === y && x2 === y2 && nx >= 2 && ny >= 2) doubleEdges.push([id, to]);
        }
      }
    }
    const pcomp: number[] = [];
    const pcomps = sccs(pairFollow, pcomp);
    for (const pc of pcomps) {
      if (!pc.cyclic) continue;
      const hasDiagonal = pc.members.some((id) => pairs[id]![0] === pairs[id]![1]);
      if (!hasDiagonal) continue;
      const offDiagonal = pc.members.some((id) => pairs[id]![0] !== pairs[id]![1]);
      const double = doubleEdges.some(([f, t]) => pcomp[f] === pcomp[t] && pcomp[f] === pcomp[pc.members[0]!]);
      if (offDiagonal || double) {
        throw new UnsafePatternError(
          `can take exponential time: the repetition near offset ${a.at[earliest(members, a.at)]} ` +
            `can match the same text in more than one way (as in (a+)+ or (a|a)*)`,
        );
      }
    }
  }
}

/**
 * IDA: states p != q in different cyclic components, and a text that leads
 * p -> p, p -> q and q -> q: triple-product search from (p, p, q) to (p, q, q).
 * On the exact automaton, with the leading "any character" state of a search that
 * is not anchored, and with no edges out of states where the pattern may end.
 */
function checkPolynomial(root: Node, anchored: boolean, budget: Budget): void {
  const a = new Automaton(false);
  const frag = a.build(root);
  // A pattern that can match the empty string succeeds at the first position tried.
  if (frag.nullAcc) return;
  let prefix = -1;
  if (!anchored) {
    prefix = a.sets.length;
    a.sets.push(ANY);
    a.at.push(0);
    a.follow.push(new Map([[prefix, 1]]));
    for (const [p, n] of frag.first) addCount(a.follow[prefix]!, p, n);
  }
  for (const p of frag.lastAcc) a.follow[p]!.clear();
  const follow = a.follow;
  const compOf: number[] = [];
  const comps = sccs(follow, compOf);
  const sets = new Sets(a.sets);
  const spend = (n: number): void => budget.spend(n);
  const near = (p: number): string => (p === prefix ? 'the start of the search' : `offset ${a.at[p]}`);
  const cyclic = comps.map((c) => c.cyclic);
  const reach = reachability(follow, compOf, comps.length);
  const n = a.sets.length;
  for (let c1 = 0; c1 < comps.length; c1++) {
    if (!cyclic[c1]) continue;
    for (let c2 = 0; c2 < comps.length; c2++) {
      if (c1 === c2 || !cyclic[c2] || !reach[c1]!.has(c2)) continue;
      for (const p of comps[c1]!.members) {
        for (const q of comps[c2]!.members) {
          if (tripleSearch(p, q, follow, compOf, sets, n, spend)) {
            const what =
              p === prefix
                ? `the repetition near ${near(q)} can start matching at many positions of the same text in a search that is not anchored (as in \\s+$ or a.*b; anchor it with ^ or bound the repetition)`
                : `the repetitions near ${near(earliest(comps[c1]!.members, a.at))} and ${near(earliest(comps[c2]!.members, a.at))} can match the same text one after the other (as in \\d+\\d*)`;
            throw new UnsafePatternError(`can take quadratic time: ${what}`);
          }
        }
      }
    }
  }
}

/** The member that comes first in the source (for messages). */
function earliest(members: readonly number[], at: readonly number[]): number {
  let best = members[0]!;
  for (const p of members) if (at[p]! < at[best]!) best = p;
  return best;
}


/** For each component, the set of components reachable from it (itself included). */
function reachability(follow: readonly Counts[], compOf: readonly number[], count: number): Set<number>[] {
  const edges: Set<number>[] = Array.from({ length: count }, () => new Set());
  for (let p = 0; p < follow.length; p++) for (const q of follow[p]!.keys()) if (compOf[p] !== compOf[q]) edges[compOf[p]!]!.add(compOf[q]!);
  const memo: Array<Set<number> | undefined> = new Array(count);
  // Tarjan numbers components in reverse topological order: successors come first.
  for (let c = 0; c < count; c++) {
    const r = new Set<number>([c]);
    for (const d of edges[c]!) for (const x of memo[d]!) r.add(x);
    memo[c] = r;
  }
  return memo as Set<number>[];
}

function tripleSearch(
  p: number,
  q: number,
  follow: readonly Counts[],
  compOf: readonly number[],
  sets: Sets,
  n: number,
  spend: (n: number) => void,
): boolean {
  const cp = compOf[p];
  const cq = compOf[q];
  const seen = new Set<number>();
  const key = (x: number, y: number, z: number): number => (x * n + y) * n + z;
  const stack: Array<[number, number, number]> = [[p, p, q]];
  seen.add(key(p, p, q));
  while (stack.length > 0) {
    const [x, y, z] = stack.pop()!;
    for (const x2 of follow[x]!.keys()) {
      if (compOf[x2] !== cp) continue;
      const sx = sets.idOf[x2]!;
      for (const y2 of follow[y]!.keys()) {
        const sxy = sets.meet(sx, sets.idOf[y2]!);
        if (sxy < 0) continue;
        for (const z2 of follow[z]!.keys()) {
          if (compOf[z2] !== cq) continue;
          spend(1);
          if (sets.meet(sxy, sets.idOf[z2]!) < 0) continue;
          if (x2 === p && y2 === q && z2 === q) return true;
          const k = key(x2, y2, z2);
          if (seen.has(k)) continue;
          seen.add(k);
          stack.push([x2, y2, z2]);
        }
      }
    }
  }
  return false;
}
