/**
 * What a limit counts by: APISIX's `key_type` + `key`, compiled once at load.
 *
 *   key_type var              key names one variable: `remote_addr`, `consumer_name`, `http_x_tenant`, ...
 *   key_type var_combination  key is a template: `"$consumer_name $remote_addr"` (also `${name}`)
 *   key_type constant         key is the literal value (limit-count: one counter for everyone)
 *
 * Variables (NGINX's names where there is one):
 *   remote_addr        the client address, resolved through gateway.trusted_proxies: a
 *                      forwarding header from an untrusted peer changes nothing
 *   consumer_name      the authenticated consumer (empty when none)
 *   consumer_group_id  its group
 *   route_id           the matched route
 *   host, uri, request_method
 *   http_<name>        a request header, `_` for `-` (`http_x_tenant` is `X-Tenant`)
 *   arg_<name>         a query parameter (its first value)
 *   cookie_<name>      a cookie
 *
 * As in APISIX, a key that resolves to nothing (`var`: the variable is empty;
 * `var_combination`: every variable is empty) falls back to `remote_addr`, so a client
 * cannot escape a limit by leaving a header out. An unknown variable is refused at load.
 * Long values (over 128 bytes) are replaced by their SHA-256, so a client cannot make
 * big keys.
 */
import { createHash } from 'node:crypto';
import type { RequestContext } from '../../core/plugin.js';

export type KeyType = 'var' | 'var_combination' | 'constant';

type Getter = (ctx: RequestContext) => string | undefined;

/** Resolves the key of a request: never empty. */
export type KeyFn = (ctx: RequestContext) => string;

const MAX_KEY = 128;

const FIXED: Record<string, Getter> = {
  remote_addr: (ctx) => ctx.clientIp,
  consumer_name: (ctx) => ctx.consumer?.username,
  consumer_group_id: (ctx) => ctx.consumer?.group_id,
  route_id: (ctx) => ctx.routeId,
  host: (ctx) => ctx.host,
  uri: (ctx) => ctx.path,
  request_method: (ctx) => ctx.method,
};

const NAME_RE = /^[A-Za-z0-9_-]+$/;

/** The getter of one variable; throws an Error naming the problem for an unknown one. */
export function variable(name: string): Getter {
  const fixed = FIXED[name];
  if (fixed) return fixed;
  const m = /^(http|arg|cookie)_(.+)$/.exec(name);
  if (m && NAME_RE.test(m[2]!)) {
    const rest = m[2]!;
    if (m[1] === 'http') {
      const header = rest.toLowerCase().replace(/_/g, '-');
      return (ctx) => {
        const v = ctx.headers[header];
        return Array.isArray(v) ? v.join(', ') : v;
      };
    }
    if (m[1] === 'arg') return (ctx) => (ctx.query === '' ? undefined : (new URLSearchParams(ctx.query).get(rest) ?? undefined));
    return (ctx) => cookie(ctx.headers.cookie, rest);
  }
  throw new Error(
    `unknown variable "${name}" (use remote_addr, consumer_name, consumer_group_id, route_id, host, uri, request_method, http_<header>, arg_<name> or cookie_<name>)`,
  );
}

/**
 * Compile `key_type` + `key` once at load. Throws an Error (`key: ...`, which the
 * loader reports at the plugin's path) for a key that cannot work.
 */
export function compileKey(keyType: KeyType, key: string): KeyFn {
  try {
    return buildKey(keyType, key);
  } catch (err) {
    throw new Error(`key: ${(err as Error).message}`);
  }
}

function buildKey(keyType: KeyType, key: string): KeyFn {
  if (keyType === 'constant') {
    const value = bounded(key);
    return () => value;
  }
  if (keyType === 'var') {
    const name = key.startsWith('$') ? key.slice(1) : key;
    const get = variable(name);
    if (get === FIXED.remote_addr) return FIXED.remote_addr as KeyFn;
    return (ctx) => {
      const v = get(ctx);
      return v ? bounded(v) : ctx.clientIp;
    };
  }
  // var_combination: literal text and $name / ${name} references.
  const parts: (string | Getter)[] = [];
  const re = /\$\{([A-Za-z0-9_-]+)\}|\$([A-Za-z0-9_]+)/g;
  let last = 0;
  for (let m = re.exec(key); m; m = re.exec(key)) {
    if (m.index > last) parts.push(key.slice(last, m.index));
    parts.push(variable(m[1] ?? m[2]!));
    last = m.index + m[0].length;
  }
  if (last < key.length) parts.push(key.slice(last));
  if (!parts.some((p) => typeof p === 'function')) {
    throw new Error(`key "${key}" names no variable (write them as $name, e.g. "$consumer_name $remote_addr")`);
  }
  return (ctx) => {
    let out = '';
    let resolved = 0;
    for (const p of parts) {
      if (typeof p === 'string') {
        out += p;
        continue;
      }
      const v = p(ctx);
      if (v) {
        out += v;
        resolved++;
      }
    }
    return resolved === 0 ? ctx.clientIp : bounded(out);
  };
}

function bounded(v: string): string {
  return v.length <= MAX_KEY ? v : `sha256:${createHash('sha256').update(v).digest('base64url')}`;
}

function cookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}
