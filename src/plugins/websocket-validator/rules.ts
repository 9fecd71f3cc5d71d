/**
 * The compiled rules of one direction and the per-message checks. Everything is
 * built once in init(); a message that passes allocates nothing here, and JSON is
 * parsed at most once (msg.json() caches it for every plugin).
 *
 * Order of the checks on a text message: depth (raw bytes, before anything can
 * recurse), JSON.parse, prototype keys, schema, discriminated schema, patterns.
 * Then the custom validator, for text and binary messages alike.
 */
import type { ValidateFunction } from 'ajv';
import type { ErrorCode } from '../../core/errors.js';
import { channels } from '../../core/events.js';
import type { Direction, Message, MessageVerdict, RequestContext } from '../../core/plugin.js';
import type { DirectionConfig, WebsocketValidatorConfig } from './config.js';
import { DEFAULT_MAX_DEPTH } from './config.js';
import type { Validator } from './custom.js';
import { UNRECOGNISED, describeThrow, fitBytes, interpret } from './custom.js';
import { depthExceeds, hasProtoKey } from './json-guards.js';
import { UnsafePatternError, compileSafePattern } from './regex-safety.js';
import type { SchemaCompiler } from './schemas.js';
import { failedAt } from './schemas.js';

export const PLUGIN = 'websocket-validator';

/** The label a rejection is counted by (`portcullis:message:rejected`). */
export type Reason = 'type' | 'json' | 'schema' | 'depth' | 'proto_key' | 'pattern' | 'validator' | 'validator_error';

/** Why a message was refused: what to count, and how to close when closing. */
interface Failure {
  readonly reason: Reason;
  readonly close: MessageVerdict;
}

function failure(reason: Reason, code: number, error: ErrorCode, closeReason: string, detail: string): Failure {
  return {
    reason,
    close: Object.freeze({ action: 'close', code, reason: fitBytes(closeReason, 123), error, detail: `${PLUGIN}: ${detail}` }),
  };
}

const TYPE_BINARY = failure('type', 1003, 'MESSAGE_TYPE_REFUSED', 'MESSAGE_TYPE_REFUSED: binary', 'binary messages are not allowed');
const TYPE_TEXT = failure('type', 1003, 'MESSAGE_TYPE_REFUSED', 'MESSAGE_TYPE_REFUSED: text', 'text messages are not allowed');
const NOT_JSON = failure('json', 1007, 'MESSAGE_INVALID', 'MESSAGE_INVALID: json', 'not JSON');
const TOO_DEEP = failure('depth', 1007, 'MESSAGE_INVALID', 'MESSAGE_INVALID: depth', 'nested deeper than max_depth');
const PROTO_KEY = failure('proto_key', 1007, 'MESSAGE_INVALID', 'MESSAGE_INVALID: proto_key', 'a __proto__, constructor or prototype key');
const NO_SCHEMA = failure('schema', 1007, 'MESSAGE_INVALID', 'MESSAGE_INVALID: schema', 'no schema for the discriminator value (missing or unknown)');
const STACK = failure('depth', 1007, 'MESSAGE_INVALID', 'MESSAGE_INVALID: depth', 'schema validation exceeded the stack (set max_depth)');
const NOT_ALLOWED = failure('pattern', 1008, 'MESSAGE_REJECTED', 'MESSAGE_REJECTED: pattern', 'does not match allow_pattern');
const TOO_LONG = failure('pattern', 1009, 'WS_MESSAGE_TOO_BIG', 'WS_MESSAGE_TOO_BIG: max_pattern_input', 'longer than max_pattern_input');

export interface Rules {
  readonly dir: Direction;
  readonly text: boolean;
  readonly binary: boolean;
  /** Some check looks at text messages (beyond their type). */
  readonly inspectText: boolean;
  readonly json: boolean;
  readonly maxDepth: number;
  readonly protoKeys: boolean;
  readonly schema: ValidateFunction | undefined;
  readonly discriminator: string;
  readonly schemas: ReadonlyMap<string, ValidateFunction> | undefined;
  readonly deny: readonly RegExp[];
  readonly denyFailures: readonly Failure[];
  readonly allow: RegExp | undefined;
  readonly patterns: boolean;
  readonly maxPatternInput: number;
  validator: Validator | undefined;
  /** The drop verdict (with the error_message reply) when on_invalid is drop. */
  readonly drop: MessageVerdict | undefined;
}

