/** The config of websocket-validator: its types and its JSON Schema (draft-07, checked by the loader). */

export type OnInvalid = 'close' | 'drop';

export interface DirectionConfig {
  text: boolean;
  binary: boolean;
  json?: boolean;
  schema?: object | boolean;
  discriminator: string;
  schemas?: Record<string, object | boolean>;
  max_depth?: number;
  reject_proto_keys: boolean;
  deny_patterns?: string[];
  allow_pattern?: string;
  validator?: string;
  on_invalid?: OnInvalid;
  error_message?: unknown;
}

export interface WebsocketValidatorConfig {
  client?: DirectionConfig;
  upstream?: DirectionConfig;
  on_invalid: OnInvalid;
  error_message?: unknown;
  max_pattern_input: number;
}

/** Default nesting limit where JSON is parsed and max_depth is not set. */
export const DEFAULT_MAX_DEPTH = 64;

const jsonSchema = { type: ['object', 'boolean'], description: 'A JSON Schema (draft 2020-12 unless its $schema names draft-07).' };
const errorMessage = {
  type: ['string', 'number', 'boolean', 'object', 'array'],
  description: 'Sent to the sender (as a text message) when on_invalid is drop: a string as is, anything else as JSON.',
};
const onInvalid = { enum: ['close', 'drop'] };

const direction = {
  type: 'object',
  properties: {
    text: { type: 'boolean', default: true, description: 'Text messages are allowed (else: close 1003).' },
    binary: { type: 'boolean', default: true, description: 'Binary messages are allowed (else: close 1003).' },
    json: { type: 'boolean', description: 'Text messages must be JSON. Default: true when schema or schemas is set.' },
    schema: jsonSchema,
    discriminator: { type: 'string', minLength: 1, default: 'type', description: 'The field whose value picks the schema in schemas.' },
    schemas: { type: 'object', minProperties: 1, additionalProperties: jsonSchema, description: 'One JSON Schema per discriminator value.' },
    max_depth: { type: 'integer', minimum: 0, maximum: 100000, description: 'Deepest bracket nesting of a text message (0: no limit).' },
    reject_proto_keys: { type: 'boolean', default: true, description: 'Refuse __proto__, constructor and prototype keys in parsed JSON.' },
    deny_patterns: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 }, description: 'A text message matching any is refused.' },
    allow_pattern: { type: 'string', minLength: 1, description: 'A text message not matching it is refused.' },
    validator: { type: 'string', minLength: 1, description: 'A module exporting (message, context) => verdict, relative to the config file.' },
    on_invalid: onInvalid,
    error_message: errorMessage,
  },
  additionalProperties: false,
};

export const schema = {
  type: 'object',
  properties: {
    client: { ...direction, description: 'Messages from the client to the upstream.' },
    upstream: { ...direction, description: 'Messages from the upstream to the client.' },
    on_invalid: { ...onInvalid, default: 'close', description: 'close the connection, or drop the message and keep it.' },
    error_message: errorMessage,
    max_pattern_input: {
      type: 'integer',
      minimum: 1,
      maximum: 16 * 1024 * 1024,
      default: 65536,
      description: 'Longest text message (bytes) the patterns run on; a longer one is refused with 1009.',
    },
  },
  additionalProperties: false,
};
