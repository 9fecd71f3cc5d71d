/**
 * The config loader: YAML text -> validated `Config`.
 *
 *   1. parse YAML keeping positions (duplicate keys are errors);
 *   2. turn the YAML tree into plain data ourselves, recording for every node its
 *      JSON pointer, display path and line:column, and expanding `${ENV}` in
 *      string values (after parsing, so a variable cannot change the structure);
 *   3. validate against the file schema (defaults applied); strings that came
 *      from the environment are converted where the schema wants a number or a
 *      boolean, so `port: ${PORT:-9080}` works;
 *   4. checks a schema cannot express: TLS files, CIDRs, paths, duplicates,
 *      references, custom plugin modules, plugin configs and plugin init();
 *   5. build the normalised `Config`.
 *
 * Every problem is collected, then thrown at once as one ConfigError; nothing
 * else ever escapes loadConfigFile / loadConfigText.
 */
import { readFile } from 'node:fs/promises';
import { createPrivateKey } from 'node:crypto';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import type { ValidateFunction } from 'ajv';
import { createAjv } from '../core/ajv.js';
import type { PluginRegistry } from '../core/registry.js';
import { coerceEnvString, expandEnv } from './env.js';
import type { Env } from './env.js';
import {
  ConfigError,
  ajvIssues,
  describeHidden,
  describeValue,
  escapePointer,
  suggest,
  unescapePointer,
} from './errors.js';
import type { ConfigIssue, FoundStyle, IssueContext } from './errors.js';
import { fixedSettingsChanged, deepEqual, sameConsumers } from './compare.js';
import { isLoopbackHost } from './net.js';
import { configSchema } from './schema.js';
import { checkHost, checkUri } from '../router/router.js';
import { checkCidr } from '../server/client-ip.js';
import type {
  AdminSettings,
  Config,
  ConsumerConfig,
  ConsumerGroup,
  GatewaySettings,
  GlobalRule,
  ListenConfig,
  MetricsSettings,
  PluginConfigs,
  PluginInstance,
  RouteConfig,
  SseSettings,
  UpstreamConfig,
  UpstreamNode,
  WebSocketSettings,
} from './types.js';
import type { ConsumerInfo, PluginContext, PluginDefinition } from '../core/plugin.js';

export interface LoadOptions {
  registry: PluginRegistry;
  /** Variables for `${NAME}`; default process.env. */
  env?: Record<string, string | undefined>;
  /**
   * The config running now, when loading its replacement (hot reload). A plugin
   * instance whose definition, scope, config and init context (config directory,
   * gateway.redis, and the consumers when its init() read them) are unchanged is
   * carried over, state included (limit counters survive), instead of running
   * init() again. Settings a reload cannot change are refused with their position.
   */
  previous?: Config;
}

/** What a plugin instance's init() was given, to decide whether a reload may carry it over. */
interface InitMeta {
  readonly scope: string;
  readonly dir: string;
  readonly redis: GatewaySettings['redis'];
  /** The consumers array, when init() read it. */
  consumers: readonly ConsumerInfo[] | undefined;
}

const initMeta = new WeakMap<PluginInstance, InitMeta>();

/** Every plugin instance of a config, each once (consumers also list their group's). */
export function configInstances(config: Config): Set<PluginInstance> {
  const all = new Set<PluginInstance>();
  for (const r of config.routes) for (const i of r.instances) all.add(i);
  for (const g of config.global_rules) for (const i of g.instances) all.add(i);
  for (const c of config.consumers) for (const i of c.instances) all.add(i);
  for (const g of config.consumer_groups) for (const i of g.instances) all.add(i);
  return all;
}

/**
 * For a config loaded without `previous` (or against an older config): put the
 * previous config's instances in place of the fresh ones they equal (definition,
 * scope, config and init context, as `previous` would have carried them over), so
 * their state survives. Mutates `next`'s instance lists; returns the displaced
 * fresh instances, which the caller disposes.
 */
export function adoptInstances(next: Config, previous: Config): PluginInstance[] {
  const old = new Map<string, PluginInstance>();
  for (const inst of configInstances(previous)) {
    const meta = initMeta.get(inst);
    if (meta) old.set(`${meta.scope}\n${inst.name}`, inst);
  }
  const swap = new Map<PluginInstance, PluginInstance>();
  for (const inst of configInstances(next)) {
    const m = initMeta.get(inst);
    const o = m ? old.get(`${m.scope}\n${inst.name}`) : undefined;
    const om = o ? initMeta.get(o) : undefined;
    if (!m || !o || !om || o === inst) continue;
    if (o.def !== inst.def || !deepEqual(o.config, inst.config) || om.dir !== m.dir || !deepEqual(om.redis, m.redis)) continue;
    const consumersSame = om.consumers === undefined ? m.consumers === undefined : m.consumers !== undefined && sameConsumers(om.consumers, m.consumers);
    if (consumersSame) swap.set(inst, o);
  }
  if (swap.size === 0) return [];
  const replace = (list: PluginInstance[]): void => {
    for (let i = 0; i < list.length; i++) list[i] = swap.get(list[i]!) ?? list[i]!;
  };
  for (const r of next.routes) replace(r.instances);
  for (const g of next.global_rules) replace(g.instances);
  for (const c of next.consumers) replace(c.instances);
  for (const g of next.consumer_groups) replace(g.instances);
  return [...swap.keys()];
}

/** Run each instance's dispose once; failures are reported, never thrown. */
export async function disposeInstances(instances: Iterable<PluginInstance>, fail: (inst: PluginInstance, err: unknown) => void): Promise<void> {
  const waits: Promise<void>[] = [];
  for (const inst of instances) {
    if (!inst.def.dispose) continue;
    try {
      const r = inst.def.dispose(inst.state);
      if (r) waits.push(r.catch((err: unknown) => fail(inst, err)));
    } catch (err) {
      fail(inst, err);
    }
  }
  await Promise.all(waits);
}

/** Read and load a config file. Throws ConfigError, and nothing else. */
export async function loadConfigFile(file: string, opts: LoadOptions): Promise<Config> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ file, path: '', message: `cannot read config file: ${fsReason(err)} (${abs})` }]);
  }
  return loadConfigText(text, file, opts);
}

/**
 * Load config text. `file` names the text in messages; relative paths in the
 * config resolve against its directory (the working directory for `<inline>`).
 * Throws ConfigError, and nothing else.
 */
export async function loadConfigText(text: string, file: string, opts: LoadOptions): Promise<Config> {
  try {
    return await new Loader(file, opts).load(text);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new ConfigError(file, [{ file, path: '', message: `internal error while loading the config: ${oneLine(why)}` }]);
  }
}

// ---------------------------------------------------------------------------

interface Pos {
  line: number;
  column: number;
}

interface NodeInfo extends Pos {
  /** Display path, e.g. `routes[2].plugins.limit-conn`. */
  path: string;
  /** Position of the mapping key, for entries of a mapping. */
  key?: Pos;
  /** Variables expanded into this string value. */
  env?: readonly string[];
}