/** Compile one direction's config. Throws an Error naming the attribute at fault. */
export function compileRules(
  dir: Direction,
  c: DirectionConfig,
  top: WebsocketValidatorConfig,
  compiler: SchemaCompiler,
): Rules {
  const where = (attr: string): string => `${dir}.${attr}`;
  const hasSchema = c.schema !== undefined || c.schemas !== undefined;
  if (c.json === false && hasSchema) throw new Error(`${where('json')} is false, but a schema needs JSON`);
  const json = c.json ?? hasSchema;
  if (!c.text && (hasSchema || json || c.max_depth !== undefined || c.deny_patterns || c.allow_pattern)) {
    throw new Error(`${where('text')} is false, so its text checks (schema, json, max_depth, patterns) would never run`);
  }
  const schema = c.schema === undefined ? undefined : compiler.compile(c.schema, where('schema'));
  let schemas: Map<string, ValidateFunction> | undefined;
  if (c.schemas) {
    schemas = new Map();
    for (const [value, s] of Object.entries(c.schemas)) schemas.set(value, compiler.compile(s, where(`schemas.${value}`)));
  }
  const deny = (c.deny_patterns ?? []).map((p, i) => pattern(p, where(`deny_patterns[${i}]`)));
  const denyFailures = deny.map((_, i) =>
    failure('pattern', 1008, 'MESSAGE_REJECTED', 'MESSAGE_REJECTED: pattern', `matches deny_patterns[${i}]`),
  );
  const allow = c.allow_pattern === undefined ? undefined : pattern(c.allow_pattern, where('allow_pattern'));
  const maxDepth = c.max_depth ?? (json ? DEFAULT_MAX_DEPTH : 0);
  const onInvalid = c.on_invalid ?? top.on_invalid;
  const message = c.error_message ?? top.error_message;
  const reply = message === undefined ? undefined : typeof message === 'string' ? message : JSON.stringify(message);
  return {
    dir,
    text: c.text,
    binary: c.binary,
    inspectText: json || maxDepth > 0 || deny.length > 0 || allow !== undefined,
    json,
    maxDepth,
    protoKeys: json && c.reject_proto_keys,
    schema,
    discriminator: c.discriminator,
    schemas,
    deny,
    denyFailures,
    allow,
    patterns: deny.length > 0 || allow !== undefined,
    maxPatternInput: top.max_pattern_input,
    validator: undefined,
    drop: onInvalid === 'drop' ? Object.freeze(reply === undefined ? { action: 'drop' } : { action: 'drop', reply }) : undefined,
  };
}

function pattern(source: string, where: string): RegExp {
  try {
    return compileSafePattern(source).regex;
  } catch (err) {
    if (err instanceof UnsafePatternError) throw new Error(`${where}: pattern ${JSON.stringify(source)} ${err.message}`);
    throw err;
  }
}

/** Judge one message of this direction. Synchronous unless the custom validator returns a promise. */
export function judge(rules: Rules, msg: Message, ctx: RequestContext): MessageVerdict | Promise<MessageVerdict> {
  let failed: Failure | undefined;
  if (msg.binary) {
    if (!rules.binary) failed = TYPE_BINARY;
  } else if (!rules.text) {
    failed = TYPE_TEXT;
  } else if (rules.inspectText) {
    failed = checkText(rules, msg);
  }
  if (failed) return reject(rules, failed, ctx);
  if (rules.validator) return runValidator(rules, msg, ctx);
  return undefined;
}

