/** limit-messages' config, plus the shared store attributes (used by scope key and both). */
import { limitStoreProperties, type LimitStoreConfig } from '../shared/limit-store.js';

export interface LimitMessagesConfig extends LimitStoreConfig {
  /** Messages per second. */
  rate: number;
  /** Messages allowed at once beyond `rate` (bucket capacity: rate + burst). */
  burst: number;
  bytes_per_second?: number;
  bytes_burst: number;
  scope: 'connection' | 'key' | 'both';
  direction: 'client' | 'upstream' | 'both';
  on_exceed: 'close' | 'drop';
  key_type: 'var' | 'var_combination';
  key: string;
}

export const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['rate'],
  properties: {
    rate: { type: 'number', exclusiveMinimum: 0, description: 'Messages per second (pings, pongs and empty messages included).' },
    burst: {
      type: 'number',
      minimum: 0,
      default: 0,
      description: 'Messages allowed at once beyond the rate: the bucket holds rate + burst (at least 1).',
    },
    bytes_per_second: { type: 'integer', exclusiveMinimum: 0, description: 'Payload bytes per second (optional).' },
    bytes_burst: {
      type: 'integer',
      minimum: 0,
      default: 0,
      description: 'Bytes allowed at once beyond bytes_per_second: the byte bucket holds bytes_per_second + bytes_burst.',
    },
    scope: {
      type: 'string',
      enum: ['connection', 'key', 'both'],
      default: 'connection',
      description: 'Count per WebSocket connection (in process), per key across all its connections (policy store), or both.',
    },
    direction: {
      type: 'string',
      enum: ['client', 'upstream', 'both'],
      default: 'client',
      description: 'Which messages count: from the client, from the upstream, or both (each direction its own bucket).',
    },
    on_exceed: {
      type: 'string',
      enum: ['close', 'drop'],
      default: 'close',
      description: 'close: close the sender with 1008 LIMIT_EXCEEDED; drop: discard the message.',
    },
    key_type: { type: 'string', enum: ['var', 'var_combination'], default: 'var', description: 'How `key` is read (scope key, both).' },
    key: {
      type: 'string',
      minLength: 1,
      default: 'remote_addr',
      description: 'A variable (remote_addr, consumer_name, http_<header>, ...) or a combination ("$consumer_name $remote_addr").',
    },
    ...limitStoreProperties,
  },
} as const;
