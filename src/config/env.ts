/**
 * `${NAME}` expansion in config string values. Pure: no access to process.env,
 * the caller passes the environment in.
 *
 *   ${NAME}            the variable's value; an issue when it is unset
 *   ${NAME:-default}   the value, or `default` when unset or empty (shell semantics)
 *   $${NAME}           the literal text `${NAME}`
 *
 * Anything else (`$HOME`, a lone `$`) is left as written.
 */

export type Env = Readonly<Record<string, string | undefined>>;

export interface EnvExpansion {
  /** The string with every reference replaced (unset references become ''). */
  readonly value: string;
  /** Names of all variables referenced, in order. Empty when nothing was expanded. */
  readonly vars: readonly string[];
  /** Referenced variables that are unset and have no default. */
  readonly missing: readonly string[];
  /** The first reference that is not `${NAME}` / `${NAME:-default}`, if any. */
  readonly malformed: string | undefined;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function expandEnv(text: string, env: Env): EnvExpansion {
  if (!text.includes('${')) return { value: text, vars: [], missing: [], malformed: undefined };
  const vars: string[] = [];
  const missing: string[] = [];
  let malformed: string | undefined;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf('$', i);
    if (at < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, at);
    if (text.startsWith('$${', at)) {
      // Escape: `$${` is a literal `${`; what follows is copied as written.
      out += '${';
      i = at + 3;
      continue;
    }
    if (text[at + 1] !== '{') {
      out += '$';
      i = at + 1;
      continue;
    }
    const close = text.indexOf('}', at + 2);
    if (close < 0) {
      malformed ??= text.slice(at);
      out += text.slice(at);
      break;
    }
    const inner = text.slice(at + 2, close);
    const sep = inner.indexOf(':-');
    const name = sep < 0 ? inner : inner.slice(0, sep);
    const fallback = sep < 0 ? undefined : inner.slice(sep + 2);
    i = close + 1;
    if (!NAME_RE.test(name)) {
      malformed ??= text.slice(at, close + 1);
      out += text.slice(at, close + 1);
      continue;
    }
    vars.push(name);
    const value = Object.prototype.hasOwnProperty.call(env, name) ? env[name] : undefined;
    if (value !== undefined && (value !== '' || fallback === undefined)) out += value;
    else if (fallback !== undefined) out += fallback;
    else missing.push(name);
  }
  return { value: out, vars, missing, malformed };
}

/**
 * A string that came from an environment expansion, converted to the type the
 * schema asks for, or undefined when it does not look like one. `port: ${PORT}`
 * yields the string "9080"; this turns it into 9080.
 */
export function coerceEnvString(value: string, types: readonly string[]): number | boolean | undefined {
  const s = value.trim();
  if (types.includes('integer') && /^[-+]?\d+$/.test(s)) {
    const n = Number(s);
    if (Number.isSafeInteger(n)) return n;
  }
  if (types.includes('number') && /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(s)) {
    const n = Number(s);
    if (Number.isFinite(n)) return n;
  }
  if (types.includes('boolean')) {
    if (s === 'true') return true;
    if (s === 'false') return false;
  }
  return undefined;
}
