/**
 * Typed argument constraints (`when: { args: { amount: { type: number, gt: 0, max: 100 } } }`).
 * Strict: a string is never a number, `"5"` never satisfies `max: 10`. Numbers are decided on the
 * parsed JSON double (what `JSON.parse` and the gateway's re-serialised call carry), not the text.
 */
import type { Json } from '../types.js';
import { compileGlob, globMatch } from './glob.js';
import type { ArgConstraint } from './types.js';

/**
 * A check's verdict. `undecidable`: the argument is missing or of another type, so the constraint says
 * nothing about it — an allow rule does not match, a deny or ask rule does (fail closed).
 */
export type Verdict = { ok: true } | { ok: false; why: string; undecidable?: true };

export interface ArgCheck {
  /** Dotted argument path. */
  name: string;
  summary: string;
  /** The constraint is about the list itself (`type: array`); otherwise a list is checked item by item. */
  wholeList: boolean;
  test(value: Json | undefined): Verdict;
}

const PASS: Verdict = { ok: true };

/**
 * Compiles one typed constraint of a condition's `args:` block into a check. Strict: a value of another
 * JSON type never satisfies it (`"5"`, `true`, `[5]` and `{"$numberInt": "5"}` are not numbers), and a
 * constraint without `type` takes the type its other keys imply (number for bounds, string for `glob`
 * and `max_length`). The engine checks a list item by item unless the constraint is `type: array`.
 */
export function compileArgConstraint(
  name: string,
  c: ArgConstraint,
): { ok: true; value: ArgCheck; neverMatches?: string } | { ok: false; error: string } {
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(name)) {
    return {
      ok: false,
      error: `\`${name}\` is not an argument name (letters, digits, _ and -, dotted for nested fields)`,
    };
  }
  const numeric = c.min !== undefined || c.max !== undefined || c.gt !== undefined || c.lt !== undefined;
  if (numeric && c.type !== undefined && c.type !== 'number' && c.type !== 'integer') {
    return { ok: false, error: `\`min\`/\`max\`/\`gt\`/\`lt\` need type number or integer, not ${c.type}` };
  }
  if (c.glob !== undefined && c.type !== undefined && c.type !== 'string') {
    return { ok: false, error: `\`glob\` needs type string, not ${c.type}` };
  }
  if (c.max_length !== undefined && c.type !== undefined && c.type !== 'string' && c.type !== 'array') {
    return { ok: false, error: `\`max_length\` needs type string or array, not ${c.type}` };
  }
  for (const k of ['min', 'max', 'gt', 'lt'] as const) {
    const b = c[k];
    if (b !== undefined && !Number.isFinite(b))
      return { ok: false, error: `\`${k}\` must be a finite number` };
  }
  // INVARIANT: fail closed — the implied type keeps a bound from passing a value of another type.
  const type =
    c.type ??
    (numeric ? 'number' : c.glob !== undefined || c.max_length !== undefined ? 'string' : undefined);
  const glob = c.glob !== undefined ? compileGlob(c.glob) : undefined;
  const neverMatches = contradiction(c);

  const parts: string[] = [];
  if (type) parts.push(type);
  if (c.min !== undefined) parts.push(`>= ${c.min}`);
  if (c.gt !== undefined) parts.push(`> ${c.gt}`);
  if (c.max !== undefined) parts.push(`<= ${c.max}`);
  if (c.lt !== undefined) parts.push(`< ${c.lt}`);
  if (c.equals !== undefined) parts.push(`== ${JSON.stringify(c.equals)}`);
  if (c.in) parts.push(`in ${JSON.stringify(c.in)}`);
  if (c.max_length !== undefined) parts.push(`length <= ${c.max_length}`);
  if (c.glob !== undefined) parts.push(`like \`${c.glob}\``);
  const summary = `${name} ${c.present === false ? 'absent' : parts.join(', ')}`;

  const test = (v: Json | undefined): Verdict => {
    if (v === undefined) {
      return c.present === false
        ? PASS
        : { ok: false, why: `argument \`${name}\` is missing`, undecidable: true };
    }
    // `null` is a value the target receives: `present: false` means the key is not sent at all.
    if (c.present === false) return { ok: false, why: `argument \`${name}\` must be absent` };
    if (type && !hasType(v, type))
      return {
        ok: false,
        why: `argument \`${name}\` must be ${type}, got ${typeName(v)}`,
        undecidable: true,
      };
    if (numeric) {
      // After the type check `v` is a finite number (a double: `-0` equals 0, `1e-400` is 0).
      const n = v as number;
      if (c.min !== undefined && !(n >= c.min))
        return { ok: false, why: `argument \`${name}\` must be >= ${c.min}` };
      if (c.gt !== undefined && !(n > c.gt))
        return { ok: false, why: `argument \`${name}\` must be > ${c.gt}` };
      if (c.max !== undefined && !(n <= c.max))
        return { ok: false, why: `argument \`${name}\` must be <= ${c.max}` };
      if (c.lt !== undefined && !(n < c.lt))
        return { ok: false, why: `argument \`${name}\` must be < ${c.lt}` };
    }
    if (c.equals !== undefined && v !== c.equals)
      return { ok: false, why: `argument \`${name}\` must equal ${JSON.stringify(c.equals)}` };
    if (c.in && !c.in.some((x) => x === v))
      return { ok: false, why: `argument \`${name}\` must be one of ${JSON.stringify(c.in)}` };
    if (c.max_length !== undefined) {
      const len = typeof v === 'string' || Array.isArray(v) ? v.length : undefined;
      if (len === undefined || len > c.max_length)
        return { ok: false, why: `argument \`${name}\` must have length <= ${c.max_length}` };
    }
    if (glob && !(typeof v === 'string' && globMatch(glob, v)))
      return { ok: false, why: `argument \`${name}\` must match \`${c.glob}\`` };
    return PASS;
  };
  const wholeList = type === 'array' || c.present === false;
  return { ok: true, value: { name, summary, wholeList, test }, ...(neverMatches ? { neverMatches } : {}) };
}

