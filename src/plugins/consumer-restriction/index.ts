/**
 * consumer-restriction (APISIX, priority 2400, access phase): admit or refuse by
 * who the consumer is (`consumer_name`), its group (`consumer_group_id`), or which
 * route is asked for (`route_id`, meant for the plugin set on a consumer or a
 * consumer group: "this consumer may use only these routes").
 *
 * Exactly one of `whitelist`, `blacklist`, `allowed_by_methods`. As in APISIX,
 * `allowed_by_methods` restricts the methods of the listed values only; a value
 * not listed there is not restricted by it.
 *
 * With no consumer identified, `consumer_name` and `consumer_group_id` answer 401
 * (APISIX's "Missing authentication or identity verification.").
 */
import { definePlugin } from '../../core/plugin.js';
import type { RequestContext, Rejection } from '../../core/plugin.js';
import { wwwAuthenticate } from '../shared/credentials.js';

type RestrictionType = 'consumer_name' | 'consumer_group_id' | 'route_id' | 'service_id';

export interface ConsumerRestrictionConfig {
  type: RestrictionType;
  whitelist?: string[];
  blacklist?: string[];
  allowed_by_methods?: { user: string; methods: string[] }[];
  rejected_code: number;
  rejected_msg?: string;
}

type Mode = 'whitelist' | 'blacklist' | 'methods';

interface State {
  type: Exclude<RestrictionType, 'service_id'>;
  mode: Mode;
  /** whitelist or blacklist values. */
  values: ReadonlySet<string>;
  /** allowed_by_methods: value -> allowed methods. */
  methods: ReadonlyMap<string, ReadonlySet<string>>;
  status: number;
  message: string;
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'PURGE'];
const stringList = { type: 'array', minItems: 1, items: { type: 'string' } };

export default definePlugin<ConsumerRestrictionConfig, State>({
  name: 'consumer-restriction',
  version: '1.0.0',
  priority: 2400,
  schema: {
    type: 'object',
    properties: {
      type: {
        enum: ['consumer_name', 'consumer_group_id', 'route_id', 'service_id'],
        default: 'consumer_name',
        description: 'What is judged: the consumer name, its group id, or the route id.',
      },
      whitelist: { ...stringList, description: 'Values admitted; every other value is refused.' },
      blacklist: { ...stringList, description: 'Values refused.' },
      allowed_by_methods: {
        type: 'array',
        minItems: 1,
        items: {
          type: 'object',
          properties: {
            user: { type: 'string', minLength: 1 },
            methods: { type: 'array', minItems: 1, items: { enum: METHODS } },
          },
          required: ['user', 'methods'],
          additionalProperties: false,
        },
        description: 'Methods allowed per value; a value not listed is not restricted.',
      },
      rejected_code: { type: 'integer', minimum: 200, maximum: 599, default: 403 },
      rejected_msg: { type: 'string', minLength: 1 },
    },
    additionalProperties: false,
  },
  init(config) {
    if (config.type === 'service_id') {
      throw new Error('type "service_id" is not supported: Portcullis has no services; restrict by route_id instead');
    }
    const given = (['whitelist', 'blacklist', 'allowed_by_methods'] as const).filter((k) => config[k] !== undefined);
    if (given.length !== 1) {
      throw new Error(
        given.length === 0
          ? 'set one of whitelist, blacklist or allowed_by_methods'
          : `set only one of whitelist, blacklist or allowed_by_methods (found ${given.join(' and ')})`,
      );
    }
    const methods = new Map<string, ReadonlySet<string>>();
    for (const { user, methods: m } of config.allowed_by_methods ?? []) {
      if (methods.has(user)) throw new Error(`allowed_by_methods: "${user}" is listed twice`);
      methods.set(user, new Set(m));
    }
    const mode: Mode = config.whitelist ? 'whitelist' : config.blacklist ? 'blacklist' : 'methods';
    return {
      type: config.type,
      mode,
      values: new Set(config.whitelist ?? config.blacklist ?? []),
      methods,
      status: config.rejected_code,
      message: config.rejected_msg ?? `The ${config.type} is forbidden.`,
    };
  },
  access(ctx, state) {
    const consumer = ctx.consumer;
    let value: string | undefined;
    switch (state.type) {
      case 'consumer_name':
        if (!consumer) return missing();
        value = consumer.username;
        break;
      case 'consumer_group_id':
        if (!consumer) return missing();
        value = consumer.group_id;
        if (value === undefined) return deny(state, `consumer ${consumer.username} has no consumer group`);
        break;
      case 'route_id':
        value = ctx.routeId;
        break;
    }
    switch (state.mode) {
      case 'whitelist':
        return state.values.has(value) ? undefined : deny(state, `${state.type} ${JSON.stringify(value)} is not in the whitelist`);
      case 'blacklist':
        return state.values.has(value) ? deny(state, `${state.type} ${JSON.stringify(value)} is in the blacklist`) : undefined;
      case 'methods':
        return methodAllowed(state, value, ctx) ? undefined : deny(state, `${state.type} ${JSON.stringify(value)} may not use ${ctx.method}`);
    }
  },
});

function methodAllowed(state: State, value: string, ctx: RequestContext): boolean {
  const allowed = state.methods.get(value);
  return allowed === undefined || allowed.has(ctx.method);
}

/** No consumer identified: 401, as APISIX answers. */
function missing(): Rejection {
  return {
    reject: 'AUTH_MISSING',
    message: 'Missing authentication or identity verification.',
    headers: wwwAuthenticate('Bearer'),
    detail: 'consumer-restriction: no consumer identified',
  };
}

function deny(state: State, detail: string): Rejection {
  return { reject: 'CONSUMER_DENIED', status: state.status, message: state.message, detail: `consumer-restriction: ${detail}` };
}
