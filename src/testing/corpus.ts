/**
 * The adversarial corpus (test/corpus/*.yaml): groups of cases, each with the decision it must get and
 * the reason why. One file per canonicaliser (and for tool names and argument shapes). The engine
 * runner (test/corpus.test.ts) decides every case; the real-target tests (PostgreSQL, bash) read the
 * same files and run the cases the corpus allows against the target itself.
 *
 *   groups:
 *     - name: read-only customers
 *       when: { sql: { statements: [select], tables: [customers] } }   # or `rules: [...]`
 *       cases:
 *         - { value: "SELECT * FROM customers", expect: allow, why: a plain read of an allowed table }
 *         - { args: { sql: "SELECT 1", query: "DELETE FROM customers" }, expect: deny, why: ... }
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { canonicalisers } from '../facts/index.js';
import type { CanonicaliserName } from '../facts/types.js';
import type { Json } from '../types.js';

export interface CorpusCase {
  /** The raw value, sent as the canonicaliser's first default argument. */
  value?: Json;
  /** Or the whole arguments object. */
  args?: { [k: string]: Json };
  /** Tool called (default: the group's tool). */
  tool?: string;
  expect: 'allow' | 'deny';
  /** Why this must be the decision: the trick, and what the target would do with it. */
  why: string;
  /** The decision code, when it matters (`invalid_action`, `no_matching_rule`, ...). */
  code?: string;
  /** Text the refusal must contain (e.g. the name of the refused function). */
  reason?: string;
}

export interface CorpusGroup {
  name: string;
  /** The condition of one allow rule on `tool`... */
  when?: unknown;
  unless?: unknown;
  /** ...or the agent's whole rule list. */
  rules?: unknown[];
  /** The policy's `tools:` section, for declared arguments. */
  tools?: unknown;
  /** Tool the rule allows and cases call (default `t.call`). */
  tool?: string;
  /** Skip this group on the real target (with the reason), e.g. cases that only make sense to the parser. */
  target?: string;
  cases: CorpusCase[];
}

export interface CorpusFile {
  file: string;
  /** The canonicaliser the file is about (its first default argument receives `value`). */
  canonicaliser?: CanonicaliserName;
  groups: CorpusGroup[];
}

/** The corpus folder, from the repository root. */
export const CORPUS_DIR = new URL('../../test/corpus/', import.meta.url);

/** Reads every corpus file (or only `name`.yaml). Throws on a malformed file: the corpus is test input. */
export function readCorpus(name?: string): CorpusFile[] {
  const dir = CORPUS_DIR.pathname;
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && (name === undefined || f === `${name}.yaml`))
    .sort();
  return files.map((f) => {
    const doc = parse(readFileSync(join(dir, f), 'utf8')) as Omit<CorpusFile, 'file'>;
    if (!doc || !Array.isArray(doc.groups)) throw new Error(`${f}: no \`groups:\` list`);
    for (const g of doc.groups) {
      if (!Array.isArray(g.cases) || g.cases.length === 0)
        throw new Error(`${f}: group ${g.name} has no cases`);
      for (const c of g.cases) {
        if (c.expect !== 'allow' && c.expect !== 'deny')
          throw new Error(`${f}: group ${g.name}: a case has expect ${String(c.expect)}`);
        if (typeof c.why !== 'string' || c.why.length < 3)
          throw new Error(`${f}: group ${g.name}: case ${JSON.stringify(c)} says no why`);
        if ((c.value === undefined) === (c.args === undefined))
          throw new Error(
            `${f}: group ${g.name}: case ${JSON.stringify(c)} needs exactly one of value, args`,
          );
      }
    }
    return { file: f, ...doc };
  });
}

/** The arguments a case sends. */
export function caseArgs(file: CorpusFile, c: CorpusCase): { [k: string]: Json } {
  if (c.args !== undefined) return c.args;
  const canon = file.canonicaliser;
  if (canon === undefined) throw new Error(`${file.file}: a \`value\` case needs \`canonicaliser:\``);
  const arg = canonicalisers[canon].defaultArgs[0] as string;
  return { [arg]: c.value as Json };
}

/** The policy document a group is decided under: agent `corpus`, one allow rule or the group's rules. */
export function groupPolicy(g: CorpusGroup): unknown {
  const tool = g.tool ?? 't.call';
  const rules = g.rules ?? [
    {
      id: 'corpus',
      allow: tool,
      ...(g.when ? { when: g.when } : {}),
      ...(g.unless ? { unless: g.unless } : {}),
    },
  ];
  return { version: 1, agents: { corpus: { rules } }, ...(g.tools ? { tools: g.tools } : {}) };
}
