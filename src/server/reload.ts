/**
 * Hot reload: what changed between two configs, which live connections that
 * affects, who still holds a plugin instance or an upstream pool, and the file
 * watcher behind `gateway.watch_config`. The swap itself is Gateway.reload().
 *
 *   route removed or changed (uris, hosts, methods, priority, upstream, plugin
 *   configs, its own websocket/sse settings)        -> 1012 `route changed`
 *   global rules changed, or the consumer's group,
 *   labels or plugin overrides changed              -> 1012 `policy changed`
 *   consumer removed, or any credential of it changed -> 1008 `revoked`
 *   anything else                                   -> untouched
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { deepEqual } from '../config/compare.js';
import { disposeInstances } from '../config/load.js';
import type { Config, ConsumerConfig, GatewaySettings, PluginConfigs, PluginInstance, RouteConfig } from '../config/types.js';
import type { Logger } from '../core/log.js';
import type { Upstream } from '../upstream/upstream.js';

/** What a reload did. Route ids and consumer usernames only: never a credential. */
export interface ReloadReport {
  routes: { added: string[]; removed: string[]; changed: string[]; unchanged: number };
  consumers: { added: string[]; removed: string[]; changed: string[] };
  closed: { route_changed: number; revoked: number };
}

/** What happens to a live connection of the old config. */
export type ReloadVerdict = 'revoked' | 'route changed' | 'policy changed';

/** The difference between the config a connection started under and the one now running. */
export class ConfigDiff {
  readonly routes: ReloadReport['routes'];
  readonly consumers: ReloadReport['consumers'];
  readonly globalRulesChanged: boolean;
  /** Routes removed or changed. */
  readonly #routesGone = new Set<string>();
  /** Consumers removed, or with a credential changed. */
  readonly #revoked = new Set<string>();
  /** Consumers whose group, labels or plugin overrides changed (credentials unchanged). */
  readonly #policy = new Set<string>();

  constructor(prev: Config, next: Config) {
    const before = new Map(prev.routes.map((r) => [r.id, r]));
    const after = new Map(next.routes.map((r) => [r.id, r]));
    const routes: ReloadReport['routes'] = { added: [], removed: [], changed: [], unchanged: 0 };
    for (const [id, r] of before) {
      const n = after.get(id);
      if (!n) routes.removed.push(id);
      else if (!sameRoute(r, n, prev.gateway, next.gateway)) routes.changed.push(id);
      else routes.unchanged++;
    }
    for (const id of after.keys()) if (!before.has(id)) routes.added.push(id);
    for (const id of routes.removed) this.#routesGone.add(id);
    for (const id of routes.changed) this.#routesGone.add(id);
    this.routes = routes;

    this.globalRulesChanged = !deepEqual(
      prev.global_rules.map((g) => [g.id, g.plugins]),
      next.global_rules.map((g) => [g.id, g.plugins]),
    );

    const users: ReloadReport['consumers'] = { added: [], removed: [], changed: [] };
    const nextUsers = new Map(next.consumers.map((c) => [c.username, c]));
    const prevUsers = new Set<string>();
    for (const c of prev.consumers) {
      prevUsers.add(c.username);
      const n = nextUsers.get(c.username);
      if (!n) {
        users.removed.push(c.username);
        this.#revoked.add(c.username);
        continue;
      }
      const credentialsSame = deepEqual(credentials(c), credentials(n));
      const policySame = deepEqual(policy(c, prev), policy(n, next));
      if (!credentialsSame) this.#revoked.add(c.username);
      else if (!policySame) this.#policy.add(c.username);
      if (!credentialsSame || !policySame || c.desc !== n.desc) users.changed.push(c.username);
    }
    for (const c of next.consumers) if (!prevUsers.has(c.username)) users.added.push(c.username);
    this.consumers = users;
  }