type Obj = Record<string, unknown>;

const SECRET_RE = /key|secret|password|token|credential/i;
const MAX_NODES = 1_000_000;
const PLAIN_KEY_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const HOST_RE = /^(?:\*\.)?(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/;
const NODE_HOST_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const PARAM_RE = /^:[A-Za-z_][A-Za-z0-9_]*$/;

let fileValidator: ValidateFunction | undefined;

function validatorForFile(): ValidateFunction {
  fileValidator ??= createAjv().compile(configSchema);
  return fileValidator;
}

/** `gateway.redis.revoke_secret`, when set. */
function revokeSecret(raw: Obj): { revoke_secret?: string } {
  return typeof raw.revoke_secret === 'string' ? { revoke_secret: raw.revoke_secret } : {};
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function child(pointer: string, key: string | number): string {
  return `${pointer}/${escapePointer(String(key))}`;
}

function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (PLAIN_KEY_RE.test(key)) return path === '' ? key : `${path}.${key}`;
  return `${path}[${JSON.stringify(key)}]`;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    case 'ENOTDIR':
      return 'a parent is not a directory';
    default:
      return code ?? oneLine(err instanceof Error ? err.message : String(err));
  }
}

function sslReason(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  // OpenSSL messages look like `error:05800074:x509 certificate routines::key values mismatch`.
  const tail = msg.split('::').pop() ?? msg;
  return oneLine(tail);
}

function looksLikePem(s: string): boolean {
  return s.includes('-----BEGIN') || s.includes('\n');
}

function list(items: readonly string[]): string {
  return items.length ? items.join(', ') : '(none)';
}

class Loader implements IssueContext {
  readonly file: string;
  readonly #source: string;
  readonly #dir: string;
  readonly #env: Env;
  readonly #registry: PluginRegistry;
  #consumerInfos: readonly ConsumerInfo[] = [];
  readonly #previous: Config | undefined;
  /** Instances of the previous config by `scope` + name, candidates to carry over. */
  readonly #reusable = new Map<string, PluginInstance>();
  /** Instances init()ed by this load: disposed if the load fails. */
  readonly #created: PluginInstance[] = [];
  /** `gateway.redis`, for plugins' init(). */
  #redis: GatewaySettings['redis'];
  readonly #issues: ConfigIssue[] = [];
  readonly #nodes = new Map<string, NodeInfo>();
  /** Display paths whose value has an environment problem: other issues there are noise. */
  readonly #envTrouble = new Set<string>();
  readonly #envIssues = new Set<ConfigIssue>();
  #lines = new LineCounter();
  #doc: Document | undefined;
  #count = 0;

  constructor(file: string, opts: LoadOptions) {
    this.file = file;
    if (file === '<inline>') {
      this.#source = '<inline>';
      this.#dir = process.cwd();
    } else {
      this.#source = resolve(file);
      this.#dir = dirname(this.#source);
    }
    this.#env = opts.env ?? process.env;
    this.#registry = opts.registry;
    this.#previous = opts.previous;
    if (opts.previous) {
      for (const inst of configInstances(opts.previous)) {
        const meta = initMeta.get(inst);
        if (meta) this.#reusable.set(`${meta.scope}\n${inst.name}`, inst);
      }
    }
  }

