/**
 * `gap --suggest`: the policy change that closes the gap — unused permissions removed, over-permitted rules
 * narrowed to the declared capability they exceed (or removed when nothing declares the tool) — written
 * as a candidate policy (comments kept) and a unified diff, then replayed over the window's decisions.
 *
 * INVARIANT: the candidate must not refuse what agents legitimately did. Replay counts the calls it newly
 * denies that were within the agent's declaration; a correct suggestion has none (only undeclared calls
 * may become denied).
 */
import { Document, isMap, isSeq, parseDocument } from 'yaml';
import type { AuditRecord } from '../audit/record.js';
import { type ReplayReport, replay } from '../audit/replay.js';
import type { Engine } from '../engine/compile.js';
import type { CheckedPolicy, CheckedRule } from '../policy/check.js';
import type { Decision, Effect } from '../types.js';
import type { Declarations, DeclaredCapability } from './declaration.js';
import type { GapAnalyzer, GapReport } from './gap.js';

/** One change the suggestion makes. */
export interface SuggestedChange {
  agent: string;
  rule: string;
  tool: string;
  action: 'remove' | 'narrow';
  why: string;
}

export interface GapSuggestion {
  /** The candidate policy text. */
  text: string;
  /** Unified diff from the current policy text to the candidate. */
  diff: string;
  changes: SuggestedChange[];
  /** Rows left alone, and why. */
  skipped: string[];
}

interface Op {
  agent: string;
  rule: CheckedRule;
  pattern: string;
  action: 'remove' | 'narrow';
  target?: DeclaredCapability;
  why: string;
}

/** Builds the candidate policy and its diff from a gap report. */
export function suggestFromGap(
  report: GapReport,
  policy: CheckedPolicy,
  policyText: string,
  declarations: Declarations,
): GapSuggestion {
  const skipped: string[] = [];
  const ops: Op[] = [];
  for (const row of report.rows) {
    if (row.rule === null || (row.status !== 'unused_permission' && row.status !== 'over_permitted'))
      continue;
    const rule = policy.agents.get(row.agent)?.rules.find((r) => r.id === row.rule?.id);
    if (!rule) continue;
    if (row.status === 'unused_permission') {
      ops.push({
        agent: row.agent,
        rule,
        pattern: row.tool,
        action: 'remove',
        why: 'permitted, never attempted in the window',
      });
      continue;
    }
    const decl = declarations.agents.get(row.agent);
    if (!decl) {
      skipped.push(`${row.agent} ${row.tool} (rule ${rule.id}): the agent has no declaration to narrow to`);
      continue;
    }
    const target = row.capability ? decl.capabilities.find((c) => c.id === row.capability?.id) : undefined;
    ops.push(
      target
        ? {
            agent: row.agent,
            rule,
            pattern: row.tool,
            action: 'narrow',
            target,
            why: `narrowed to declared \`${target.id}\`: ${row.detail.join('; ')}`,
          }
        : { agent: row.agent, rule, pattern: row.tool, action: 'remove', why: row.detail.join('; ') },
    );
  }
  // A role's rule applies to every agent with the role: change it only when all of them need the same change.
  const byKey = new Map<string, Op[]>();
  for (const op of ops) {
    const key = `${op.rule.path.join('\u0000')}\u0001${op.pattern}`;
    byKey.set(key, [...(byKey.get(key) ?? []), op]);
  }
  const kept: Op[] = [];
  for (const list of byKey.values()) {
    const first = list[0] as Op;
    const holders =
      first.rule.path[0] === 'roles'
        ? [...policy.agents.values()]
            .filter((a) => a.roles.includes(String(first.rule.path[1])))
            .map((a) => a.id)
        : [first.agent];
    const same = list.every((o) => o.action === first.action && o.target?.when === first.target?.when);
    if (list.length !== holders.length || !same) {
      skipped.push(
        `rule ${first.rule.id} ${first.pattern}: shared by role \`${String(first.rule.path[1])}\` with ${holders.join(', ')}, which need different changes; not changed`,
      );
      continue;
    }
    kept.push(first);
  }
  const text = apply(policyText, kept);
  const changes = kept.map((o) => ({
    agent: o.agent,
    rule: o.rule.id,
    tool: o.pattern,
    action: o.action,
    why: o.why,
  }));
  return {
    text,
    diff: unifiedDiff(policyText, text, policy.file, `${policy.file} (suggested)`),
    changes,
    skipped,
  };
}

