/** limit-req's config: APISIX's attributes and defaults, plus the shared store attributes. */
import { limitStoreProperties, type LimitStoreConfig } from '../shared/limit-store.js';

export interface LimitReqConfig extends LimitStoreConfig {
  /** Requests (handshakes, streams) per second a key may open. */
  rate: number;
  /** Requests per second beyond `rate` admitted after a delay. */
  burst: number;
  nodelay: boolean;
  key_type: 'var' | 'var_combination';
  key: string;
  rejected_code: number;
  rejected_msg?: string;
}

export const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['rate', 'burst'],
  properties: {
    rate: { type: 'number', exclusiveMinimum: 0, description: 'Requests per second a key may open; the bucket drains at this rate.' },
    burst: {
      type: 'number',
      minimum: 0,
      description: 'Requests beyond the rate admitted after a delay (unless nodelay); beyond rate + burst, refused.',
    },
    nodelay: { type: 'boolean', default: false, description: 'Admit requests within the burst at once instead of delaying them.' },
    key_type: { type: 'string', enum: ['var', 'var_combination'], default: 'var', description: 'How `key` is read.' },
    key: {
      type: 'string',
      minLength: 1,
      default: 'remote_addr',
      description: 'A variable (remote_addr, consumer_name, route_id, http_<header>, arg_<name>, ...) or a combination ("$consumer_name $remote_addr").',
    },
    rejected_code: { type: 'integer', minimum: 200, maximum: 599, default: 503, description: 'Status of a refusal.' },
    rejected_msg: { type: 'string', minLength: 1, description: 'Message of a refusal (default: the catalogue message).' },
    ...limitStoreProperties,
  },
} as const;
