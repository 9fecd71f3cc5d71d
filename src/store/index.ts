/** Shared limit state: the interface, the local and Redis stores, and where plugins get one. Re-exports only. */
export type {
  BucketResult,
  Lease,
  LimitStore,
  MaybePromise,
  SlotResult,
  StoreLogger,
  StorePolicy,
  TokenResult,
  WindowResult,
} from './types.js';
export { StoreUnavailableError } from './types.js';
export { LocalStore } from './local.js';
export { RedisStore, OUTAGE_LOG_INTERVAL_MS, type RedisClient, type RedisPolicy, type RedisStoreOptions, type StoreErrorKind } from './redis.js';
export { openStore, openRedisStores, redactUrl, type RedisAddress, type StoreRef, type StoreSpec } from './registry.js';