/**
 * Applies the ops by splicing the source text: only the changed rules are rewritten, so every other line
 * (comments and formatting included) stays byte for byte.
 */
function apply(text: string, ops: Op[]): string {
  const doc = parseDocument(text);
  const byRule = new Map<string, { rule: CheckedRule; ops: Op[] }>();
  for (const op of ops) {
    const k = op.rule.path.join('\u0000');
    const e = byRule.get(k) ?? { rule: op.rule, ops: [] };
    e.ops.push(op);
    byRule.set(k, e);
  }
  const edits: { start: number; end: number; text: string }[] = [];
  for (const { rule, ops: list } of byRule.values()) {
    const node = doc.getIn(rule.path, true);
    if (!isMap(node) || !node.range) continue;
    const effect = rule.effect;
    const removed = new Set(list.filter((o) => o.action === 'remove').map((o) => o.pattern));
    const narrowed = list.filter((o) => o.action === 'narrow');
    const narrowedSet = new Set(narrowed.map((o) => o.pattern));
    const remaining = rule.patterns.filter((p) => !removed.has(p) && !narrowedSet.has(p));
    const base = (node.toJSON() ?? {}) as Record<string, unknown>;
    const rules: Record<string, unknown>[] = [];
    if (remaining.length > 0)
      rules.push({ ...base, [effect]: remaining.length === 1 ? remaining[0] : remaining });
    for (const [i, o] of narrowed.entries()) {
      const id = remaining.length === 0 && i === 0 ? rule.id : `${rule.id}/${o.pattern}`;
      rules.push(narrowedRule(base, effect, o, id));
    }
    const [start, valueEnd] = node.range;
    const lineStart = text.lastIndexOf('\n', start - 1) + 1;
    const lead = text.slice(lineStart, start);
    const col = start - lineStart;
    if (rules.length === 0) {
      // A block item `- …` goes with its whole lines; anything else (a flow list) is left for a person.
      if (!/^ *- *$/.test(lead)) continue;
      const nl = text.indexOf('\n', valueEnd - 1);
      edits.push({ start: lineStart, end: nl < 0 ? text.length : nl + 1, text: '' });
      continue;
    }
    const dash = ' '.repeat(Math.max(0, lead.indexOf('-')));
    const rendered = rules.map((r) => renderRule(r, node.flow === true, col));
    edits.push({
      start,
      end: valueEnd,
      // The node's range ends with its line break (when it has one); keep it.
      text: `${rendered.join(`\n${dash}- `)}${text[valueEnd - 1] === '\n' ? '\n' : ''}`,
    });
  }
  let out = text;
  for (const e of edits.sort((a, b) => b.start - a.start))
    out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

/** One rule as YAML text to put at column `col`: conditions on one line, as reviewers write them. */
function renderRule(rule: Record<string, unknown>, flow: boolean, col: number): string {
  const d = new Document(rule);
  if (flow && isMap(d.contents)) d.contents.flow = true;
  else if (isMap(d.contents)) {
    for (const k of ['when', 'unless', 'approval', 'limit', 'allow', 'ask', 'deny']) {
      const c = d.contents.get(k, true);
      if (isMap(c) || isSeq(c)) c.flow = true;
    }
  }
  const lines = d.toString({ lineWidth: 0 }).replace(/\n$/, '').split('\n');
  return lines.map((l, i) => (i === 0 ? l : `${' '.repeat(col)}${l}`)).join('\n');
}

function narrowedRule(
  base: Record<string, unknown>,
  effect: Effect,
  op: Op,
  id: string,
): Record<string, unknown> {
  const t = op.target as DeclaredCapability;
  const newEffect = t.effect === 'ask' || effect === 'ask' ? 'ask' : 'allow';
  const out: Record<string, unknown> = { id, [newEffect]: op.pattern };
  if (t.when) out.when = t.when;
  if (t.unless) out.unless = t.unless;
  for (const k of ['limit', 'approval', 'mode', 'reason', 'description'] as const) {
    if (base[k] !== undefined && !(k === 'approval' && newEffect !== 'ask')) out[k] = base[k];
  }
  return out;
}

/** A unified diff (3 lines of context) between two texts, by longest common subsequence of lines. */
export function unifiedDiff(a: string, b: string, nameA: string, nameB: string): string {
  if (a === b) return '';
  const x = a.split('\n');
  const y = b.split('\n');
  const n = x.length;
  const m = y.length;
  if (n * m > 25_000_000) return `--- ${nameA}\n+++ ${nameB}\n(the files are too large to diff here)\n`;
  const dp = new Int32Array((n + 1) * (m + 1));
  const at = (i: number, j: number) => dp[i * (m + 1) + j] as number;
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      dp[i * (m + 1) + j] = x[i] === y[j] ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1));
  const lines: { op: ' ' | '-' | '+'; text: string }[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      lines.push({ op: ' ', text: x[i++] as string });
      j++;
    } else if (i < n && (j === m || at(i + 1, j) >= at(i, j + 1)))
      lines.push({ op: '-', text: x[i++] as string });
    else lines.push({ op: '+', text: y[j++] as string });
  }
  const out = [`--- ${nameA}`, `+++ ${nameB}`];
  const C = 3;
  const changed = lines.flatMap((l, k) => (l.op === ' ' ? [] : [k]));
  for (let g = 0; g < changed.length; ) {
    // One hunk: changes less than 2*C unchanged lines apart, with C lines of context around.
    let last = g;
    while (
      last + 1 < changed.length &&
      (changed[last + 1] as number) - (changed[last] as number) <= 2 * C + 1
    )
      last++;
    const start = Math.max(0, (changed[g] as number) - C);
    const end = Math.min(lines.length, (changed[last] as number) + C + 1);
    const hunk = lines.slice(start, end);
    const aStart = countBefore(lines, start, '+');
    const bStart = countBefore(lines, start, '-');
    const aLen = hunk.filter((l) => l.op !== '+').length;
    const bLen = hunk.filter((l) => l.op !== '-').length;
    out.push(`@@ -${aStart + (aLen ? 1 : 0)},${aLen} +${bStart + (bLen ? 1 : 0)},${bLen} @@`);
    for (const l of hunk) out.push(`${l.op}${l.text}`);
    g = last + 1;
  }
  return `${out.join('\n')}\n`;
}

