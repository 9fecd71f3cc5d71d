/**
 * Config errors: the issue shape, the error the loader throws, and the
 * translation of Ajv errors into sentences a person can act on
 * (`expected an integer >= 1, found the string "ten"`).
 */
import type { ErrorObject } from 'ajv';

export interface ConfigIssue {
  /** The config file, as given to the loader. */
  file: string;
  /** 1-based position of the offending node (absent only when the file itself cannot be read). */
  line?: number;
  column?: number;
  /** YAML path, e.g. `routes[2].plugins.limit-conn.conn`; '' for the root. */
  path: string;
  /** A full sentence, including what was expected and what was found. */
  message: string;
  expected?: string;
  found?: string;
}

function compareIssues(a: ConfigIssue, b: ConfigIssue): number {
  return (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0) || a.path.localeCompare(b.path);
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file}:${issue.line}:${issue.column ?? 1}`;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where} ${issue.path}: ${issue.message}`;
}

/** Thrown by the loader, and only this: every problem found in one file, sorted by line. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'ERR_CONFIG_INVALID';
  readonly file: string;
  readonly issues: ConfigIssue[];

  constructor(file: string, issues: ConfigIssue[]) {
    const sorted = [...issues].sort(compareIssues);
    const count = sorted.length === 1 ? '1 problem' : `${sorted.length} problems`;
    super(`invalid config ${file} (${count}):\n${sorted.map(formatIssue).join('\n')}`);
    this.file = file;
    this.issues = sorted;
  }

  /** One line per issue: `FILE:LINE:COL PATH: message`. */
  format(): string {
    return this.issues.map(formatIssue).join('\n');
  }
}

// ---------------------------------------------------------------------------
// Describing schemas and values

type Schema = Record<string, unknown>;

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function literal(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function range(s: Schema): string {
  const min = typeof s.minimum === 'number' ? s.minimum : undefined;
  const max = typeof s.maximum === 'number' ? s.maximum : undefined;
  const xmin = typeof s.exclusiveMinimum === 'number' ? s.exclusiveMinimum : undefined;
  const xmax = typeof s.exclusiveMaximum === 'number' ? s.exclusiveMaximum : undefined;
  if (min !== undefined && max !== undefined) return ` between ${min} and ${max}`;
  const parts: string[] = [];
  if (min !== undefined) parts.push(`>= ${min}`);
  if (xmin !== undefined) parts.push(`> ${xmin}`);
  if (max !== undefined) parts.push(`<= ${max}`);
  if (xmax !== undefined) parts.push(`< ${xmax}`);
  return parts.length ? ` ${parts.join(' and ')}` : '';
}

function describeType(type: string, s: Schema): string {
  switch (type) {
    case 'integer':
      return `an integer${range(s)}`;
    case 'number':
      return `a number${range(s)}`;
    case 'string':
      if (typeof s.pattern === 'string') return `a string matching ${s.pattern}`;
      if (typeof s.minLength === 'number' && s.minLength === 1) return 'a non-empty string';
      if (typeof s.minLength === 'number' && s.minLength > 1) return `a string of at least ${s.minLength} characters`;
      return 'a string';
    case 'boolean':
      return 'true or false';
    case 'object':
      return 'a mapping';
    case 'array':
      return typeof s.minItems === 'number' && s.minItems > 0 ? 'a non-empty list' : 'a list';
    case 'null':
      return 'an empty value';
    default:
      return `a value of type ${type}`;
  }
}

/** `an integer between 0 and 65535`, `one of http, https`, `a mapping or a list`. */
export function describeSchema(s: unknown): string {
  if (s === true) return 'any value';
  if (!isObject(s)) return 'a valid value';
  if (Array.isArray(s.enum)) return `one of ${s.enum.map(literal).join(', ')}`;
  if ('const' in s) return literal(s.const);
  const types = typeof s.type === 'string' ? [s.type] : Array.isArray(s.type) ? (s.type as string[]) : [];
  if (types.length > 0) return types.map((t) => describeType(t, s)).join(' or ');
  const alternatives = s.oneOf ?? s.anyOf;
  if (Array.isArray(alternatives)) return alternatives.map(describeSchema).join(' or ');
  if (Array.isArray(s.required) && s.required.length > 0) {
    return `a mapping with ${s.required.map((k) => `key "${String(k)}"`).join(' and ')}`;
  }
  return 'a valid value';
}

export type FoundStyle = 'type' | 'value';

/**
 * `the string "ten"` (style type) or `"ten"` (style value). Strings are cut at
 * 80 characters. Callers hide secrets and environment values before this.
 */
export function describeValue(v: unknown, style: FoundStyle): string {
  if (v === null || v === undefined) return 'an empty value';
  if (typeof v === 'string') {
    if (v === '') return 'an empty string';
    const shown = JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);
    return style === 'type' ? `the string ${shown}` : shown;
  }
  if (typeof v === 'number' || typeof v === 'bigint') return style === 'type' ? `the number ${String(v)}` : String(v);
  if (typeof v === 'boolean') return style === 'type' ? `the boolean ${String(v)}` : String(v);
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : `a list of ${v.length} item${v.length === 1 ? '' : 's'}`;
  if (v instanceof Uint8Array) return 'binary data';
  if (typeof v === 'object') return Object.keys(v).length === 0 ? 'an empty mapping' : 'a mapping';
  return `a ${typeof v}`;
}

