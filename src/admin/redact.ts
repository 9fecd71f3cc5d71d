/**
 * The running config as JSON for `GET /admin/config`, with nothing secret in it:
 * every field whose name says key, secret, password, token or credential becomes
 * "[redacted]" (unless its value is a number or a boolean, such as `key_ttl` or
 * `hide_credentials`, or its name is one of a few known harmless ones such as
 * `key_type`), a password inside a URL
 * (`redis://user:pw@host`) is replaced, consumers' credentials (their auth
 * plugins' configs) are never returned, and what only exists at run time (plugin
 * instances, PEM buffers) is left out.
 */
import type { Config } from '../config/types.js';

export const REDACTED = '[redacted]';

const SECRET_RE = /key|secret|password|passwd|token|credential/i;
/** Names that match SECRET_RE and hold no secret: shown as they are. */
const HARMLESS = new Set(['key_type', 'key_claim_name', 'key_headers', 'token_signing_alg_values_expected']);
/** `scheme://user:password@` -> the password replaced. */
const URL_PASSWORD_RE = /(\b[a-z][a-z0-9+.-]*:\/\/[^:@/\s]*):[^@/\s]*@/gi;
/** Fields that are run-time objects, not config. */
const SKIP = new Set(['instances', 'certPem', 'keyPem', 'caPem']);
const MAX_DEPTH = 64;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function redactUrl(s: string): string {
  return s.replace(URL_PASSWORD_RE, `$1:${REDACTED}@`);
}

function clean(v: unknown, depth: number): Json | undefined {
  if (depth > MAX_DEPTH) return REDACTED;
  if (v === null) return null;
  switch (typeof v) {
    case 'string':
      return redactUrl(v);
    case 'number':
      return Number.isFinite(v) ? v : String(v);
    case 'boolean':
      return v;
    case 'object':
      break;
    default:
      // functions, symbols, bigint: not config
      return undefined;
  }
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return undefined;
  if (v instanceof RegExp) return v.source;
  if (Array.isArray(v)) {
    const out: Json[] = [];
    for (const item of v) {
      const c = clean(item, depth + 1);
      out.push(c === undefined ? null : c);
    }
    return out;
  }
  const out: { [k: string]: Json } = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (SKIP.has(k)) continue;
    if (SECRET_RE.test(k) && !HARMLESS.has(k) && (typeof val === 'string' || typeof val === 'object') && val !== null) {
      out[k] = REDACTED;
      continue;
    }
    const c = clean(val, depth + 1);
    if (c !== undefined) out[k] = c;
  }
  return out;
}

/** The config without secrets, ready for JSON.stringify. */
export function redactConfig(config: Config): Json {
  const out = clean(config, 0) as { [k: string]: Json };
  // A consumer's plugins are its credentials (auth plugins) and its overrides (the
  // instantiated ones): credentials are never returned, not even redacted field by field.
  const redactPlugins = (items: readonly { plugins: Record<string, unknown>; instances: readonly { name: string }[] }[], key: string): void => {
    const list = out[key];
    if (!Array.isArray(list)) return;
    items.forEach((item, i) => {
      const entry = list[i];
      if (!entry || typeof entry !== 'object' || Array.isArray(entry)) return;
      const overrides = new Set(item.instances.map((p) => p.name));
      const plugins: { [k: string]: Json } = {};
      for (const [name, conf] of Object.entries(item.plugins)) {
        plugins[name] = overrides.has(name) ? (clean(conf, 1) ?? null) : REDACTED;
      }
      entry.plugins = plugins;
    });
  };
  redactPlugins(config.consumers, 'consumers');
  redactPlugins(config.consumer_groups, 'consumer_groups');
  return out;
}