/** Lines of the old (skip '+') or new (skip '-') text before index `k`. */
function countBefore(lines: { op: string }[], k: number, skip: '+' | '-'): number {
  let c = 0;
  for (let i = 0; i < k; i++) if (lines[i]?.op !== skip) c++;
  return c;
}

/** What replaying the candidate over the window showed. */
export interface SuggestionReplay {
  replay: ReplayReport;
  /** Calls within the declaration that ran before and the candidate denies (must be 0). */
  newlyDeniedDeclared: number;
  /** Calls outside the declaration that ran before and the candidate denies. */
  newlyDeniedUndeclared: number;
  examples: number[];
}

/** Replays the candidate over the window's decisions and sorts newly denied calls by the declaration. */
export function replaySuggestion(
  records: readonly AuditRecord[],
  candidate: Engine,
  gap: GapAnalyzer,
): SuggestionReplay {
  const verdict = (d: Pick<Decision, 'effect' | 'wouldBe'>) => d.wouldBe ?? d.effect;
  const report = replay(records, (action, at) => candidate.decide(action, at));
  let declared = 0;
  let undeclared = 0;
  const examples: number[] = [];
  for (const r of records) {
    const e = r.event;
    if (e === null || e.type !== 'decision' || verdict(e.decision) === 'deny') continue;
    const a = e.action;
    if (a.args === null || typeof a.args !== 'object' || Array.isArray(a.args)) continue;
    const next = verdict(candidate.decide({ agent: a.agent, tool: a.tool, args: a.args }, r.time));
    if (next !== 'deny') continue;
    const within = gap.isDeclared(r);
    if (within === true) {
      declared++;
      if (examples.length < 10) examples.push(r.seq);
    } else undeclared++;
  }
  return { replay: report, newlyDeniedDeclared: declared, newlyDeniedUndeclared: undeclared, examples };
}