/** What a hidden value is called: `a string (hidden)`, `a number (hidden)`. */
export function describeHidden(v: unknown, why: string): string {
  const kind = typeof v === 'string' ? 'a string' : typeof v === 'number' ? 'a number' : typeof v === 'boolean' ? 'a boolean' : 'a value';
  return `${kind} (${why})`;
}

/** Edit distance counting a swap of two neighbours as one edit (`uir` -> `uri`). */
function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate when it is close enough to be a likely typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

// ---------------------------------------------------------------------------
// Ajv errors -> issues

/** What the translator needs from the loader: positions and safe value descriptions. */
export interface IssueContext {
  readonly file: string;
  /** Position and display path of the node at `pointer` (JSON pointer from the file root); `atKey` for its key. */
  locate(pointer: string, atKey?: boolean): { line?: number; column?: number; path: string };
  /** Describe the value at `pointer`, hiding it when its key looks secret or it came from the environment. */
  describeFound(pointer: string, value: unknown, style: FoundStyle): string;
}

export function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** Schema paths are URI fragments: percent-decode, then unescape. */
function unescapeSchemaSegment(segment: string): string {
  let s = segment;
  try {
    s = decodeURIComponent(s);
  } catch {
    // keep as is
  }
  return unescapePointer(s);
}

export function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The subschema at an Ajv schemaPath (`#/properties/a/type`) inside `root`. */
function schemaAt(root: unknown, schemaPath: string): unknown {
  const hash = schemaPath.indexOf('#');
  const rest = hash < 0 ? schemaPath : schemaPath.slice(hash + 1);
  let node: unknown = root;
  for (const raw of rest.split('/')) {
    if (raw === '') continue;
    const seg = unescapeSchemaSegment(raw);
    if (Array.isArray(node)) node = node[Number(seg)];
    else if (isObject(node)) node = node[seg];
    else return undefined;
  }
  return node;
}

/** The schema that holds the keyword of an error. */
function ownerSchema(root: unknown, e: ErrorObject): Schema {
  const s = schemaAt(root, e.schemaPath.slice(0, e.schemaPath.lastIndexOf('/')));
  return isObject(s) ? s : {};
}

function valueAt(data: unknown, pointer: string): unknown {
  let node = data;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = unescapePointer(raw);
    if (Array.isArray(node)) node = node[Number(seg)];
    else if (isObject(node)) node = node[seg];
    else return undefined;
  }
  return node;
}

function isUnder(pointer: string, base: string): boolean {
  return pointer === base || pointer.startsWith(`${base}/`);
}

const REQUIRED_ONE_OF = 'requiredOneOf';

/**
 * Replace each failed oneOf/anyOf and the errors of all its branches with the
 * errors of the one branch the user most likely meant: the branches whose type
 * does not even match are dropped; if one is left, its errors are used; if none,
 * the combinator error stays and reads `expected A or B`.
 */
