/** The config schema of authz: a list of rules, first match wins. */

export type Scalar = string | number | boolean;

export interface ParamInClaim {
  param: string;
  claim: string;
}

export interface RuleConfig {
  description?: string;
  effect: 'allow' | 'deny';
  consumers?: string[];
  groups?: string[];
  methods?: string[];
  scopes?: string[];
  claims?: Record<string, Scalar | Scalar[]>;
  labels?: Record<string, string | string[]>;
  param_in_claim?: ParamInClaim | ParamInClaim[];
}

export interface AuthzConfig {
  rules: RuleConfig[];
  rejected_code: number;
  rejected_msg?: string;
}

export const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'PURGE'];

const stringList = { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } };
const scalar = { type: ['string', 'number', 'boolean'] };
const paramInClaim = {
  type: 'object',
  properties: {
    param: { type: 'string', minLength: 1, description: 'Name of a `:name` segment of the route uri (`*` for the tail).' },
    claim: { type: 'string', minLength: 1, description: 'Claim holding the admitted values (array, or space/comma separated string).' },
  },
  required: ['param', 'claim'],
  additionalProperties: false,
};

const ruleSchema = {
  type: 'object',
  properties: {
    description: { type: 'string', description: 'Named in the log when this rule decides.' },
    effect: { enum: ['allow', 'deny'], default: 'allow' },
    consumers: { ...stringList, description: 'The consumer username is one of these.' },
    groups: { ...stringList, description: 'The consumer group id is one of these.' },
    methods: { type: 'array', minItems: 1, items: { enum: METHODS }, description: 'The request method is one of these.' },
    scopes: { ...stringList, description: 'The token carries every one of these scopes.' },
    claims: {
      type: 'object',
      minProperties: 1,
      additionalProperties: { anyOf: [scalar, { type: 'array', minItems: 1, items: scalar }] },
      description: 'Claim name -> accepted value or list of accepted values.',
    },
    labels: {
      type: 'object',
      minProperties: 1,
      additionalProperties: { anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, items: { type: 'string' } }] },
      description: 'Consumer label -> accepted value or list of accepted values.',
    },
    param_in_claim: {
      anyOf: [paramInClaim, { type: 'array', minItems: 1, items: paramInClaim }],
      description: 'The route parameter is one of the values of the claim.',
    },
  },
  additionalProperties: false,
};

export const schema = {
  type: 'object',
  properties: {
    rules: { type: 'array', minItems: 1, items: ruleSchema, description: 'Evaluated in order; the first rule whose conditions all hold decides.' },
    rejected_code: { type: 'integer', minimum: 200, maximum: 599, default: 403 },
    rejected_msg: { type: 'string', minLength: 1 },
  },
  required: ['rules'],
  additionalProperties: false,
};
