/** limit-conn's config: APISIX's attributes and defaults, plus the shared store attributes. */
import { limitStoreProperties, type LimitStoreConfig } from '../shared/limit-store.js';

export interface LimitConnConfig extends LimitStoreConfig {
  conn: number;
  burst: number;
  /** Seconds. */
  default_conn_delay: number;
  only_use_default_delay: boolean;
  key_type: 'var' | 'var_combination';
  key: string;
  rejected_code: number;
  rejected_msg?: string;
  /** Seconds. */
  key_ttl: number;
}

export const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['conn', 'burst', 'default_conn_delay'],
  properties: {
    conn: { type: 'integer', exclusiveMinimum: 0, description: 'Connections (or requests) a key may hold at once without delay.' },
    burst: { type: 'integer', minimum: 0, description: 'Extra connections admitted after a delay; beyond conn + burst, refused.' },
    default_conn_delay: {
      type: 'number',
      exclusiveMinimum: 0,
      description: 'Seconds a connection over `conn` waits, per `conn` connections ahead of it.',
    },
    only_use_default_delay: {
      type: 'boolean',
      default: false,
      description: 'Always wait default_conn_delay steps, instead of adapting the step to the observed request time.',
    },
    key_type: { type: 'string', enum: ['var', 'var_combination'], default: 'var', description: 'How `key` is read.' },
    key: {
      type: 'string',
      minLength: 1,
      default: 'remote_addr',
      description: 'A variable (remote_addr, consumer_name, route_id, http_<header>, arg_<name>, ...) or a combination ("$consumer_name $remote_addr").',
    },
    rejected_code: { type: 'integer', minimum: 200, maximum: 599, default: 503, description: 'Status of a refusal.' },
    rejected_msg: { type: 'string', minLength: 1, description: 'Message of a refusal (default: the catalogue message).' },
    key_ttl: {
      type: 'integer',
      minimum: 1,
      default: 3600,
      description: 'Redis: seconds after which the slots of an instance that stopped refreshing them (crashed) free themselves.',
    },
    ...limitStoreProperties,
  },
} as const;
