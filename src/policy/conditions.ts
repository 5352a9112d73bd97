/**
 * Typed argument constraints (`when: { args: { amount: { type: number, min: 0, max: 100 } } }`).
 * Strict: a string is never a number, `"5"` never satisfies `max: 10`.
 */
import type { Json } from '../types.js';
import { compileGlob, globMatch } from './glob.js';
import type { ArgConstraint } from './types.js';

export type Verdict = { ok: true } | { ok: false; why: string };

export interface ArgCheck {
  /** Dotted argument path. */
  name: string;
  summary: string;
  /** The constraint is about the list itself (`type: array`); otherwise a list is checked item by item. */
  wholeList: boolean;
  test(value: Json | undefined): Verdict;
}

const PASS: Verdict = { ok: true };

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
  const numeric = c.min !== undefined || c.max !== undefined;
  if (numeric && c.type !== undefined && c.type !== 'number' && c.type !== 'integer') {
    return { ok: false, error: `\`min\`/\`max\` need type number or integer, not ${c.type}` };
  }
  if (
    (c.glob !== undefined || c.max_length !== undefined) &&
    c.type !== undefined &&
    c.type !== 'string' &&
    c.type !== 'array'
  ) {
    if (c.glob !== undefined) return { ok: false, error: `\`glob\` needs type string, not ${c.type}` };
  }
  const type = c.type ?? (numeric ? 'number' : c.glob !== undefined ? 'string' : undefined);
  const glob = c.glob !== undefined ? compileGlob(c.glob) : undefined;
  let neverMatches: string | undefined;
  if (c.min !== undefined && c.max !== undefined && c.min > c.max)
    neverMatches = `min ${c.min} is greater than max ${c.max}`;
  if (c.present === false && Object.keys(c).length > 1)
    neverMatches = '`present: false` with other constraints';

  const parts: string[] = [];
  if (type) parts.push(type);
  if (c.min !== undefined) parts.push(`>= ${c.min}`);
  if (c.max !== undefined) parts.push(`<= ${c.max}`);
  if (c.equals !== undefined) parts.push(`== ${JSON.stringify(c.equals)}`);
  if (c.in) parts.push(`in ${JSON.stringify(c.in)}`);
  if (c.max_length !== undefined) parts.push(`length <= ${c.max_length}`);
  if (c.glob !== undefined) parts.push(`like \`${c.glob}\``);
  const summary = `${name} ${c.present === false ? 'absent' : parts.join(', ')}`;

  const test = (v: Json | undefined): Verdict => {
    if (v === undefined) {
      return c.present === false ? PASS : { ok: false, why: `argument \`${name}\` is missing` };
    }
    if (c.present === false) return { ok: false, why: `argument \`${name}\` must be absent` };
    if (type && !hasType(v, type))
      return { ok: false, why: `argument \`${name}\` must be ${type}, got ${typeName(v)}` };
    if (c.min !== undefined && !(typeof v === 'number' && v >= c.min))
      return { ok: false, why: `argument \`${name}\` must be >= ${c.min}` };
    if (c.max !== undefined && !(typeof v === 'number' && v <= c.max))
      return { ok: false, why: `argument \`${name}\` must be <= ${c.max}` };
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
