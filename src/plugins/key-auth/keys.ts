/**
 * The key-auth consumer index: every consumer's key by its SHA-256 digest, built
 * once per consumers array (all routes of one config share it). A presented key
 * is hashed, looked up by digest, and its digest compared in constant time with
 * the stored one, so neither a wrong key's length nor its content changes the
 * work done; the key itself is never kept in the index.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { perConsumers } from '../shared/consumer-index.js';
import type { ConsumerInfo } from '../../core/plugin.js';

export interface KeyOwner {
  readonly username: string;
  readonly group_id: string | undefined;
  /** Non-secret identifier sent upstream as X-Credential-Identifier. */
  readonly credentialId: string;
  readonly digest: Buffer;
}

export type KeyIndex = ReadonlyMap<string, KeyOwner>;

function digestOf(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/**
 * The index for a consumers array, built on first use. Throws (every time it is
 * asked, so every route using key-auth is refused) when two consumers share a key.
 */
export const keyIndex = perConsumers(build);

function build(consumers: readonly ConsumerInfo[]): KeyIndex | Error {
  const index = new Map<string, KeyOwner>();
  for (const c of consumers) {
    const key = c.plugins['key-auth']?.key;
    if (typeof key !== 'string' || key === '') continue;
    const digest = digestOf(key);
    const id = digest.toString('base64');
    const first = index.get(id);
    if (first) {
      // Never name the key: the message reaches the config error output.
      return new Error(
        `consumers "${first.username}" and "${c.username}" have the same key-auth key; every consumer needs its own key`,
      );
    }
    index.set(id, { username: c.username, group_id: c.group_id, credentialId: `${c.username}/key-auth`, digest });
  }
  return index;
}

/** The consumer owning `key`, or undefined. Constant time in the key's content and length. */
export function findOwner(index: KeyIndex, key: string): KeyOwner | undefined {
  const digest = digestOf(key);
  const owner = index.get(digest.toString('base64'));
  return owner && timingSafeEqual(digest, owner.digest) ? owner : undefined;
}
