export { loadConfigFile, loadConfigText } from './load.js';
export type { LoadOptions } from './load.js';
export { ConfigError, formatIssue } from './errors.js';
export type { ConfigIssue } from './errors.js';
export { expandEnv } from './env.js';
export type { Env, EnvExpansion } from './env.js';
export { configSchema } from './schema.js';
export type * from './types.js';