function simplify(errors: ErrorObject[]): ErrorObject[] {
  const list = errors.filter((e) => e.keyword !== 'if');
  const combos = list.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf');
  const outer = combos.filter(
    (c) => !combos.some((o) => o !== c && c.schemaPath.startsWith(`${o.schemaPath}/`) && isUnder(c.instancePath, o.instancePath)),
  );
  if (outer.length === 0) return list;
  const consumed = new Set<ErrorObject>();
  const replaced = new Map<ErrorObject, ErrorObject[]>();
  for (const c of outer) {
    const prefix = `${c.schemaPath}/`;
    const branches = new Map<string, ErrorObject[]>();
    for (const e of list) {
      if (e === c || !e.schemaPath.startsWith(prefix) || !isUnder(e.instancePath, c.instancePath)) continue;
      consumed.add(e);
      const branch = e.schemaPath.slice(prefix.length).split('/')[0]!;
      const group = branches.get(branch) ?? [];
      group.push(e);
      branches.set(branch, group);
    }
    replaced.set(c, chooseBranch(c, [...branches.values()]));
  }
  const out: ErrorObject[] = [];
  for (const e of list) {
    if (consumed.has(e)) continue;
    out.push(...(replaced.get(e) ?? [e]));
  }
  return out;
}

function chooseBranch(c: ErrorObject, branches: ErrorObject[][]): ErrorObject[] {
  if (c.keyword === 'oneOf' && (c.params as { passingSchemas?: unknown }).passingSchemas) return [c];
  const mismatched = (errs: ErrorObject[]): boolean =>
    errs.some((e) => e.instancePath === c.instancePath && (e.keyword === 'type' || e.keyword === 'enum' || e.keyword === 'const'));
  const candidates = branches.filter((errs) => !mismatched(errs));
  if (candidates.length === 0) return [c];
  if (candidates.length === 1) return simplify(candidates[0]!);
  const onlyRequired = candidates.every((errs) => errs.every((e) => e.keyword === 'required' && e.instancePath === c.instancePath));
  if (onlyRequired) {
    const keys = [...new Set(candidates.flat().map((e) => String((e.params as { missingProperty: string }).missingProperty)))];
    return [{ ...c, keyword: REQUIRED_ONE_OF, params: { keys } }];
  }
  const best = candidates.reduce((a, b) => (b.length < a.length ? b : a));
  return simplify(best);
}

/**
 * Turn Ajv errors from validating `data` (found at JSON pointer `base` in the
 * file) against `rootSchema` into issues. Values are described through the
 * context, so secrets and environment values stay hidden.
 */