  async load(text: string): Promise<Config> {
    try {
      return await this.#load(text);
    } catch (err) {
      // Whatever init() opened for a config that will never run (a store, a timer) is let go.
      await disposeInstances(this.#created, () => {});
      throw err;
    }
  }

  async #load(text: string): Promise<Config> {
    const root = this.#parse(text);
    // YAML errors stop here; environment issues are reported with everything else.
    if (root === undefined) this.#fail();
    if (!isObj(root)) {
      const found = root === null ? 'an empty value' : describeValue(root, 'type');
      this.#add('', 'a mapping with gateway, upstreams, routes, consumers, global_rules', found);
      throw new ConfigError(this.file, this.#issues);
    }
    // An empty section (`routes:` with every entry commented out) means the default.
    for (const k of Object.keys(root)) if (root[k] === null) delete root[k];
    for (const section of ['routes', 'consumers', 'consumer_groups', 'global_rules']) {
      const items = root[section];
      if (Array.isArray(items)) for (const item of items) if (isObj(item) && item.plugins === null) delete item.plugins;
    }

    this.#validate(validatorForFile(), root, '', configSchema);

    const gateway = await this.#gateway(root.gateway, '/gateway');
    const upstreams = await this.#upstreams(root.upstreams);
    // Consumers first: route plugins' init() sees them (auth plugins index their credentials).
    const groups = await this.#consumerGroups(root.consumer_groups);
    const consumers = await this.#consumers(root.consumers, groups);
    this.#consumerInfos = consumers.map(toConsumerInfo);
    const routes = await this.#routes(root.routes, upstreams, gateway);
    const globalRules = await this.#globalRules(root.global_rules);
    const admin = await this.#admin(root.admin, gateway);
    const metrics = await this.#metrics(root.metrics, gateway, admin);
    this.#fail();

    const config: Config = {
      source: this.#source,
      gateway: gateway!,
      upstreams: [...upstreams.values()].map((u) => u.upstream),
      routes,
      consumers,
      consumer_groups: [...groups.values()].map((g) => g.group),
      global_rules: globalRules,
      ...(admin ? { admin } : {}),
      metrics: metrics!,
    };
    if (this.#previous) {
      for (const f of fixedSettingsChanged(this.#previous, config)) this.#note(f.pointer, f.message);
      this.#fail();
    }
    return config;
  }

  // ---- issues ---------------------------------------------------------------

  locate(pointer: string, atKey = false): { line: number; column: number; path: string } {
    let p = pointer;
    const rest: string[] = [];
    let info = this.#nodes.get(p);
    while (!info && p !== '') {
      const cut = p.lastIndexOf('/');
      rest.unshift(unescapePointer(p.slice(cut + 1)));
      p = p.slice(0, cut);
      info = this.#nodes.get(p);
    }
    const base = info ?? { line: 1, column: 1, path: '' };
    let path = base.path;
    for (const seg of rest) path = childPath(path, /^\d+$/.test(seg) ? Number(seg) : seg);
    const pos = rest.length === 0 && atKey && base.key ? base.key : base;
    return { line: pos.line, column: pos.column, path };
  }

  describeFound(pointer: string, value: unknown, style: FoundStyle): string {
    if (typeof value === 'object' && value !== null) return describeValue(value, style);
    const env = this.#nodes.get(pointer)?.env;
    if (env && env.length) return describeHidden(value, `from environment variable ${env.join(', ')}; value not shown`);
    if (this.#isSecret(pointer) || (typeof value === 'string' && looksLikePem(value))) return describeHidden(value, 'hidden');
    return describeValue(value, style);
  }

  #isSecret(pointer: string): boolean {
    const segs = pointer.split('/').slice(1).map(unescapePointer);
    // A plugin's name (`key-auth`) is not a secret; keys inside its config may be.
    return segs.some((s, i) => SECRET_RE.test(s) && segs[i - 1] !== 'plugins');
  }

  #push(issue: ConfigIssue): ConfigIssue {
    this.#issues.push(issue);
    return issue;
  }

  /** `expected X, found Y` at a pointer. */
  #add(pointer: string, expected: string, found: string, message?: string, atKey = false): ConfigIssue {
    return this.#push({
      file: this.file,
      ...this.locate(pointer, atKey),
      message: message ?? `expected ${expected}, found ${found}`,
      expected,
      found,
    });
  }

  /** A free-form message at a pointer. */
  #note(pointer: string, message: string, atKey = false): ConfigIssue {
    return this.#push({ file: this.file, ...this.locate(pointer, atKey), message });
  }

  #fail(): void {
    if (this.#issues.length === 0) return;
    const issues = this.#issues.filter((i) => this.#envIssues.has(i) || !this.#envTrouble.has(i.path));
    throw new ConfigError(this.file, issues);
  }

  // ---- YAML -------------------------------------------------------------------

  #pos(node: unknown): Pos | undefined {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    if (!range) return undefined;
    const { line, col } = this.#lines.linePos(range[0]);
    return { line, column: col };
  }

  #parse(text: string): unknown {
    this.#lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: this.#lines, prettyErrors: false, uniqueKeys: true });
    this.#doc = doc;
    if (doc.errors.length > 0) {
      // After the first syntax error the rest are mostly its echoes: report that
      // one, and every duplicate key (those are independent of each other).
      const firstSyntax = doc.errors.find((e) => e.code !== 'DUPLICATE_KEY');
      for (const err of doc.errors.filter((e) => e.code === 'DUPLICATE_KEY' || e === firstSyntax)) {
        const offset = err.pos[0];
        const { line, col } = this.#lines.linePos(offset);
        const where = this.#pathAtOffset(doc.contents, offset);
        let message: string;
        if (err.code === 'DUPLICATE_KEY') {
          message = `duplicate key${where.key !== undefined ? ` "${where.key}"` : ''}: keys in a mapping must be unique`;
        } else if (err.code === 'MULTIPLE_DOCS') {
          message = 'YAML syntax error: the file holds more than one document (---); expected exactly one';
        } else {
          message = `YAML syntax error: ${oneLine(err.message)}`;
          const lineText = text.slice(this.#lines.lineStarts[line - 1] ?? 0).split('\n', 1)[0] ?? '';
          if (lineText.includes('${')) message += ' (inside { } or [ ], quote a value that holds ${...}: "${PORT}")';
        }
        // A broken tree gives unreliable paths: only a duplicate key gets one.
        this.#push({ file: this.file, line, column: col, path: err.code === 'DUPLICATE_KEY' ? where.path : '', message });
      }
      return undefined;
    }
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null && text.trim().replace(/^#.*$/gm, '').trim() === '')) {
      this.#push({
        file: this.file,
        line: 1,
        column: 1,
        path: '',
        message: 'the config file is empty (expected a mapping with gateway, upstreams, routes, consumers, global_rules)',
        expected: 'a mapping',
        found: 'an empty file',
      });
      return undefined;
    }
    try {
      return this.#walk(doc.contents, '', '', undefined, undefined, new Set());
    } catch (err) {
      if (err instanceof TooLarge) {
        this.#push({ file: this.file, line: err.pos?.line ?? 1, column: err.pos?.column ?? 1, path: err.path, message: err.message });
        return undefined;
      }
      throw err;
    }
  }

  /** Best-effort display path of the node at a source offset (for YAML errors). */
  #pathAtOffset(node: unknown, offset: number): { path: string; key?: string } {
    let path = '';
    let key: string | undefined;
    let cur: unknown = node;
    const inRange = (n: unknown): boolean => {
      const r = (n as { range?: [number, number, number] } | null)?.range;
      return !!r && offset >= r[0] && offset <= r[2];
    };
    for (let depth = 0; depth < 100 && cur; depth++) {
      if (isMap(cur)) {
        const pair = cur.items.find((p) => inRange(p.key) || inRange(p.value));
        if (!pair) break;
        const k = isScalar(pair.key) ? String(pair.key.value) : '?';
        path = childPath(path, k);
        if (inRange(pair.key)) {
          key = k;
          break;
        }
        cur = pair.value;
      } else if (isSeq(cur)) {
        const i = cur.items.findIndex((item) => inRange(item));
        if (i < 0) break;
        path = childPath(path, i);
        cur = cur.items[i];
      } else {
        break;
      }
    }
    return key === undefined ? { path } : { path, key };
  }

  /**
   * YAML node -> plain data, recording positions. Aliases are expanded into
   * fresh copies (so defaults applied to one use never show up in another);
   * positions inside an alias point at the anchored original.
   */
  #walk(node: unknown, pointer: string, path: string, keyPos: Pos | undefined, at: Pos | undefined, active: Set<unknown>): unknown {
    if (++this.#count > MAX_NODES) {
      throw new TooLarge(`the document expands to more than ${MAX_NODES} nodes (aliases?)`, path, at ?? this.#pos(node) ?? keyPos);
    }
    const own = at ?? this.#pos(node) ?? keyPos ?? { line: 1, column: 1 };
    const info: NodeInfo = { line: own.line, column: own.column, path };
    if (keyPos) info.key = keyPos;
    this.#nodes.set(pointer, info);

    if (node === null || node === undefined) return null;
    if (isAlias(node)) {
      const target = node.resolve(this.#doc!);
      if (!target) {
        this.#note(pointer, `unknown alias *${node.source} (no anchor &${node.source} before it)`);
        return null;
      }
      if (active.has(target)) {
        this.#note(pointer, `alias *${node.source} refers to a node that contains it`);
        return null;
      }
      return this.#walk(target, pointer, path, keyPos, own, active);
    }
    if (isScalar(node)) {
      const value = node.value;
      if (typeof value !== 'string') return value;
      return this.#expand(value, pointer, info);
    }
    if (isMap(node)) {
      active.add(node);
      const out: Obj = {};
      for (const pair of node.items) {
        let keyNode: unknown = pair.key;
        if (isAlias(keyNode)) keyNode = keyNode.resolve(this.#doc!);
        const kPos = this.#pos(pair.key) ?? own;
        if (!isScalar(keyNode)) {
          this.#push({ file: this.file, ...kPos, path, message: 'expected a plain key, found a complex (mapping or list) key' });
          continue;
        }
        const key = keyNode.value === null || keyNode.value === undefined ? '' : String(keyNode.value);
        const value = this.#walk(pair.value, child(pointer, key), childPath(path, key), kPos, undefined, active);
        // Plain assignment of "__proto__" would set the prototype.
        Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      }
      active.delete(node);
      return out;
    }
    if (isSeq(node)) {
      active.add(node);
      const out = node.items.map((item, i) => this.#walk(item, child(pointer, i), childPath(path, i), undefined, undefined, active));
      active.delete(node);
      return out;
    }
    return null;
  }

  #expand(value: string, pointer: string, info: NodeInfo): string {
    const r = expandEnv(value, this.#env);
    if (r.vars.length > 0) info.env = r.vars;
    if (r.malformed !== undefined) {
      const shown = this.#isSecret(pointer) ? '' : ` ${JSON.stringify(r.malformed)}`;
      const issue = this.#note(
        pointer,
        `malformed environment reference${shown}: expected \${NAME} or \${NAME:-default} (write $\${ for a literal \${)`,
      );
      issue.expected = '${NAME} or ${NAME:-default}';
      issue.found = 'a malformed reference';
      this.#envIssues.add(issue);
      this.#envTrouble.add(info.path);
    }
    for (const name of new Set(r.missing)) {
      const issue = this.#note(pointer, `environment variable ${name} is not set (give a default with \${${name}:-default})`);
      issue.expected = `environment variable ${name}`;
      issue.found = 'it is not set';
      this.#envIssues.add(issue);
      this.#envTrouble.add(info.path);
    }
    return r.value;
  }

  // ---- schema -------------------------------------------------------------------

  /**
   * Validate `data` (found at `pointer` in the file) against a compiled schema,
   * converting environment-sourced strings where a number or boolean is wanted.
   * Records issues; returns whether the data is valid.
   */
  #validate(validate: ValidateFunction, data: unknown, pointer: string, schema: unknown): boolean {
    if (validate(data)) return true;
    let converted = false;
    for (const e of validate.errors ?? []) {
      if (e.keyword !== 'type' || !this.#nodes.get(pointer + e.instancePath)?.env) continue;
      const types = String((e.params as { type: string }).type).split(',');
      const holder = this.#parentOf(data, e.instancePath);
      if (!holder) continue;
      const current = holder.obj[holder.key];
      if (typeof current !== 'string') continue;
      const value = coerceEnvString(current, types);
      if (value === undefined) continue;
      holder.obj[holder.key] = value;
      converted = true;
    }
    if (converted && validate(data)) return true;
    for (const issue of ajvIssues(validate.errors ?? [], data, pointer, schema, this)) this.#push(issue);
    return false;
  }

  #parentOf(data: unknown, instancePath: string): { obj: Record<string, unknown>; key: string } | undefined {
    const segs = instancePath.split('/').slice(1).map(unescapePointer);
    if (segs.length === 0) return undefined;
    let node: unknown = data;
    for (const seg of segs.slice(0, -1)) {
      if (Array.isArray(node) || isObj(node)) node = (node as Record<string, unknown>)[seg];
      else return undefined;
    }
    if (!Array.isArray(node) && !isObj(node)) return undefined;
    return { obj: node as Record<string, unknown>, key: segs[segs.length - 1]! };
  }

  // ---- gateway ------------------------------------------------------------------

  async #gateway(raw: unknown, pointer: string): Promise<GatewaySettings | undefined> {
    if (!isObj(raw)) return undefined;
    const listen: ListenConfig[] = [];
    const seen = new Map<string, number>();
    if (Array.isArray(raw.listen)) {
      for (const [i, item] of raw.listen.entries()) {
        if (!isObj(item)) continue;
        const p = child(child(pointer, 'listen'), i);
        const out: ListenConfig = { host: item.host as string, port: item.port as number };
        if (typeof item.host === 'string' && typeof item.port === 'number' && item.port !== 0) {
          const addr = `${item.host}:${item.port}`;
          const first = seen.get(addr);
          if (first !== undefined) {
            this.#add(p, 'a unique address', `${addr} again`, `duplicate listen address ${addr} (also gateway.listen[${first}])`);
          } else {
            seen.set(addr, i);
          }
        }
        if (isObj(item.tls)) {
          const tls = await this.#listenTls(item.tls, child(p, 'tls'));
          if (tls) out.tls = tls;
        }
        listen.push(out);
      }
    }

    const proxies: string[] = [];
    if (Array.isArray(raw.trusted_proxies)) {
      for (const [i, entry] of raw.trusted_proxies.entries()) {
        if (typeof entry !== 'string') continue;
        if (!isAddressOrCidr(entry) || checkCidr(entry) !== undefined) {
          const p = child(child(pointer, 'trusted_proxies'), i);
          this.#add(p, 'an IPv4/IPv6 address or CIDR such as 10.0.0.0/8', this.describeFound(p, entry, 'value'));
        }
        proxies.push(entry);
      }
    }

    const plugins: string[] = [];
    if (Array.isArray(raw.custom_plugins)) {
      for (const [i, entry] of raw.custom_plugins.entries()) {
        if (typeof entry !== 'string' || entry === '') continue;
        const abs = resolve(this.#dir, entry);
        try {
          await this.#registry.loadModule(abs);
          plugins.push(abs);
        } catch (err) {
          const why = oneLine(err instanceof Error ? err.message : String(err));
          this.#note(child(child(pointer, 'custom_plugins'), i), `cannot load custom plugin: ${why}`);
        }
      }
    }

    const redis = this.#gatewayRedis(raw.redis, child(pointer, 'redis'));
    this.#redis = redis;

    const log = isObj(raw.log) ? { ...raw.log } : {};
    if (typeof log.destination === 'string' && log.destination !== 'stdout' && log.destination !== 'stderr') {
      log.destination = resolve(this.#dir, log.destination);
    }
    if (isObj(log.access_log)) {
      const access = { ...log.access_log };
      if (typeof access.destination === 'string' && access.destination !== 'stdout' && access.destination !== 'stderr') {
        access.destination = resolve(this.#dir, access.destination);
      }
      log.access_log = access;
    }

    return {
      listen,
      trusted_proxies: proxies,
      real_ip_header: raw.real_ip_header as GatewaySettings['real_ip_header'],
      client_header_timeout: raw.client_header_timeout as number,
      max_header_size: raw.max_header_size as number,
      keepalive_timeout: raw.keepalive_timeout as number,
      handshake_timeout: raw.handshake_timeout as number,
      max_pending_handshakes_per_ip: raw.max_pending_handshakes_per_ip as number,
      shutdown_timeout: raw.shutdown_timeout as number,
      watch_config: raw.watch_config as boolean,
      workers: raw.workers as GatewaySettings['workers'],
      websocket: { ...(raw.websocket as WebSocketSettings) },
      sse: { ...(raw.sse as SseSettings) },
      log: log as unknown as GatewaySettings['log'],
      custom_plugins: plugins,
      ...(redis ? { redis } : {}),
    };
  }

  // ---- admin and metrics ----------------------------------------------------------

  /** One more listener (admin, metrics): TLS files read, and its address distinct from the gateway's. */
  async #extraListener(raw: Obj, pointer: string, taken: ReadonlyMap<string, string>): Promise<ListenConfig> {
    const out: ListenConfig = { host: raw.host as string, port: raw.port as number };
    if (typeof out.host === 'string' && typeof out.port === 'number' && out.port !== 0) {
      const other = taken.get(`${out.host}:${out.port}`);
      if (other) this.#add(child(pointer, 'port'), 'a port no other listener uses', `${out.host}:${out.port}, also ${other}`);
    }
    if (isObj(raw.tls)) {
      const tls = await this.#listenTls(raw.tls, child(pointer, 'tls'));
      if (tls) out.tls = tls;
    }
    return out;
  }

  #takenAddresses(gateway: GatewaySettings | undefined): Map<string, string> {
    const taken = new Map<string, string>();
    for (const [i, l] of (gateway?.listen ?? []).entries()) if (l.port !== 0) taken.set(`${l.host}:${l.port}`, `gateway.listen[${i}]`);
    return taken;
  }

  async #admin(raw: unknown, gateway: GatewaySettings | undefined): Promise<AdminSettings | undefined> {
    if (!isObj(raw)) return undefined;
    const listen = await this.#extraListener(isObj(raw.listen) ? raw.listen : {}, '/admin/listen', this.#takenAddresses(gateway));
    const key = typeof raw.key === 'string' ? raw.key : undefined;
    if (key === undefined && typeof listen.host === 'string' && !isLoopbackHost(listen.host)) {
      this.#add(
        '/admin',
        'a `key` (X-API-KEY) for an admin API on a non-loopback address',
        `admin.listen.host ${listen.host} and no key`,
        `the admin API would listen on ${listen.host} without a key: set admin.key, or listen on 127.0.0.1`,
      );
    }
    return { listen, ...(key !== undefined ? { key } : {}) };
  }

  async #metrics(raw: unknown, gateway: GatewaySettings | undefined, admin: AdminSettings | undefined): Promise<MetricsSettings | undefined> {
    if (!isObj(raw)) return undefined;
    const taken = this.#takenAddresses(gateway);
    if (admin && admin.listen.port !== 0) taken.set(`${admin.listen.host}:${admin.listen.port}`, 'admin.listen');
    const listen = isObj(raw.listen) ? await this.#extraListener(raw.listen, '/metrics/listen', taken) : undefined;
    return {
      enabled: raw.enabled as boolean,
      consumer_label: raw.consumer_label as boolean,
      max_consumer_labels: raw.max_consumer_labels as number,
      ...(listen ? { listen } : {}),
    };
  }

  /**
   * `gateway.redis`: either `url` (redis:// or rediss:// with a host; its text is never
   * echoed: it may hold a password), or `sentinels` ("host:port" each) and `master_name`
   * with the master's credentials and database beside them.
   */
  #gatewayRedis(raw: unknown, pointer: string): GatewaySettings['redis'] {
    if (!isObj(raw)) return undefined;
    const hasUrl = raw.url !== undefined;
    const hasSentinels = raw.sentinels !== undefined;
    if (hasUrl === hasSentinels) {
      const found = hasUrl ? 'both url and sentinels' : 'neither url nor sentinels';
      this.#add(pointer, 'either `url`, or `sentinels` and `master_name`', found, undefined, true);
      return undefined;
    }
    if (hasSentinels) return this.#gatewayRedisSentinel(raw, pointer);
    const beside = ['master_name', 'username', 'password', 'database', 'sentinel_username', 'sentinel_password'].filter((k) => raw[k] !== undefined);
    for (const k of beside) {
      this.#note(child(pointer, k), `${k} goes with sentinels; with url, put credentials and the database in the URL (redis://user:password@host:6379/0)`, true);
    }
    if (typeof raw.url !== 'string' || beside.length > 0) return undefined;
    const p = child(pointer, 'url');
    let u: URL | undefined;
    try {
      u = new URL(raw.url);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'redis:' && u.protocol !== 'rediss:') || u.hostname === '') {
      this.#add(p, 'a URL such as redis://host:6379/0 or rediss://user:password@host:6380', 'something else (value not shown)');
      return undefined;
    }
    const db = u.pathname.replace(/^\//, '');
    if (db !== '' && !/^\d{1,5}$/.test(db)) {
      this.#add(p, 'a database number as the URL path (redis://host:6379/0)', `path "/${db.slice(0, 32)}"`);
      return undefined;
    }
    return { url: raw.url, timeout: raw.timeout as number, ...revokeSecret(raw) };
  }

  /** `gateway.redis` with `sentinels`: each "host:port", and a `master_name`. */
  #gatewayRedisSentinel(raw: Obj, pointer: string): GatewaySettings['redis'] {
    if (!Array.isArray(raw.sentinels)) return undefined; // the schema said so
    const sentinels: { host: string; port: number }[] = [];
    for (const [i, entry] of raw.sentinels.entries()) {
      if (typeof entry !== 'string') continue; // the schema said so
      const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(entry);
      const port = m ? Number(m[3]) : 0;
      if (!m || port < 1 || port > 65535) {
        const p = child(child(pointer, 'sentinels'), i);
        this.#add(p, '"host:port" such as "10.0.0.5:26379" or "[::1]:26379"', this.describeFound(p, entry, 'value'));
        continue;
      }
      sentinels.push({ host: (m[1] ?? m[2])!, port });
    }
    if (typeof raw.master_name !== 'string') {
      if (raw.master_name === undefined) this.#add(pointer, '`master_name` with `sentinels` (the master group they monitor)', 'no master_name', undefined, true);
      return undefined;
    }
    if (sentinels.length !== raw.sentinels.length) return undefined;
    const str = (k: string): string | undefined => (typeof raw[k] === 'string' ? (raw[k] as string) : undefined);
    const username = str('username');
    const password = str('password');
    const sentinelUsername = str('sentinel_username');
    const sentinelPassword = str('sentinel_password');
    return {
      sentinels,
      master_name: raw.master_name,
      database: typeof raw.database === 'number' ? raw.database : 0,
      timeout: raw.timeout as number,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(sentinelUsername !== undefined ? { sentinel_username: sentinelUsername } : {}),
      ...(sentinelPassword !== undefined ? { sentinel_password: sentinelPassword } : {}),
      ...revokeSecret(raw),
    };
  }

  /** Read a file named in the config; records an issue and returns undefined when it cannot. */
  async #readConfigFile(value: unknown, pointer: string, what: string): Promise<{ path: string; data: Buffer } | undefined> {
    if (typeof value !== 'string' || value === '') return undefined;
    if (looksLikePem(value)) {
      this.#add(pointer, `the path of a ${what} file`, 'inline PEM data (hidden)');
      return undefined;
    }
    const path = resolve(this.#dir, value);
    try {
      return { path, data: await readFile(path) };
    } catch (err) {
      this.#add(pointer, `a readable ${what} file`, fsReason(err), `cannot read ${what} file: ${fsReason(err)} (${path})`);
      return undefined;
    }
  }

  async #listenTls(raw: Obj, pointer: string): Promise<ListenConfig['tls']> {
    const cert = await this.#readConfigFile(raw.cert, child(pointer, 'cert'), 'TLS certificate');
    const key = await this.#readConfigFile(raw.key, child(pointer, 'key'), 'TLS key');
    if (!cert || !key) return undefined;
    try {
      createSecureContext({ cert: cert.data });
    } catch (err) {
      this.#add(child(pointer, 'cert'), 'a PEM certificate', `a file OpenSSL cannot use (${sslReason(err)})`);
      return undefined;
    }
    try {
      createPrivateKey(key.data);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const found = code === 'ERR_MISSING_PASSPHRASE' ? 'an encrypted key (passphrases are not supported)' : `a file that is not a private key (${sslReason(err)})`;
      this.#add(child(pointer, 'key'), 'an unencrypted PEM private key', found);
      return undefined;
    }
    try {
      createSecureContext({ cert: cert.data, key: key.data });
    } catch (err) {
      this.#add(
        child(pointer, 'key'),
        'the private key of the certificate',
        `a key that does not match it (${sslReason(err)})`,
        `the TLS key does not match the certificate ${cert.path} (${sslReason(err)})`,
      );
      return undefined;
    }
    return { cert: cert.path, key: key.path, certPem: cert.data, keyPem: key.data };
  }

  // ---- upstreams ----------------------------------------------------------------

  async #upstreams(raw: unknown): Promise<Map<string, { upstream: UpstreamConfig; index: number }>> {
    const out = new Map<string, { upstream: UpstreamConfig; index: number }>();
    if (!Array.isArray(raw)) return out;
    const seen = new Map<string, number>();
    for (const [i, item] of raw.entries()) {
      if (!isObj(item)) continue;
      const p = child('/upstreams', i);
      const id = item.id === undefined ? undefined : String(item.id);
      if (id !== undefined) {
        const first = seen.get(id);
        if (first !== undefined) {
          this.#duplicate(child(p, 'id'), 'upstream id', id, child('/upstreams', first));
        } else {
          seen.set(id, i);
        }
      }
      const upstream = await this.#upstream(item, p, id ?? `upstreams[${i}]`);
      if (upstream && id !== undefined && !out.has(id)) out.set(id, { upstream, index: i });
    }
    return out;
  }

  #duplicate(pointer: string, what: string, id: string, firstPointer: string): void {
    const first = this.locate(firstPointer);
    this.#add(
      pointer,
      `a unique ${what}`,
      `"${id}" again`,
      `duplicate ${what} "${id}" (first defined at ${first.path}, line ${first.line})`,
    );
  }

  async #upstream(raw: Obj, pointer: string, id: string): Promise<UpstreamConfig | undefined> {
    const scheme = raw.scheme === 'https' ? 'https' : 'http';
    const nodes: UpstreamNode[] = [];
    const np = child(pointer, 'nodes');
    if (isObj(raw.nodes)) {
      for (const [key, weight] of Object.entries(raw.nodes)) {
        const parsed = parseHostPort(key, scheme);
        if (!parsed) {
          this.#add(child(np, key), 'a node as "host:port" (IPv6 as "[::1]:80")', JSON.stringify(key), undefined, true);
          continue;
        }
        nodes.push({ ...parsed, weight: weight as number });
      }
    } else if (Array.isArray(raw.nodes)) {
      for (const [i, item] of raw.nodes.entries()) {
        if (!isObj(item) || typeof item.host !== 'string') continue;
        const host = item.host.startsWith('[') && item.host.endsWith(']') ? item.host.slice(1, -1) : item.host;
        if (!isNodeHost(host)) {
          const hp = child(child(np, i), 'host');
          this.#add(hp, 'a host name or IP address', this.describeFound(hp, item.host, 'value'));
          continue;
        }
        nodes.push({ host, port: item.port as number, weight: typeof item.weight === 'number' ? item.weight : 1 });
      }
    }
    if (nodes.length > 0 && nodes.every((n) => n.weight === 0)) {
      this.#add(np, 'at least one node with a weight above 0', 'every node at weight 0');
    }
    if (raw.pass_host === 'rewrite' && raw.upstream_host === undefined) {
      this.#add(pointer, 'key "upstream_host"', 'no such key', 'missing required key "upstream_host" (required when pass_host is "rewrite")');
    }
    const tlsRaw = isObj(raw.tls) ? raw.tls : {};
    const tls: UpstreamConfig['tls'] = { verify: tlsRaw.verify !== false };
    if (typeof tlsRaw.ca === 'string') {
      const cap = child(child(pointer, 'tls'), 'ca');
      const ca = await this.#readConfigFile(tlsRaw.ca, cap, 'CA');
      if (ca) {
        try {
          createSecureContext({ ca: ca.data });
          tls.ca = ca.path;
          tls.caPem = ca.data;
        } catch (err) {
          this.#add(cap, 'a PEM CA bundle', `a file OpenSSL cannot use (${sslReason(err)})`);
        }
      }
    }
    if (typeof tlsRaw.servername === 'string') tls.servername = tlsRaw.servername;

    const upstream: UpstreamConfig = {
      id,
      nodes,
      type: 'roundrobin',
      scheme,
      timeout: { ...(raw.timeout as UpstreamConfig['timeout']) },
      pass_host: raw.pass_host as UpstreamConfig['pass_host'],
      keepalive_pool: { ...(raw.keepalive_pool as UpstreamConfig['keepalive_pool']) },
      tls,
    };
    if (typeof raw.upstream_host === 'string') upstream.upstream_host = raw.upstream_host;
    return upstream;
  }

  // ---- routes -------------------------------------------------------------------

  async #routes(
    raw: unknown,
    upstreams: Map<string, { upstream: UpstreamConfig; index: number }>,
    gateway: GatewaySettings | undefined,
  ): Promise<RouteConfig[]> {
    const out: RouteConfig[] = [];
    if (!Array.isArray(raw)) return out;
    const seen = new Map<string, number>();
    const inlineIds = new Map<string, number>();
    for (const [i, r] of raw.entries()) {
      if (!isObj(r)) continue;
      const p = child('/routes', i);
      const id = r.id === undefined ? `routes[${i}]` : String(r.id);
      if (r.id !== undefined) {
        const first = seen.get(id);
        if (first !== undefined) this.#duplicate(child(p, 'id'), 'route id', id, child('/routes', first));
        else seen.set(id, i);
      }

      const uris = this.#oneOrMany(r, p, 'uri', 'uris', true)
        .map(([value, vp]) => {
          const problem = uriProblem(value);
          if (problem) this.#add(vp, problem, this.describeFound(vp, value, 'value'));
          else {
            // The router's own check, so that `validate` refuses exactly what the router would.
            const routerProblem = checkUri(value);
            if (routerProblem) this.#note(vp, routerProblem);
          }
          return value;
        });
      const hosts = this.#oneOrMany(r, p, 'host', 'hosts', false).map(([value, vp]) => {
        const host = value.toLowerCase();
        if (!isRouteHost(host)) this.#add(vp, 'a host name such as example.com or *.example.com', this.describeFound(vp, value, 'value'));
        else {
          const routerProblem = checkHost(host);
          if (routerProblem) this.#note(vp, routerProblem);
        }
        return host;
      });

      let upstream: UpstreamConfig | undefined;
      const hasId = r.upstream_id !== undefined;
      const hasInline = r.upstream !== undefined;
      if (hasId && hasInline) {
        this.#note(child(p, 'upstream'), 'give either "upstream_id" or "upstream", not both', true);
      } else if (!hasId && !hasInline) {
        this.#add(p, 'key "upstream_id" or "upstream"', 'neither', 'missing required key "upstream_id" (or an inline "upstream")');
      } else if (hasId) {
        const ref = String(r.upstream_id);
        upstream = upstreams.get(ref)?.upstream;
        if (!upstream && (typeof r.upstream_id === 'string' || typeof r.upstream_id === 'number')) {
          const known = [...upstreams.keys()];
          const hint = suggest(ref, known);
          const up = child(p, 'upstream_id');
          this.#add(
            up,
            `one of the upstream ids: ${list(known)}`,
            `"${ref}"`,
            `unknown upstream id "${ref}" (known upstream ids: ${list(known)})${hint ? `; did you mean "${hint}"?` : ''}`,
          );
        }
      } else if (isObj(r.upstream)) {
        const up = child(p, 'upstream');
        const inlineId = r.upstream.id === undefined ? `route:${id}` : String(r.upstream.id);
        if (r.upstream.id !== undefined) {
          const clash = upstreams.get(inlineId);
          const firstInline = inlineIds.get(inlineId);
          if (clash) this.#duplicate(child(up, 'id'), 'upstream id', inlineId, child('/upstreams', clash.index));
          else if (firstInline !== undefined) this.#duplicate(child(up, 'id'), 'upstream id', inlineId, child(child('/routes', firstInline), 'upstream'));
          else inlineIds.set(inlineId, i);
        }
        upstream = await this.#upstream(r.upstream, up, inlineId);
      }

      const plugins = await this.#plugins(r.plugins, child(p, 'plugins'), true, `route:${id}`);
      const route: RouteConfig = {
        id,
        uris,
        hosts,
        methods: Array.isArray(r.methods) ? (r.methods as string[]) : [],
        priority: r.priority as number,
        enable_websocket: r.enable_websocket as boolean,
        upstream: upstream!,
        plugins: plugins.configs,
        instances: plugins.instances,
        websocket: { ...gateway?.websocket, ...(isObj(r.websocket) ? r.websocket : {}) } as WebSocketSettings,
        sse: { ...gateway?.sse, ...(isObj(r.sse) ? r.sse : {}) } as SseSettings,
      };
      out.push(route);
    }
    return out;
  }

  /** `uri` xor `uris` (or `host` xor `hosts`): the string values with their pointers. */
  #oneOrMany(r: Obj, p: string, one: string, many: string, required: boolean): Array<[string, string]> {
    const hasOne = r[one] !== undefined;
    const hasMany = r[many] !== undefined;
    if (hasOne && hasMany) {
      this.#note(child(p, many), `give either "${one}" or "${many}", not both`, true);
      return [];
    }
    if (!hasOne && !hasMany) {
      if (required) this.#add(p, `key "${one}" or "${many}"`, 'neither', `missing required key "${one}" (or "${many}")`);
      return [];
    }
    if (hasOne) return typeof r[one] === 'string' ? [[r[one] as string, child(p, one)]] : [];
    const items = Array.isArray(r[many]) ? (r[many] as unknown[]) : [];
    const out: Array<[string, string]> = [];
    for (const [i, v] of items.entries()) if (typeof v === 'string') out.push([v, child(child(p, many), i)]);
    return out;
  }

  // ---- plugins ------------------------------------------------------------------

  /**
   * Check each plugin config against its plugin's schema, on a deep copy so that
   * defaults applied for one route never show up in another; then init() it.
   */
  /**
   * Validate a `plugins` mapping. On routes and global rules every plugin is
   * instantiated. On consumers and groups, an auth plugin's entry is a credential
   * (validated against its consumerSchema, not instantiated); other plugins are
   * instantiated and later override the route's plugin of the same name.
   */
  async #plugins(
    raw: unknown,
    pointer: string,
    init: boolean,
    scope: string,
    onConsumer = false,
  ): Promise<{ configs: PluginConfigs; instances: PluginInstance[] }> {
    const configs: PluginConfigs = {};
    const instances: PluginInstance[] = [];
    if (!isObj(raw)) return { configs, instances };
    for (const [name, value] of Object.entries(raw)) {
      const p = child(pointer, name);
      const entry = this.#registry.get(name);
      if (!entry) {
        const known = this.#registry.names();
        const hint = suggest(name, known);
        this.#add(
          p,
          `one of the plugins: ${list(known)}`,
          `"${name}"`,
          `unknown plugin "${name}" (known plugins: ${list(known)})${hint ? `; did you mean "${hint}"?` : ''}`,
          true,
        );
        continue;
      }
      // `plugin-name:` with no value enables the plugin with its defaults.
      const config: unknown = value === null ? {} : structuredClone(value);
      if (!isObj(config)) {
        this.#add(p, `a mapping (the config of plugin "${name}")`, this.describeFound(p, value, 'type'));
        continue;
      }
      const credential = onConsumer && entry.validateConsumer !== undefined;
      if (credential) {
        if (!this.#validate(entry.validateConsumer!, config, p, entry.def.consumerSchema!)) continue;
        configs[name] = config;
        continue;
      }
      if (!this.#validate(entry.validate, config, p, entry.def.schema)) continue;
      configs[name] = config;
      if (!init) {
        instances.push({ name, def: entry.def, config, state: config });
        continue;
      }
      const carried = this.#carryOver(scope, name, entry.def, config);
      if (carried) {
        instances.push(carried);
        continue;
      }
      const meta: InitMeta = { scope, dir: this.#dir, redis: this.#redis, consumers: undefined };
      let state: unknown = config;
      if (entry.def.init) {
        const consumers = this.#consumerInfos;
        const pctx: PluginContext = {
          configDir: this.#dir,
          scope,
          redis: this.#redis,
          // Noted when read: such an instance is carried over a reload only if the consumers are unchanged.
          get consumers() {
            meta.consumers = consumers;
            return consumers;
          },
        };
        try {
          state = entry.def.init(config, pctx);
          if (state && typeof (state as PromiseLike<unknown>).then === 'function') state = await state;
        } catch (err) {
          const why = oneLine(err instanceof Error ? err.message : String(err));
          this.#note(p, `plugin "${name}" refused this config: ${why}`);
          continue;
        }
      }
      const inst: PluginInstance = { name, def: entry.def, config, state };
      initMeta.set(inst, meta);
      this.#created.push(inst);
      instances.push(inst);
    }
    instances.sort((a, b) => b.def.priority - a.def.priority || a.name.localeCompare(b.name));
    return { configs, instances };
  }

  /**
   * The previous config's instance of plugin `name` at `scope`, when it may serve
   * this config unchanged: same definition and config, and init() would be given
   * the same context (directory, gateway.redis, and consumers if it read them).
   */
  #carryOver(scope: string, name: string, def: PluginDefinition, config: Record<string, unknown>): PluginInstance | undefined {
    const prev = this.#reusable.get(`${scope}\n${name}`);
    if (!prev || prev.def !== def || !deepEqual(prev.config, config)) return undefined;
    const meta = initMeta.get(prev);
    if (!meta || meta.dir !== this.#dir || !deepEqual(meta.redis, this.#redis)) return undefined;
    if (meta.consumers && !sameConsumers(meta.consumers, this.#consumerInfos)) return undefined;
    return prev;
  }

  // ---- consumers and global rules -----------------------------------------------

  async #consumerGroups(raw: unknown): Promise<Map<string, { group: ConsumerGroup; index: number }>> {
    const out = new Map<string, { group: ConsumerGroup; index: number }>();
    if (!Array.isArray(raw)) return out;
    for (const [i, g] of raw.entries()) {
      if (!isObj(g) || typeof g.id !== 'string') continue;
      const p = child('/consumer_groups', i);
      const first = out.get(g.id);
      if (first) {
        this.#duplicate(child(p, 'id'), 'consumer group id', g.id, child('/consumer_groups', first.index));
        continue;
      }
      const plugins = await this.#plugins(g.plugins, child(p, 'plugins'), true, `consumer_group:${g.id}`, true);
      // A credential identifies one consumer: on a group it would silently do nothing.
      for (const name of Object.keys(plugins.configs)) {
        if (this.#registry.get(name)?.validateConsumer) {
          this.#note(child(child(p, 'plugins'), name), `"${name}" is a credential and belongs on a consumer, not on a consumer group`, true);
        }
      }
      const group: ConsumerGroup = {
        id: g.id,
        ...(typeof g.desc === 'string' ? { desc: g.desc } : {}),
        ...(isObj(g.labels) ? { labels: g.labels as Record<string, string> } : {}),
        plugins: plugins.configs,
        instances: plugins.instances,
      };
      out.set(g.id, { group, index: i });
    }
    return out;
  }

  async #consumers(raw: unknown, groups: Map<string, { group: ConsumerGroup }>): Promise<ConsumerConfig[]> {
    const out: ConsumerConfig[] = [];
    if (!Array.isArray(raw)) return out;
    const seen = new Map<string, number>();
    for (const [i, c] of raw.entries()) {
      if (!isObj(c) || typeof c.username !== 'string') continue;
      const p = child('/consumers', i);
      const first = seen.get(c.username);
      if (first !== undefined) this.#duplicate(child(p, 'username'), 'consumer username', c.username, child('/consumers', first));
      else seen.set(c.username, i);
      let group: ConsumerGroup | undefined;
      if (typeof c.group_id === 'string') {
        group = groups.get(c.group_id)?.group;
        if (!group) {
          const known = [...groups.keys()];
          const hint = suggest(c.group_id, known);
          this.#add(
            child(p, 'group_id'),
            `one of the consumer group ids: ${list(known)}`,
            `"${c.group_id}"`,
            `unknown consumer group "${c.group_id}" (known consumer groups: ${list(known)})${hint ? `; did you mean "${hint}"?` : ''}`,
          );
        }
      }
      const plugins = await this.#plugins(c.plugins, child(p, 'plugins'), true, `consumer:${c.username}`, true);
      // The consumer's own plugin config wins over its group's.
      const instances = new Map<string, PluginInstance>();
      for (const inst of group?.instances ?? []) instances.set(inst.name, inst);
      for (const inst of plugins.instances) instances.set(inst.name, inst);
      out.push({
        username: c.username,
        ...(typeof c.group_id === 'string' ? { group_id: c.group_id } : {}),
        ...(typeof c.desc === 'string' ? { desc: c.desc } : {}),
        ...(isObj(c.labels) ? { labels: c.labels as Record<string, string> } : {}),
        plugins: plugins.configs,
        instances: [...instances.values()],
      });
    }
    return out;
  }

  async #globalRules(raw: unknown): Promise<GlobalRule[]> {
    const out: GlobalRule[] = [];
    if (!Array.isArray(raw)) return out;
    const seen = new Map<string, number>();
    for (const [i, g] of raw.entries()) {
      if (!isObj(g)) continue;
      const p = child('/global_rules', i);
      const id = String(g.id);
      if (g.id !== undefined) {
        const first = seen.get(id);
        if (first !== undefined) this.#duplicate(child(p, 'id'), 'global rule id', id, child('/global_rules', first));
        else seen.set(id, i);
      }
      const plugins = await this.#plugins(g.plugins, child(p, 'plugins'), true, `global_rule:${id}`);
      out.push({ id, plugins: plugins.configs, instances: plugins.instances });
    }
    return out;
  }
}

