/**
 * Schema validation of one parsed policy file: Ajv errors turned into positioned problems, the most
 * specific one per place, with `did you mean` hints for unknown keys.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { closest, type Problem } from './problems.js';
import { policyFileSchema, policySchema } from './schema.js';
import type { PolicySource } from './source.js';

/**
 * Two validators per schema: a quick one that stops at the first error (most policies are valid, and
 * collecting verbose errors for every failed `oneOf` branch of every rule is most of the cost), and on
 * failure one that collects every error with its schema, to report them all. Each is compiled on first use.
 */
const quick = new Ajv({ allErrors: false, strict: false });
const full = new Ajv({ allErrors: true, strict: false, verbose: true });
type Validate = ReturnType<typeof quick.compile>;
const compiled: Record<string, Validate | undefined> = {};
const schemas = { policy: policySchema, file: policyFileSchema };

function validator(as: 'policy' | 'file', kind: 'quick' | 'full'): Validate {
  const key = `${as}:${kind}`;
  let v = compiled[key];
  if (v === undefined) {
    v = (kind === 'quick' ? quick : full).compile(schemas[as]);
    compiled[key] = v;
  }
  return v;
}

/**
 * The schema problems of a parsed policy: a whole policy (`policy`), or one file of a bundle (`file`:
 * `agents` may be absent and the bundle keys may be present). Empty when it conforms.
 */
export function schemaProblemsOf(source: PolicySource, as: 'policy' | 'file' = 'policy'): Problem[] {
  if (validator(as, 'quick')(source.data)) return [];
  const validate = validator(as, 'full');
  if (validate(source.data)) return [];
  return schemaProblems(validate.errors ?? [], source);
}

/** Whether a parsed whole policy fits the schema (the quick validator). */
export function fitsSchema(data: unknown): boolean {
  return validator('policy', 'quick')(data) === true;
}

/** Every schema error of a parsed whole policy (empty when it fits). */
export function schemaErrors(data: unknown): ErrorObject[] {
  const validate = validator('policy', 'full');
  return validate(data) ? [] : (validate.errors ?? []);
}

/** Turns Ajv errors into positioned problems, keeping the most specific one per place. */
export function schemaProblems(errors: ErrorObject[], source: PolicySource): Problem[] {
  const deeper = (e: ErrorObject) =>
    errors.some((f) => f !== e && f.instancePath.startsWith(`${e.instancePath}/`) && f.keyword !== 'oneOf');
  const kept = errors.filter((e) => {
    if (deeper(e)) return false;
    if (e.keyword === 'oneOf' || e.keyword === 'if') {
      return !errors.some((f) => f !== e && f.instancePath === e.instancePath && f.keyword !== 'oneOf');
    }
    return true;
  });
  // Alternatives (oneOf) that fail on type at the same place become one message: `a string or an array`.
  const typesAt = new Map<string, string[]>();
  for (const e of kept) {
    if (e.keyword !== 'type') continue;
    const list = typesAt.get(e.instancePath) ?? [];
    list.push(String((e.params as { type: string }).type));
    typesAt.set(e.instancePath, list);
  }
  const seen = new Set<string>();
  const out: Problem[] = [];
  for (const e of kept) {
    const path = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    const segs = path.map((s, i) => (isIndexIn(source.data, path.slice(0, i)) ? Number(s) : s));
    let message: string;
    let hint: string | undefined;
    let at = source.locate(segs);
    let code = 'schema';
    const where = e.instancePath || '/';
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = allowedKeys(e.parentSchema);
        code = 'unknown_key';
        message = `unknown key \`${key}\` in \`${where}\``;
        const guess = closest(key, allowed);
        hint = guess
          ? `did you mean \`${guess}\`?`
          : allowed.length
            ? `allowed keys: ${allowed.join(', ')}`
            : undefined;
        at = source.locate([...segs, key], true);
        break;
      }
      case 'required':
        code = 'missing_key';
        message = `missing required key \`${(e.params as { missingProperty: string }).missingProperty}\` in \`${where}\``;
        break;
      case 'type':
        code = 'wrong_type';
        message = `\`${where}\` must be ${(typesAt.get(e.instancePath) ?? []).map(article).join(' or ')}`;
        break;
      case 'enum':
        code = 'wrong_value';
        message = `\`${where}\` must be one of: ${((e.params as { allowedValues: unknown[] }).allowedValues ?? []).join(', ')}`;
        break;
      case 'const':
        code = 'wrong_value';
        message = `\`${where}\` must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`;
        break;
      default:
        message = `\`${where}\` ${e.message ?? 'is invalid'}`;
    }
    const key = `${at.line}:${at.column}:${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({
      severity: 'error',
      code,
      message,
      file: source.file,
      ...at,
      path: where,
      ...(hint ? { hint } : {}),
    });
  }
  return out;
}

function isIndexIn(data: unknown, path: string[]): boolean {
  let node: unknown = data;
  for (const s of path) {
    if (node === null || typeof node !== 'object') return false;
    node = Array.isArray(node) ? node[Number(s)] : (node as Record<string, unknown>)[s];
  }
  return Array.isArray(node);
}

function allowedKeys(schema: unknown): string[] {
  const props = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return props ? Object.keys(props) : [];
}

function article(type: string): string {
  const t = type.replace(/,/g, ' or ');
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}
