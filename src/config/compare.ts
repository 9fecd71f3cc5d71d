/**
 * Comparing two loaded configs, for hot reload: structural equality of config
 * values, and the settings a running gateway cannot change without a restart.
 * Pure functions; the reload diff itself is server/reload.ts.
 */
import type { ConsumerInfo } from '../core/plugin.js';
import type { Config } from './types.js';

/**
 * Structural equality of config values: plain objects (own enumerable keys, any
 * order), arrays, byte buffers (TLS files) and primitives.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.compare(a, b) === 0;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(rb, k) || !deepEqual(ra[k], rb[k])) return false;
  }
  return true;
}

/** The consumers a plugin's init() saw, in the same order with the same attributes and plugin configs. */
export function sameConsumers(a: readonly ConsumerInfo[], b: readonly ConsumerInfo[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.username !== y.username || x.group_id !== y.group_id || x.desc !== y.desc) return false;
    if (!deepEqual(x.labels, y.labels) || !deepEqual(x.plugins, y.plugins)) return false;
  }
  return true;
}

/** A setting a reload may not change: where it is (JSON pointer and YAML path) and why (the message omits the path). */
export interface FixedSetting {
  readonly pointer: string;
  readonly path: string;
  readonly message: string;
}

/**
 * Settings fixed for the life of the process: the listening sockets (gateway
 * listeners, admin API, metrics), the worker count, and where the log goes (the
 * admin key is not: a reload rotates it). A
 * reload that changes any of them is refused as a whole (nothing half-applied).
 */
export function fixedSettingsChanged(prev: Config, next: Config): FixedSetting[] {
  const out: FixedSetting[] = [];
  const check = (pointer: string, path: string, a: unknown, b: unknown): void => {
    if (!deepEqual(a, b)) out.push({ pointer, path, message: 'cannot change on reload; restart the gateway to apply it' });
  };
  check('/gateway/listen', 'gateway.listen', prev.gateway.listen, next.gateway.listen);
  check('/gateway/workers', 'gateway.workers', prev.gateway.workers, next.gateway.workers);
  check('/gateway/log/destination', 'gateway.log.destination', prev.gateway.log.destination, next.gateway.log.destination);
  check('/gateway/log/access_log', 'gateway.log.access_log', prev.gateway.log.access_log, next.gateway.log.access_log);
  // Never print these values: admin.key is a secret. The key itself may change (rotation).
  check('/admin', 'admin', prev.admin === undefined, next.admin === undefined);
  check('/admin/listen', 'admin.listen', prev.admin?.listen, next.admin?.listen);
  check('/metrics', 'metrics', prev.metrics, next.metrics);
  return out;
}