export function ajvIssues(
  errors: readonly ErrorObject[],
  data: unknown,
  base: string,
  rootSchema: unknown,
  ctx: IssueContext,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const seen = new Set<string>();
  const all = simplify([...errors]);
  // A value of the wrong type also fails its enum, range, length...: say it once.
  const wrongType = new Set(all.filter((e) => e.keyword === 'type').map((e) => e.instancePath));
  const valueKeywords = new Set(['enum', 'const', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength', 'maxLength', 'pattern', 'format', 'multipleOf']);
  for (const e of all) {
    if (wrongType.has(e.instancePath) && valueKeywords.has(e.keyword)) continue;
    // Errors under propertyNames are reported through the propertyNames error itself.
    if ((e as { propertyName?: string }).propertyName !== undefined && e.keyword !== 'propertyNames') continue;
    const issue = translate(e, all, data, base, rootSchema, ctx);
    const id = `${issue.path}\u0000${issue.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    issues.push(issue);
  }
  return issues;
}

function translate(
  e: ErrorObject,
  all: readonly ErrorObject[],
  data: unknown,
  base: string,
  root: unknown,
  ctx: IssueContext,
): ConfigIssue {
  const pointer = base + e.instancePath;
  const value = valueAt(data, e.instancePath);
  const owner = ownerSchema(root, e);
  const params = e.params as Record<string, unknown>;
  const found = (style: FoundStyle): string => ctx.describeFound(pointer, value, style);
  const at = (p: string, atKey = false): ConfigIssue => ({ file: ctx.file, ...ctx.locate(p, atKey), message: '' });
  const make = (where: ConfigIssue, expected: string, foundText: string, message?: string): ConfigIssue => ({
    ...where,
    message: message ?? `expected ${expected}, found ${foundText}`,
    expected,
    found: foundText,
  });

  switch (e.keyword) {
    case 'type':
    case 'oneOf':
    case 'anyOf': {
      if (e.keyword === 'oneOf' && params.passingSchemas) {
        const alts = schemaAt(root, e.schemaPath);
        const passing = Array.isArray(params.passingSchemas) ? (params.passingSchemas as number[]) : [];
        const forms = Array.isArray(alts) ? passing.map((i) => describeSchema(alts[i])).join(' and ') : 'several forms';
        return make(
          at(pointer),
          'exactly one of the allowed forms',
          `a value that matches ${forms}`,
          `expected exactly one of the allowed forms, found a value that matches ${forms}`,
        );
      }
      const expected = e.keyword === 'type' ? describeSchema(owner) : describeSchema({ [e.keyword]: schemaAt(root, e.schemaPath) });
      return make(at(pointer), expected, found('type'));
    }
    case 'enum':
    case 'const':
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
    case 'minLength':
    case 'maxLength':
    case 'pattern': {
      let expected = describeSchema(owner);
      if (e.keyword === 'maxLength') expected = `a string of at most ${String(params.limit)} characters`;
      return make(at(pointer), expected, found('value'));
    }
    case 'format':
      return make(at(pointer), `a string in ${String(params.format)} format`, found('value'));
    case 'multipleOf':
      return make(at(pointer), `a multiple of ${String(params.multipleOf)}`, found('value'));
    case 'required': {
      const key = String(params.missingProperty);
      return make(at(pointer), `key "${key}"`, 'no such key', `missing required key "${key}"`);
    }
    case REQUIRED_ONE_OF: {
      const keys = (params.keys as string[]).map((k) => `"${k}"`).join(' or ');
      return make(at(pointer), `key ${keys}`, 'neither', `missing required key: expected ${keys}`);
    }
    case 'dependentRequired':
    case 'dependencies': {
      const key = String(params.missingProperty);
      return make(at(pointer), `key "${key}"`, 'no such key', `missing required key "${key}" (required when "${String(params.property)}" is set)`);
    }
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const props = isObject(owner.properties) ? Object.keys(owner.properties) : [];
      const where = at(`${pointer}/${escapePointer(key)}`, true);
      if (props.length === 0) return make(where, 'no keys here', `"${key}"`, `unknown key "${key}" (no keys are allowed here)`);
      const expected = `one of: ${props.join(', ')}`;
      const hint = suggest(key, props);
      const message = `unknown key "${key}" (expected ${expected})${hint ? `; did you mean "${hint}"?` : ''}`;
      return make(where, expected, `"${key}"`, message);
    }
    case 'propertyNames': {
      const key = String(params.propertyName);
      const nested = all.find(
        (n) => n !== e && (n as { propertyName?: string }).propertyName === key && n.instancePath === e.instancePath,
      );
      const expected = nested ? describeSchema(ownerSchema(root, nested)) : 'a valid key';
      return make(at(`${pointer}/${escapePointer(key)}`, true), expected, `"${key}"`, `invalid key "${key}": expected ${expected}`);
    }
    case 'minItems':
    case 'maxItems': {
      const n = Number(params.limit);
      const bound = e.keyword === 'minItems' ? 'at least' : 'at most';
      return make(at(pointer), `${bound} ${n} item${n === 1 ? '' : 's'}`, found('type'));
    }
    case 'minProperties':
    case 'maxProperties': {
      const n = Number(params.limit);
      const bound = e.keyword === 'minProperties' ? 'at least' : 'at most';
      return make(at(pointer), `${bound} ${n} entr${n === 1 ? 'y' : 'ies'}`, found('type'));
    }
    case 'uniqueItems': {
      const i = Number(params.i);
      const j = Number(params.j);
      const later = Math.max(i, j);
      const first = Math.min(i, j);
      const itemPointer = `${pointer}/${later}`;
      const item = ctx.describeFound(itemPointer, valueAt(data, `${e.instancePath}/${later}`), 'value');
      return make(at(itemPointer), 'unique items', `${item} twice`, `duplicate item ${item} (the same as item ${first}); expected unique items`);
    }
    case 'not':
      return make(at(pointer), `not ${describeSchema(schemaAt(root, e.schemaPath))}`, found('type'));
    default:
      return make(at(pointer), 'a valid value', found('type'), `${e.message ?? 'is invalid'} (found ${found('type')})`);
  }
}
