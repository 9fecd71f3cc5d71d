/**
 * Indexes that auth plugins build over the configured consumers (keys, users).
 * `init()` runs once per route, but every route of one config sees the same
 * consumers array: build the index once per array, and refuse the config (throw)
 * on every route when it is invalid (e.g. two consumers sharing a key).
 */
import type { ConsumerInfo } from '../../core/plugin.js';

export function perConsumers<T>(build: (consumers: readonly ConsumerInfo[]) => T | Error): (consumers: readonly ConsumerInfo[]) => T {
  const built = new WeakMap<readonly ConsumerInfo[], T | Error>();
  return (consumers) => {
    let index = built.get(consumers);
    if (index === undefined) {
      index = build(consumers);
      built.set(consumers, index);
    }
    if (index instanceof Error) throw index;
    return index;
  };
}

/** Consumers by username, built once per config. */
export const consumersByName = perConsumers(
  (consumers): ReadonlyMap<string, ConsumerInfo> => new Map(consumers.map((c) => [c.username, c])),
);