/** Why no value can satisfy the constraint, or undefined. */
function contradiction(c: ArgConstraint): string | undefined {
  if (c.present === false && Object.keys(c).length > 1) return '`present: false` with other constraints';
  const lower =
    c.gt !== undefined && (c.min === undefined || c.gt >= c.min) ? { v: c.gt, open: true } : undefined;
  const lo = lower ?? (c.min !== undefined ? { v: c.min, open: false } : undefined);
  const upper =
    c.lt !== undefined && (c.max === undefined || c.lt <= c.max) ? { v: c.lt, open: true } : undefined;
  const hi = upper ?? (c.max !== undefined ? { v: c.max, open: false } : undefined);
  if (lo && hi && (lo.v > hi.v || (lo.v === hi.v && (lo.open || hi.open)))) {
    return `the bounds ${lo.open ? '>' : '>='} ${lo.v} and ${hi.open ? '<' : '<='} ${hi.v} admit no number`;
  }
  if (c.type === 'integer' && lo && hi) {
    const first = lo.open ? Math.floor(lo.v) + 1 : Math.ceil(lo.v);
    if (!(hi.open ? first < hi.v : first <= hi.v)) return `no whole number lies between ${lo.v} and ${hi.v}`;
  }
  return undefined;
}

/** Is `v` of the policy type `type`? Strict: numbers are finite, integers safe, `"5"` is a string. */
export function hasType(v: Json, type: string): boolean {
  switch (type) {
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'integer':
      return typeof v === 'number' && Number.isSafeInteger(v);
    case 'array':
      return Array.isArray(v);
    case 'object':
      return v !== null && typeof v === 'object' && !Array.isArray(v);
    case 'null':
      return v === null;
    default:
      return typeof v === type;
  }
}

function typeName(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Reads a dotted path from the arguments, own properties only (never the prototype chain). */
export function readArg(args: { [k: string]: Json }, path: string): Json | undefined {
  if (!path.includes('.')) return Object.hasOwn(args, path) ? args[path] : undefined;
  let node: Json | undefined = args;
  for (const seg of path.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    if (Array.isArray(node)) {
      const i = Number(seg);
      node = Number.isInteger(i) && i >= 0 ? node[i] : undefined;
    } else {
      node = Object.hasOwn(node, seg) ? node[seg] : undefined;
    }
    if (node === undefined) return undefined;
  }
  return node;
}
