/**
 * JSON Schemas for messages, compiled once at load with Ajv: draft 2020-12 unless
 * the schema's `$schema` names draft-07. Every `pattern` and `patternProperties`
 * key inside them goes through the same backtracking check as `deny_patterns`
 * (`regex-safety.ts`): a schema cannot smuggle in a catastrophic regex either.
 */
import { Ajv } from 'ajv';
import type { Options, ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { UnsafePatternError, checkSafe } from './regex-safety.js';

const DRAFT_2020 = new Set(['https://json-schema.org/draft/2020-12/schema', 'https://json-schema.org/draft/2020-12/schema#']);
const DRAFT_07 = new Set([
  'http://json-schema.org/draft-07/schema',
  'http://json-schema.org/draft-07/schema#',
  'https://json-schema.org/draft-07/schema',
  'https://json-schema.org/draft-07/schema#',
]);

/** Ajv's hook for the regexes of `pattern` and `patternProperties`: refuse the unsafe ones at compile time. */
function safeRegExp(pattern: string, flags: string): RegExp {
  const regex = new RegExp(pattern, flags);
  try {
    checkSafe(pattern, flags.includes('u') ? flags : `${flags}u`);
  } catch (err) {
    if (err instanceof UnsafePatternError) throw new Error(`pattern ${JSON.stringify(pattern)} ${err.message}`);
    throw err;
  }
  return regex;
}
safeRegExp.code = 'new RegExp';

const OPTIONS: Options = {
  // Unknown keywords and formats are errors: a typo must not silently validate nothing.
  strict: true,
  strictTypes: false,
  strictTuples: false,
  strictRequired: false,
  allowUnionTypes: true,
  allErrors: false,
  useDefaults: false,
  coerceTypes: false,
  removeAdditional: false,
  logger: false,
  code: { regExp: safeRegExp, optimize: true },
};

/** Compiles the schemas of one plugin instance; one Ajv per draft, made on first use. */
export class SchemaCompiler {
  #draft2020: Ajv2020 | undefined;
  #draft07: Ajv | undefined;

  /** Throws an Error naming `where` when the schema is invalid or unsupported. */
  compile(schema: unknown, where: string): ValidateFunction {
    const declared = typeof schema === 'object' && schema !== null ? (schema as { $schema?: unknown }).$schema : undefined;
    let ajv: Ajv | Ajv2020;
    if (declared === undefined || (typeof declared === 'string' && DRAFT_2020.has(declared))) {
      ajv = this.#draft2020 ??= new Ajv2020(OPTIONS);
    } else if (typeof declared === 'string' && DRAFT_07.has(declared)) {
      ajv = this.#draft07 ??= new Ajv(OPTIONS);
    } else {
      throw new Error(
        `${where}: unsupported $schema ${JSON.stringify(declared)} (supported: draft 2020-12, the default, and draft-07: "http://json-schema.org/draft-07/schema#")`,
      );
    }
    try {
      return ajv.compile(schema as object);
    } catch (err) {
      throw new Error(`${where}: invalid JSON Schema: ${(err as Error).message}`);
    }
  }
}

/** Where a failed validation failed, from the schema side only (never the message's data or keys). */
export function failedAt(validate: ValidateFunction): string {
  const e = validate.errors?.[0];
  return e ? `${e.schemaPath}` : 'the schema';
}
