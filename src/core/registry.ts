/**
 * The plugin registry: built-in plugins plus user plugins loaded from module
 * paths. Refuses a plugin that does not declare name, version, priority and
 * schema, as APISIX's loader does, and compiles each schema once.
 */
import { pathToFileURL } from 'node:url';
import type { ValidateFunction } from 'ajv';
import { createAjv } from './ajv.js';
import type { PluginDefinition } from './plugin.js';

const PHASES = ['init', 'rewrite', 'access', 'message', 'log'] as const;
const NAME_RE = /^[a-z][a-z0-9-]{0,63}$/;

export interface RegisteredPlugin {
  readonly def: PluginDefinition;
  readonly validate: ValidateFunction;
  /** Validates a consumer's credential config (auth plugins only). */
  readonly validateConsumer: ValidateFunction | undefined;
  /** Module path for user plugins; undefined for built-ins. */
  readonly source: string | undefined;
}

export class PluginRegistry {
  readonly #plugins = new Map<string, RegisteredPlugin>();
  readonly #ajv = createAjv();

  constructor(builtins: readonly PluginDefinition[] = []) {
    for (const def of builtins) this.register(def);
  }

  /** Throws TypeError when the definition is malformed or the name is taken. */
  register(def: PluginDefinition, source?: string): RegisteredPlugin {
    checkShape(def);
    if (this.#plugins.has(def.name)) {
      throw new TypeError(`plugin "${def.name}" is already registered`);
    }
    let validate: ValidateFunction;
    let validateConsumer: ValidateFunction | undefined;
    try {
      validate = this.#ajv.compile(def.schema);
      if (def.consumerSchema) validateConsumer = this.#ajv.compile(def.consumerSchema);
    } catch (err) {
      throw new TypeError(`plugin "${def.name}" has an invalid schema: ${(err as Error).message}`);
    }
    const entry: RegisteredPlugin = { def, validate, validateConsumer, source };
    this.#plugins.set(def.name, entry);
    return entry;
  }

  get(name: string): RegisteredPlugin | undefined {
    return this.#plugins.get(name);
  }

  names(): string[] {
    return [...this.#plugins.keys()].sort();
  }

  /**
   * Import a user plugin module (absolute path). The module exports the plugin as
   * its default export or as `plugin`. Throws TypeError with a readable message.
   */
  async loadModule(absPath: string): Promise<RegisteredPlugin> {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(absPath).href)) as Record<string, unknown>;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'ERR_MODULE_NOT_FOUND' ? 'module not found' : e.message;
      throw new TypeError(`cannot load plugin module ${absPath}: ${why}`);
    }
    const def = (mod.default ?? mod.plugin) as PluginDefinition | undefined;
    if (!def || typeof def !== 'object') {
      throw new TypeError(`plugin module ${absPath} must export a plugin as its default export or as "plugin"`);
    }
    const existing = this.#plugins.get(def.name);
    // Reloading a config imports the same module again: the same definition is not a conflict.
    if (existing && existing.def === def) return existing;
    if (existing) {
      throw new TypeError(`plugin module ${absPath} exports "${def.name}", a name already taken by ${existing.source ?? 'a built-in plugin'}`);
    }
    return this.register(def, absPath);
  }
}

function checkShape(def: PluginDefinition): void {
  if (!def || typeof def !== 'object') throw new TypeError('a plugin must be an object');
  if (typeof def.name !== 'string' || !NAME_RE.test(def.name)) {
    throw new TypeError(`plugin name must match ${NAME_RE} (found ${JSON.stringify(def.name)})`);
  }
  if (typeof def.version !== 'string' || def.version === '') {
    throw new TypeError(`plugin "${def.name}" must declare a version string`);
  }
  if (typeof def.priority !== 'number' || !Number.isFinite(def.priority)) {
    throw new TypeError(`plugin "${def.name}" must declare a numeric priority`);
  }
  if (!def.schema || typeof def.schema !== 'object') {
    throw new TypeError(`plugin "${def.name}" must declare a config schema`);
  }
  if (def.consumerSchema !== undefined && (def.consumerSchema === null || typeof def.consumerSchema !== 'object')) {
    throw new TypeError(`plugin "${def.name}": consumerSchema must be a JSON Schema object`);
  }
  for (const phase of PHASES) {
    const fn = (def as unknown as Record<string, unknown>)[phase];
    if (fn !== undefined && typeof fn !== 'function') {
      throw new TypeError(`plugin "${def.name}": ${phase} must be a function`);
    }
  }
  if (def.frameLimits !== undefined && typeof def.frameLimits !== 'function') {
    throw new TypeError(`plugin "${def.name}": frameLimits must be a function`);
  }
  if (!def.rewrite && !def.access && !def.message && !def.log) {
    throw new TypeError(`plugin "${def.name}" declares no phase (rewrite, access, message or log)`);
  }
}