  /** What to do with a connection of route `routeId`, authenticated as `username` (if any). */
  verdict(routeId: string, username: string | undefined): ReloadVerdict | undefined {
    if (username !== undefined && this.#revoked.has(username)) return 'revoked';
    if (this.#routesGone.has(routeId)) return 'route changed';
    if (this.globalRulesChanged) return 'policy changed';
    if (username !== undefined && this.#policy.has(username)) return 'policy changed';
    return undefined;
  }
}

/**
 * A route is the same when everything that shaped its connections is: matching,
 * upstream, plugin configs, and its own websocket/sse settings. A change of the
 * gateway-wide defaults alone applies to new connections only.
 */
function sameRoute(a: RouteConfig, b: RouteConfig, ga: GatewaySettings, gb: GatewaySettings): boolean {
  return (
    deepEqual(a.uris, b.uris) &&
    deepEqual(a.hosts, b.hosts) &&
    deepEqual(a.methods, b.methods) &&
    a.priority === b.priority &&
    a.enable_websocket === b.enable_websocket &&
    deepEqual(a.upstream, b.upstream) &&
    deepEqual(a.plugins, b.plugins) &&
    sameSettings(a.websocket, b.websocket, ga.websocket, gb.websocket) &&
    sameSettings(a.sse, b.sse, ga.sse, gb.sse)
  );
}

/** Effective settings equal, or differing only where the gateway default changed under a route that does not set it. */
function sameSettings<T extends object>(a: T, b: T, defaultsA: T, defaultsB: T): boolean {
  return deepEqual(a, b) || deepEqual(ownSettings(a, defaultsA), ownSettings(b, defaultsB));
}

function ownSettings<T extends object>(s: T, defaults: T): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const d = defaults as Record<string, unknown>;
  for (const [k, v] of Object.entries(s)) if (!deepEqual(v, d[k])) out[k] = v;
  return out;
}

/**
 * A consumer's credentials: its plugin entries that are not instantiated. The
 * loader instantiates every consumer plugin except credentials (auth plugins'
 * consumerSchema entries), and credentials are refused on groups.
 */
function credentials(c: ConsumerConfig): PluginConfigs {
  const out: PluginConfigs = {};
  for (const [name, cfg] of Object.entries(c.plugins)) if (!c.instances.some((i) => i.name === name)) out[name] = cfg;
  return out;
}

/** What else decides a consumer's policy: group, labels, its own and its group's plugin overrides. */
function policy(c: ConsumerConfig, config: Config): unknown {
  const own: PluginConfigs = {};
  for (const [name, cfg] of Object.entries(c.plugins)) if (c.instances.some((i) => i.name === name)) own[name] = cfg;
  const group = c.group_id === undefined ? undefined : config.consumer_groups.find((g) => g.id === c.group_id);
  return { group: c.group_id ?? null, labels: c.labels ?? null, own, groupPlugins: group?.plugins ?? null };
}

/** What one runtime holds: released when the runtime is let go. */
export interface Holder {
  readonly instances: ReadonlySet<PluginInstance>;
  readonly upstreams: ReadonlyMap<string, Upstream>;
}

/**
 * Plugin instances and upstream pools shared between runtimes (a reload carries
 * the unchanged ones over), counted by the runtimes that hold them. One is
 * disposed (plugin `dispose`, pool destroyed) when the last runtime holding it is
 * released, which the gateway does once every exchange of that runtime finished.
 */
export class Holdings {
  readonly #instances = new Map<PluginInstance, number>();
  readonly #upstreams = new Map<Upstream, number>();
  readonly #released = new WeakSet<Holder>();
  readonly #disposed = new WeakSet<PluginInstance>();

  hold(h: Holder): void {
    for (const i of h.instances) this.#instances.set(i, (this.#instances.get(i) ?? 0) + 1);
    for (const u of new Set(h.upstreams.values())) this.#upstreams.set(u, (this.#upstreams.get(u) ?? 0) + 1);
  }

  /** Whether some runtime holds `inst`. */
  holds(inst: PluginInstance): boolean {
    return this.#instances.has(inst);
  }

  /** Whether `inst` was disposed (it belonged to a runtime that is gone). */
  disposed(inst: PluginInstance): boolean {
    return this.#disposed.has(inst);
  }

  /** Let go of `h` (once): dispose what no other runtime holds. */
  async release(h: Holder, log: Logger): Promise<void> {
    if (this.#released.has(h)) return;
    this.#released.add(h);
    const gone: PluginInstance[] = [];
    for (const i of h.instances) {
      const n = (this.#instances.get(i) ?? 1) - 1;
      if (n > 0) {
        this.#instances.set(i, n);
        continue;
      }
      this.#instances.delete(i);
      this.#disposed.add(i);
      gone.push(i);
    }
    for (const u of new Set(h.upstreams.values())) {
      const n = (this.#upstreams.get(u) ?? 1) - 1;
      if (n > 0) {
        this.#upstreams.set(u, n);
        continue;
      }
      this.#upstreams.delete(u);
      u.close();
    }
    await disposeAll(gone, log);
  }
}

/** Dispose plugin instances, logging failures. */
export function disposeAll(instances: Iterable<PluginInstance>, log: Logger | undefined): Promise<void> {
  return disposeInstances(instances, (inst, err) => {
    log?.error({ plugin: inst.name, phase: 'dispose', err: err instanceof Error ? err.message : String(err) }, 'plugin failed to dispose');
  });
}

/** Quiet time after the last change event before the file is read. */
const SETTLE_MS = 200;

/**
 * `gateway.watch_config`: watch the config file's directory (an editor or a
 * deployment tool may replace the file by a rename, or swap a symlink beside it),
 * wait until the events settle, and call `onChange` when the file's text differs
 * from the last text seen. Only writes to the file and renames in the directory
 * count (a log file appended to beside it does not). A file missing for a moment
 * (mid-rename) is skipped.
 */
export class ConfigWatcher {
  readonly #file: string;
  readonly #onChange: () => void;
  readonly #log: Logger;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #last: string | undefined;
  #closed = false;

  constructor(file: string, onChange: () => void, log: Logger) {
    this.#file = file;
    this.#onChange = onChange;
    this.#log = log;
  }

  async start(): Promise<void> {
    try {
      this.#last = await readFile(this.#file, 'utf8');
    } catch {
      this.#last = undefined;
    }
    if (this.#closed) return;
    try {
      const name = basename(this.#file);
      // Writes to the file itself, and renames (an editor's save, a symlink swap); not a log file being appended to beside it.
      this.#watcher = watch(dirname(this.#file), { persistent: false }, (event, filename) => {
        if (event === 'rename' || filename === null || filename === name) this.#changed();
      });
      this.#watcher.on('error', (err) => {
        this.#log.warn({ file: this.#file, err: err.message }, 'config watch stopped');
        this.close();
      });
    } catch (err) {
      this.#log.warn({ file: this.#file, err: err instanceof Error ? err.message : String(err) }, 'cannot watch the config file');
      return;
    }
    this.#log.info({ file: basename(this.#file) }, 'watching the config file for changes');
  }

  #changed(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#check(), SETTLE_MS);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    this.#timer = undefined;
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch {
      return;
    }
    if (this.#closed || text === this.#last) return;
    this.#last = text;
    this.#onChange();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