class TooLarge extends Error {
  constructor(
    message: string,
    readonly path: string,
    readonly pos: Pos | undefined,
  ) {
    super(message);
  }
}

// ---- value checks -----------------------------------------------------------------

/** What is wrong with a route path, as an `expected ...` phrase, or undefined. */
function uriProblem(uri: string): string | undefined {
  if (!uri.startsWith('/')) return 'a path starting with "/"';
  if (/[\s?#]/.test(uri)) return 'a path without spaces, "?" or "#"';
  const star = uri.indexOf('*');
  if (star >= 0 && star !== uri.length - 1) return 'a path with "*" only as its last character';
  const body = star >= 0 ? uri.slice(0, -1) : uri;
  for (const seg of body.split('/')) {
    if (seg.startsWith(':') && !PARAM_RE.test(seg)) return 'a path whose ":name" segments are made of letters, digits and "_"';
  }
  return undefined;
}

function isRouteHost(host: string): boolean {
  if (host.startsWith('[') && host.endsWith(']')) return isIP(host.slice(1, -1)) === 6;
  return host.length <= 253 && HOST_RE.test(host);
}

function isNodeHost(host: string): boolean {
  return isIP(host) !== 0 || (host.length <= 253 && NODE_HOST_RE.test(host));
}

/** `host:port`, `[v6]:port`, or a bare host (port from the scheme). */
function parseHostPort(s: string, scheme: 'http' | 'https'): { host: string; port: number } | undefined {
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
    if (isIP(host) !== 6) return undefined;
  } else {
    const colons = s.split(':').length - 1;
    if (colons > 1) return undefined;
    const cut = s.lastIndexOf(':');
    host = cut < 0 ? s : s.slice(0, cut);
    portText = cut < 0 ? undefined : s.slice(cut + 1);
    if (!isNodeHost(host)) return undefined;
  }
  if (portText === undefined) return { host, port: scheme === 'https' ? 443 : 80 };
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  return port >= 1 && port <= 65535 ? { host, port } : undefined;
}

function isAddressOrCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return isIP(s) !== 0;
  const family = isIP(s.slice(0, slash));
  const bits = s.slice(slash + 1);
  if (family === 0 || !/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

function toConsumerInfo(c: ConsumerConfig): ConsumerInfo {
  return Object.freeze({
    username: c.username,
    ...(c.group_id !== undefined ? { group_id: c.group_id } : {}),
    ...(c.desc !== undefined ? { desc: c.desc } : {}),
    ...(c.labels !== undefined ? { labels: c.labels } : {}),
    plugins: c.plugins,
  });
}
