/**
 * Custom validators: a user module exporting `(message, context) => verdict`,
 * imported once at load. The verdict contract:
 *
 *   true, undefined, null, { valid: true }      the message passes
 *   false                                      invalid, reason "validator"
 *   "a reason"                                  invalid, with that reason
 *   { valid: false, reason?, close_code? }      invalid, with a reason and the close code to use
 *
 * Any of these may come in a promise. A validator that throws (or rejects, or
 * returns anything else) is a bug in the validator: the connection is closed 1011.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Message, RequestContext } from '../../core/plugin.js';

export type Validator = (message: Message, context: RequestContext) => unknown;

/** Import the module at `file` (relative to `configDir`); its default export (or `validate`) is the validator. */
export async function loadValidator(file: string, configDir: string, where: string): Promise<Validator> {
  const abs = resolve(configDir, file);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ERR_MODULE_NOT_FOUND' ? 'module not found' : e.message;
    throw new Error(`${where}: cannot load validator ${abs}: ${why}`);
  }
  const fn = typeof mod.default === 'function' ? mod.default : mod.validate;
  if (typeof fn !== 'function') {
    throw new Error(`${where}: validator module ${abs} must export a function (default export, or "validate")`);
  }
  return fn as Validator;
}

export interface Invalid {
  /** The validator's reason, trimmed for a close frame; undefined when it gave none. */
  reason: string | undefined;
  /** The close code it asked for, when it is one a gateway may send. */
  closeCode: number | undefined;
}

/** A verdict the contract does not know: treated as a validator failure. */
export const UNRECOGNISED = Symbol('unrecognised verdict');

/** Interpret a (settled) verdict: undefined to pass, an Invalid, or UNRECOGNISED. */
export function interpret(v: unknown): Invalid | undefined | typeof UNRECOGNISED {
  if (v === true || v === undefined || v === null) return undefined;
  if (v === false) return { reason: undefined, closeCode: undefined };
  if (typeof v === 'string') return { reason: cleanReason(v), closeCode: undefined };
  if (typeof v === 'object' && typeof (v as { valid?: unknown }).valid === 'boolean') {
    const o = v as { valid: boolean; reason?: unknown; close_code?: unknown };
    if (o.valid) return undefined;
    return {
      reason: typeof o.reason === 'string' ? cleanReason(o.reason) : undefined,
      closeCode: sendable(o.close_code) ? o.close_code : undefined,
    };
  }
  return UNRECOGNISED;
}

/** Close codes an endpoint may send (RFC 6455 7.4): not 1004-1006, 1015, nor 1016-2999. */
function sendable(code: unknown): code is number {
  return (
    typeof code === 'number' &&
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999))
  );
}

/** One line, no control characters, short enough to leave room in a 123-byte close reason. */
function cleanReason(s: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  const line = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return line === '' ? undefined : line;
}

/** `text` cut to at most `max` UTF-8 bytes, on a character boundary. */
export function fitBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > max) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/** Where a validator's exception was thrown, without its message (which may quote the message being validated). */
export function describeThrow(err: unknown): string {
  if (!(err instanceof Error)) return `a thrown ${typeof err}`;
  const frame = err.stack?.split('\n').find((l) => l.trimStart().startsWith('at '));
  return frame ? `${err.name} ${frame.trim()}` : err.name;
}
