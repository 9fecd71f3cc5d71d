/** The public API. Re-exports only. */
export { Gateway, type GatewayOptions, type ListenerAddress } from './server/gateway.js';
export { Runtime } from './server/runtime.js';
export type { ReloadReport } from './server/reload.js';
export type { RevokeFilter, ProcessStatus } from './admin/index.js';
export { definePlugin, OPCODE } from './core/plugin.js';
export type {
  PluginDefinition,
  PluginContext,
  GatewayRedisSettings,
  RequestContext,
  Rejection,
  AccessResult,
  Message,
  MessageVerdict,
  FrameVerdict,
  Direction,
  Consumer,
  ConnectionSummary,
  Protocol,
  FrameLimits,
} from './core/plugin.js';
export { ERRORS, GatewayError, type ErrorCode, type ErrorSpec } from './core/errors.js';
export {
  LocalStore,
  RedisStore,
  StoreUnavailableError,
  openStore,
  type LimitStore,
  type Lease,
  type SlotResult,
  type BucketResult,
  type WindowResult,
  type TokenResult,
  type StoreRef,
  type StoreSpec,
} from './store/index.js';
export { PluginRegistry } from './core/registry.js';
export { createRegistry, builtinPlugins } from './plugins/index.js';
export { loadConfigFile, loadConfigText, ConfigError, type ConfigIssue } from './config/index.js';
export type { Config, RouteConfig, UpstreamConfig } from './config/types.js';
export { VERSION } from './version.js';
export { createLogger, type Logger } from './core/log.js';
