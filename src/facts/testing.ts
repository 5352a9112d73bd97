/** Test helpers shared by the canonicaliser tests: compile a condition, parse a value, match them. */
import assert from 'node:assert/strict';
import type { Json } from '../types.js';
import type { Canonicaliser } from './types.js';

export function harness<C, F>(c: Canonicaliser<C, F>) {
  /** Compiles a condition that must be valid. */
  const cond = (x: unknown): C => {
    const r = c.compile(x);
    assert.ok(r.ok, JSON.stringify(r));
    return r.value;
  };
  /** Parses a value that must be accepted. */
  const facts = (raw: Json): F => {
    const r = c.facts(raw);
    assert.ok(r.ok, JSON.stringify(r));
    return r.value;
  };
  /** Asserts the value is refused with an error matching `pattern`. */
  const refused = (raw: Json, pattern: RegExp): void => {
    const r = c.facts(raw);
    assert.equal(r.ok, false, `expected ${JSON.stringify(raw)} to be refused`);
    if (!r.ok) assert.match(r.error, pattern);
  };
  /** `match`, then `matchAll` over this one value (as the engine runs them). */
  const verdict = (condition: unknown, raw: string) => {
    const k = cond(condition);
    const f = facts(raw);
    const m = c.match(k, f);
    return !m.ok || c.matchAll === undefined ? m : c.matchAll(k, [f], ['value']);
  };
  const allowed = (condition: unknown, raw: string): boolean => verdict(condition, raw).ok;
  /** The reason a value that must not satisfy the condition gives. */
  const why = (condition: unknown, raw: string): string => {
    const r = verdict(condition, raw);
    assert.equal(r.ok, false, `expected ${JSON.stringify(raw)} to be refused`);
    return r.ok ? '' : r.why;
  };
  return { cond, facts, refused, verdict, allowed, why };
}

/** One edit for mutation properties: insert `text` at `at` (modulo the length), or flip the case there when `text` is ''. */
export interface Mutation {
  at: number;
  text: string;
}

/** Applies mutations in order (the fast-check properties that mutate denied inputs). */
export function mutate(value: string, ms: readonly Mutation[]): string {
  let s = value;
  for (const m of ms) {
    const i = m.at % (s.length + 1);
    if (m.text !== '') s = s.slice(0, i) + m.text + s.slice(i);
    else {
      const ch = s[i] ?? '';
      s = s.slice(0, i) + (ch === ch.toLowerCase() ? ch.toUpperCase() : ch.toLowerCase()) + s.slice(i + 1);
    }
  }
  return s;
}
