/**
 * Helpers shared by the canonicalisers: reading condition objects from policy YAML with precise,
 * field-keyed errors, and quoting user input in messages.
 */
import type { ConditionError, ConditionFields } from './types.js';

/** Longest piece of user input echoed back in a message; the rest is elided. */
const QUOTE_MAX = 120;

/** Quotes user input for a message: backticks, control characters escaped, long input elided. */
export function quote(input: string): string {
  const shown = input.length > QUOTE_MAX ? `${input.slice(0, QUOTE_MAX)}…` : input;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what must be made visible
  const visible = shown.replace(/[\u0000-\u001f\u007f-\u009f`]/g, (c) =>
    c === '`' ? "'" : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return `\`${visible}\``;
}

/** Names a raw JSON value's type for messages ("a number", "an array"). */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

/** Collects errors while reading one condition object. */
export class ConditionReader {
  readonly errors: ConditionError[] = [];
  readonly obj: Record<string, unknown>;

  constructor(condition: unknown, kind: string, fields: ConditionFields) {
    const allowed = Object.keys(fields);
    if (condition === null || typeof condition !== 'object' || Array.isArray(condition)) {
      this.obj = {};
      this.errors.push({
        field: '',
        message: `a ${kind} condition must be a map, got ${describeType(condition)}`,
      });
      return;
    }
    this.obj = condition as Record<string, unknown>;
    for (const key of Object.keys(this.obj)) {
      // `arg`/`args` choose which argument is checked; the engine reads them, not the canonicaliser.
      if (key === 'arg' || key === 'args') continue;
      if (!allowed.includes(key)) {
        this.errors.push({
          field: key,
          message: `unknown ${kind} field ${quote(key)}; expected one of ${allowed.join(', ')}`,
        });
      }
    }
  }

  error(field: string, message: string): void {
    this.errors.push({ field, message });
  }

  /** An optional list of strings; each element is passed to `each`, which returns an error or a value. */
  strings<T>(
    field: string,
    each: (s: string) => { ok: true; value: T } | { ok: false; error: string },
  ): T[] | undefined {
    const v = this.obj[field];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) {
      this.error(field, `\`${field}\` must be a list of strings, got ${describeType(v)}`);
      return undefined;
    }
    const out: T[] = [];
    v.forEach((item, i) => {
      const f = `${field}[${i}]`;
      if (typeof item !== 'string') {
        this.error(f, `\`${field}\` entries must be strings, got ${describeType(item)}`);
        return;
      }
      const r = each(item);
      if (r.ok) out.push(r.value);
      else this.error(f, r.error);
    });
    return out;
  }

  bool(field: string): boolean | undefined {
    const v = this.obj[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') {
      this.error(field, `\`${field}\` must be true or false, got ${describeType(v)}`);
      return undefined;
    }
    return v;
  }

  /** An optional integer in [min, max]. */
  int(field: string, min: number, max: number): number | undefined {
    const v = this.obj[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.error(field, `\`${field}\` must be a whole number from ${min} to ${max}, got ${quote(String(v))}`);
      return undefined;
    }
    return v;
  }

  /** An optional list of integers in [min, max]. */
  ints(field: string, min: number, max: number): number[] | undefined {
    const v = this.obj[field];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) {
      this.error(field, `\`${field}\` must be a list of numbers, got ${describeType(v)}`);
      return undefined;
    }
    const out: number[] = [];
    v.forEach((item, i) => {
      if (typeof item !== 'number' || !Number.isInteger(item) || item < min || item > max) {
        this.error(
          `${field}[${i}]`,
          `\`${field}\` entries must be whole numbers from ${min} to ${max}, got ${quote(String(item))}`,
        );
      } else out.push(item);
    });
    return out;
  }
}

/** Lists values for a `why` message, shortened when long. */
export function listForWhy(values: readonly string[], max = 10): string {
  if (values.length === 0) return 'none';
  const shown = values.slice(0, max).join(', ');
  return values.length > max ? `${shown}, … (${values.length} in all)` : shown;
}
