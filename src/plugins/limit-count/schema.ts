/** limit-count's config: APISIX's attributes and defaults, plus the shared store attributes. */
import { limitStoreProperties, type LimitStoreConfig } from '../shared/limit-store.js';

export interface LimitCountConfig extends LimitStoreConfig {
  count: number;
  /** Seconds. */
  time_window: number;
  window_type: 'fixed' | 'sliding';
  key_type: 'var' | 'var_combination' | 'constant';
  key: string;
  group?: string;
  show_limit_quota_header: boolean;
  rejected_code: number;
  rejected_msg?: string;
}

export const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['count', 'time_window'],
  properties: {
    count: { type: 'integer', exclusiveMinimum: 0, description: 'Requests (handshakes, streams) a key may open per window.' },
    time_window: { type: 'integer', exclusiveMinimum: 0, description: 'Length of the window, seconds.' },
    window_type: {
      type: 'string',
      enum: ['fixed', 'sliding'],
      default: 'fixed',
      description: 'fixed: a window starting at the key\'s first request; sliding: estimated over the last time_window seconds.',
    },
    key_type: {
      type: 'string',
      enum: ['var', 'var_combination', 'constant'],
      default: 'var',
      description: 'How `key` is read (constant: one counter for every client).',
    },
    key: {
      type: 'string',
      minLength: 1,
      default: 'remote_addr',
      description: 'A variable (remote_addr, consumer_name, route_id, http_<header>, arg_<name>, ...), a combination ("$consumer_name $remote_addr") or a constant.',
    },
    group: {
      type: 'string',
      minLength: 1,
      pattern: '^[A-Za-z0-9._-]+$',
      description: 'Routes with the same group share one counter per key (give them the same count and time_window).',
    },
    show_limit_quota_header: {
      type: 'boolean',
      default: true,
      description: 'Send X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (also on a 101 and on a refusal).',
    },
    rejected_code: { type: 'integer', minimum: 200, maximum: 599, default: 503, description: 'Status of a refusal.' },
    rejected_msg: { type: 'string', minLength: 1, description: 'Message of a refusal (default: the catalogue message).' },
    ...limitStoreProperties,
  },
} as const;
