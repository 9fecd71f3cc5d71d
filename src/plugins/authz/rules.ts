/**
 * authz rules compiled once: each rule becomes a list of predicates over the
 * request's facts (consumer, group, labels, method, claims, scopes, route
 * parameters). Evaluation is synchronous and allocates one small object per
 * request.
 */
import type { ConsumerInfo, RequestContext } from '../../core/plugin.js';
import type { ParamInClaim, RuleConfig, Scalar } from './schema.js';

/** What the conditions look at, gathered lazily once per request. */
export class Facts {
  readonly ctx: RequestContext;
  readonly #labels: (username: string) => Readonly<Record<string, string>> | undefined;
  #claims: Readonly<Record<string, unknown>> | null | undefined;
  #scopes: ReadonlySet<string> | undefined;

  constructor(ctx: RequestContext, labels: (username: string) => Readonly<Record<string, string>> | undefined) {
    this.ctx = ctx;
    this.#labels = labels;
  }

  /** The verified claims: the consumer's, else those an auth plugin left in `auth.claims`. */
  claims(): Readonly<Record<string, unknown>> | null {
    if (this.#claims === undefined) {
      const c = this.ctx.consumer?.claims ?? this.ctx.vars.get('auth.claims');
      this.#claims = c !== null && typeof c === 'object' && !Array.isArray(c) ? (c as Record<string, unknown>) : null;
    }
    return this.#claims;
  }

  /**
   * The granted scopes: the consumer's, else those an auth plugin left in
   * `auth.scopes`, else the claims' `scope` (space separated) and `scp`.
   */
  scopes(): ReadonlySet<string> {
    if (this.#scopes === undefined) {
      const given = this.ctx.consumer?.scopes ?? this.ctx.vars.get('auth.scopes');
      if (Array.isArray(given)) this.#scopes = new Set(given.filter((x): x is string => typeof x === 'string'));
      else {
        const c = this.claims();
        this.#scopes = new Set(c ? [...valuesOf(c.scope), ...valuesOf(c.scp)] : []);
      }
    }
    return this.#scopes;
  }

  labels(): Readonly<Record<string, string>> | undefined {
    const c = this.ctx.consumer;
    return c ? this.#labels(c.username) : undefined;
  }
}

type Check = (f: Facts) => boolean;

export interface CompiledRule {
  /** Position in `rules`, for the log. */
  readonly index: number;
  readonly description: string | undefined;
  readonly allow: boolean;
  readonly checks: readonly Check[];
}

export function compileRules(rules: readonly RuleConfig[]): CompiledRule[] {
  return rules.map((r, index) => ({ index, description: r.description, allow: r.effect !== 'deny', checks: compileChecks(r) }));
}

/** The first rule whose conditions all hold, or undefined. */
export function firstMatch(rules: readonly CompiledRule[], facts: Facts): CompiledRule | undefined {
  outer: for (const rule of rules) {
    for (const check of rule.checks) if (!check(facts)) continue outer;
    return rule;
  }
  return undefined;
}

function compileChecks(r: RuleConfig): Check[] {
  const checks: Check[] = [];
  // Cheapest first.
  if (r.methods) {
    const methods = new Set(r.methods);
    checks.push((f) => methods.has(f.ctx.method));
  }
  if (r.consumers) {
    const names = new Set(r.consumers);
    checks.push((f) => f.ctx.consumer !== undefined && names.has(f.ctx.consumer.username));
  }
  if (r.groups) {
    const groups = new Set(r.groups);
    checks.push((f) => {
      const g = f.ctx.consumer?.group_id;
      return g !== undefined && groups.has(g);
    });
  }
  if (r.labels) {
    const wanted = Object.entries(r.labels).map(([k, v]) => [k, new Set(Array.isArray(v) ? v : [v])] as const);
    checks.push((f) => {
      const labels = f.labels();
      if (!labels) return false;
      for (const [k, accepted] of wanted) {
        const v = Object.hasOwn(labels, k) ? labels[k] : undefined;
        if (v === undefined || !accepted.has(v)) return false;
      }
      return true;
    });
  }
  if (r.scopes) {
    const required = [...new Set(r.scopes)];
    checks.push((f) => {
      const have = f.scopes();
      for (const s of required) if (!have.has(s)) return false;
      return true;
    });
  }
  if (r.claims) {
    const wanted = Object.entries(r.claims).map(([name, v]) => [claimPath(name), new Set<Scalar>(Array.isArray(v) ? v : [v])] as const);
    checks.push((f) => {
      const claims = f.claims();
      if (!claims) return false;
      for (const [path, accepted] of wanted) if (!claimMatches(claimAt(claims, path), accepted)) return false;
      return true;
    });
  }
  if (r.param_in_claim) {
    const list = Array.isArray(r.param_in_claim) ? r.param_in_claim : [r.param_in_claim];
    for (const p of list) checks.push(paramInClaim(p));
  }
  return checks;
}

function paramInClaim(p: ParamInClaim): Check {
  const path = claimPath(p.claim);
  const param = p.param;
  return (f) => {
    const value = Object.hasOwn(f.ctx.params, param) ? f.ctx.params[param] : undefined;
    if (value === undefined || value === '') return false;
    const claims = f.claims();
    if (!claims) return false;
    const held = claimAt(claims, path);
    if (typeof held === 'string') return splitList(held).includes(value);
    if (Array.isArray(held)) {
      for (const el of held) if (el === value || (typeof el === 'number' && String(el) === value)) return true;
      return false;
    }
    return typeof held === 'number' && String(held) === value;
  };
}

/** A claim name: the claim of that exact name, or a dotted path into nested objects (`realm_access.roles`). */
interface ClaimPath {
  readonly name: string;
  readonly parts: readonly string[] | undefined;
}

function claimPath(name: string): ClaimPath {
  return { name, parts: name.includes('.') ? name.split('.') : undefined };
}

function claimAt(claims: Readonly<Record<string, unknown>>, path: ClaimPath): unknown {
  if (Object.hasOwn(claims, path.name)) return claims[path.name];
  if (!path.parts) return undefined;
  let cur: unknown = claims;
  for (const part of path.parts) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** A scalar claim equals an accepted value; an array claim holds one. Types are compared strictly. */
function claimMatches(value: unknown, accepted: ReadonlySet<Scalar>): boolean {
  if (Array.isArray(value)) {
    for (const el of value) if (isScalar(el) && accepted.has(el)) return true;
    return false;
  }
  return isScalar(value) && accepted.has(value);
}

function isScalar(v: unknown): v is Scalar {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

function splitList(s: string): string[] {
  return s.split(/[\s,]+/).filter((x) => x !== '');
}

/** Values of a `scope`/`scp` claim: a space separated string or an array of strings. */
function valuesOf(v: unknown): string[] {
  if (typeof v === 'string') return splitList(v);
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

const labelIndexes = new WeakMap<readonly ConsumerInfo[], Map<string, Readonly<Record<string, string>>>>();

/** username -> labels, built once per consumers array (the same array for every route of a config). */
export function labelIndex(consumers: readonly ConsumerInfo[]): (username: string) => Readonly<Record<string, string>> | undefined {
  let index = labelIndexes.get(consumers);
  if (!index) {
    index = new Map();
    for (const c of consumers) if (c.labels) index.set(c.username, c.labels);
    labelIndexes.set(consumers, index);
  }
  const m = index;
  return (username) => m.get(username);
}