function checkText(rules: Rules, msg: Message): Failure | undefined {
  const data = msg.data;
  if (rules.maxDepth > 0 && depthExceeds(data, rules.maxDepth)) return TOO_DEEP;
  if (rules.json) {
    let value: unknown;
    try {
      value = msg.json();
    } catch {
      return NOT_JSON;
    }
    if (rules.protoKeys && hasProtoKey(value, msg.text())) return PROTO_KEY;
    try {
      if (rules.schema && !rules.schema(value)) return schemaFailure('schema', rules.schema);
      if (rules.schemas) {
        const validate = pick(rules, value);
        if (!validate) return NO_SCHEMA;
        if (!validate(value)) return schemaFailure(`schemas.${discriminatorValue(rules, value)}`, validate);
      }
    } catch (err) {
      if (err instanceof RangeError) return STACK;
      throw err;
    }
  }
  if (rules.patterns) {
    if (data.length > rules.maxPatternInput) return TOO_LONG;
    const text = msg.text();
    for (let i = 0; i < rules.deny.length; i++) if (rules.deny[i]!.test(text)) return rules.denyFailures[i];
    if (rules.allow && !rules.allow.test(text)) return NOT_ALLOWED;
  }
  return undefined;
}

/** The schema for this message's discriminator value (a string, or a number by its JSON form). */
function pick(rules: Rules, value: unknown): ValidateFunction | undefined {
  const key = discriminatorValue(rules, value);
  return key === undefined ? undefined : rules.schemas!.get(key);
}

function discriminatorValue(rules: Rules, value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  if (!Object.prototype.hasOwnProperty.call(value, rules.discriminator)) return undefined;
  const v = (value as Record<string, unknown>)[rules.discriminator];
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

function schemaFailure(which: string, validate: ValidateFunction): Failure {
  // The schema path names the rule, from the config; the message's data and keys never appear.
  return failure('schema', 1007, 'MESSAGE_INVALID', 'MESSAGE_INVALID: schema', `${which} failed at ${failedAt(validate)}`);
}

function runValidator(rules: Rules, msg: Message, ctx: RequestContext): MessageVerdict | Promise<MessageVerdict> {
  let out: unknown;
  try {
    out = rules.validator!(msg, ctx);
  } catch (err) {
    return reject(rules, validatorError(`threw: ${describeThrow(err)}`), ctx);
  }
  if (typeof (out as PromiseLike<unknown> | null | undefined)?.then === 'function') {
    return Promise.resolve(out).then(
      (v) => settle(rules, v, ctx),
      (err: unknown) => reject(rules, validatorError(`rejected: ${describeThrow(err)}`), ctx),
    );
  }
  return settle(rules, out, ctx);
}

function settle(rules: Rules, v: unknown, ctx: RequestContext): MessageVerdict {
  const verdict = interpret(v);
  if (verdict === undefined) return undefined;
  if (verdict === UNRECOGNISED) return reject(rules, validatorError('returned a verdict that is not true, false, a string or { valid }'), ctx);
  const why = verdict.reason ?? 'validator';
  return reject(
    rules,
    failure('validator', verdict.closeCode ?? 1008, 'MESSAGE_REJECTED', `MESSAGE_REJECTED: ${why}`, `validator: ${why}`),
    ctx,
  );
}

function validatorError(what: string): Failure {
  return failure('validator_error', 1011, 'PLUGIN_ERROR', 'PLUGIN_ERROR', `validator ${what}`);
}

function reject(rules: Rules, f: Failure, ctx: RequestContext): MessageVerdict {
  const ch = channels.messageRejected;
  if (ch.hasSubscribers) ch.publish({ source: undefined, routeId: ctx.routeId, direction: rules.dir, reason: f.reason, plugin: PLUGIN });
  // A validator that fails is a bug, not bad data: always close (1011), even when dropping.
  if (rules.drop && f.reason !== 'validator_error') {
    // Drops are rare: a verdict of its own carries the cause to the log (never the body).
    const close = f.close as { error?: ErrorCode; detail?: string };
    return { ...(rules.drop as { action: 'drop'; reply?: string }), ...(close.error ? { error: close.error } : {}), ...(close.detail ? { detail: close.detail } : {}) };
  }
  return f.close;
}
