/**
 * The built-in plugins. Each lives in its own folder (`src/plugins/<name>/index.ts`)
 * and is listed here; user plugins are loaded from `gateway.custom_plugins`.
 */
import type { PluginDefinition } from '../core/plugin.js';
import { PluginRegistry } from '../core/registry.js';

export const builtinPlugins: readonly PluginDefinition[] = [
  // builtin plugins (one line each, keep sorted)
];

/** A registry holding every built-in plugin. */
export function createRegistry(): PluginRegistry {
  return new PluginRegistry(builtinPlugins);
}
