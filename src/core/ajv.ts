/** One Ajv configuration for the config file and every plugin schema. */
import { Ajv } from 'ajv';

export function createAjv(): Ajv {
  return new Ajv({
    allErrors: true,
    useDefaults: true,
    strict: true,
    allowUnionTypes: true,
    // Unknown keys are errors: schemas set additionalProperties: false, and we never strip silently.
    removeAdditional: false,
    coerceTypes: false,
  });
}
