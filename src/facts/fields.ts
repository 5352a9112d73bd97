/**
 * Builders for condition fields (see `ConditionField`): each canonicaliser declares its fields with
 * these, and the policy JSON Schema, the loader and the documentation test read the declarations.
 */
import type { ConditionField } from './types.js';

/** A list of non-empty strings. */
export function stringList(description: string, opts: { allowList?: boolean } = {}): ConditionField {
  return {
    schema: { type: 'array', items: { type: 'string', minLength: 1 } },
    description,
    ...(opts.allowList ? { allowList: true } : {}),
  };
}

/** A boolean switch. */
export function flag(description: string): ConditionField {
  return { schema: { type: 'boolean' }, description };
}

/** A whole number in [min, max]. */
export function integer(description: string, min: number, max: number): ConditionField {
  return { schema: { type: 'integer', minimum: min, maximum: max }, description };
}

/** A list of whole numbers in [min, max]. */
export function integerList(description: string, min: number, max: number): ConditionField {
  return {
    schema: { type: 'array', items: { type: 'integer', minimum: min, maximum: max } },
    description,
  };
}
