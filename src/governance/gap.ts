/**
 * The gap report: per agent and capability, what was declared, what the policy permits and what the agent
 * attempted, with one status each:
 *
 *   aligned                 declared ⊇ permitted (exactly, over typed constraints), and used in the window
 *   over_permitted          the policy permits more than was declared (the excess is named)
 *   undeclared_attempt      the agent tried something no declared capability covers, allowed or not
 *   unused_permission       permitted and declared, never attempted in the window
 *   declared_not_permitted  declared, but no rule of the policy permits the tool
 *   unverifiable            cannot be compared (CEL, free-text capabilities, redacted arguments) — never aligned
 *
 * Streaming: `GapAnalyzer.observe` takes one record at a time (a million records hold only counters and a
 * few example ids per row), `finish` returns the report. Every row links to audit counts and record ids.
 */

import type { AuditRecord } from '../audit/record.js';
import { digestMatches } from '../audit/replay.js';
import { jsonDigest } from '../canonical-json.js';
import { compile, type Engine } from '../engine/compile.js';
import type { CheckedAgent, CheckedPolicy, CheckedRule } from '../policy/check.js';
import { compileGlob, globCovers, globMatch } from '../policy/glob.js';
import type { Conditions, RuleSpec } from '../policy/types.js';
import type { Effect } from '../types.js';
import { type Containment, contains } from './contain.js';
import type { AgentDeclaration, Declarations, DeclaredCapability } from './declaration.js';

/** One status per row; see the module comment. */
export type GapStatus =
  | 'aligned'
  | 'over_permitted'
  | 'undeclared_attempt'
  | 'unused_permission'
  | 'declared_not_permitted'
  | 'unverifiable';

/** Every status, in the order reports list them. */
export const GAP_STATUSES: readonly GapStatus[] = [
  'over_permitted',
  'undeclared_attempt',
  'unverifiable',
  'declared_not_permitted',
  'unused_permission',
  'aligned',
];

/** Attempts in the window, by the effect applied. */
export interface Attempts {
  total: number;
  allowed: number;
  denied: number;
  asked: number;
}

/** One row of the gap report. */
export interface GapRow {
  agent: string;
  status: GapStatus;
  /** Tool name or pattern the row is about. */
  tool: string;
  /** The policy rule that permits it, if any. */
  rule: { id: string; effect: Effect; line: number; summary: string } | null;
  /** The declared capability compared with, if any. */
  capability: {
    id: string;
    description?: string;
    file: string;
    line: number;
    effect: 'allow' | 'ask';
  } | null;
  /** What the status rests on: the excess, why it cannot be compared, what is missing. */
  detail: string[];
  attempts: Attempts;
  /** Seqs of example records (the first few in the window). */
  examples: number[];
}

/** Per agent: what is declared, and how many rows have each status. */
export interface GapAgent {
  id: string;
  declared: boolean;
  inPolicy: boolean;
  owner?: string;
  purpose?: string;
  highRisk?: boolean;
  counts: Record<GapStatus, number>;
  /** Attempts in the window per tool, whatever the row. */
  tools: ({ tool: string } & Attempts)[];
  notes: string[];
}

/** The whole report. Deterministic for the same inputs: rows sorted, no clock read. */
export interface GapReport {
  v: 1;
  window: { from: number; to: number };
  policy: { hash: string; file: string };
  declarations: { file: string; sha256: string }[];
  agents: GapAgent[];
  rows: GapRow[];
  totals: Record<GapStatus, number>;
  records: { scanned: number; decisions: number };
}

export interface GapOptions {
  policy: CheckedPolicy;
  declarations: Declarations;
  /** Only these agents (default: every agent in the policy or the declarations). */
  agents?: readonly string[];
  window: { from: number; to: number };
  /** Example record ids kept per row (default 5). */
  examples?: number;
}

interface PermittedRow {
  row: GapRow;
  containment: Containment;
  glob: ReturnType<typeof compileGlob>;
}

interface AgentState {
  id: string;
  policy: CheckedAgent | undefined;
  decl: AgentDeclaration | undefined;
  /** Permitted rows by rule id. */
  byRule: Map<string, PermittedRow[]>;
  notPermitted: { row: GapRow; glob: ReturnType<typeof compileGlob> }[];
  /** Tool patterns of the typed declared capabilities. */
  declaredGlobs: ReturnType<typeof compileGlob>[];
  undeclared: Map<string, GapRow>;
  redacted: Map<string, GapRow>;
  freeText: GapRow[];
  perTool: Map<string, Attempts>;
}

const zero = (): Attempts => ({ total: 0, allowed: 0, denied: 0, asked: 0 });
const counts = (): Record<GapStatus, number> =>
  Object.fromEntries(GAP_STATUSES.map((s) => [s, 0])) as Record<GapStatus, number>;

/** The raw rule text at a checked rule's path, for its typed `args` constraints and CEL. */
export function ruleSpecAt(doc: unknown, path: readonly (string | number)[]): RuleSpec | undefined {
  let node: unknown = doc;
  for (const seg of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string | number, unknown>)[seg];
  }
  return node as RuleSpec | undefined;
}

/** The declared capability's comparison side. */
function declaredSide(c: DeclaredCapability) {
  return {
    when: { ...(c.rule?.when ? { compiled: c.rule.when } : {}), ...(c.when ? { raw: c.when } : {}) },
    unless: {
      ...(c.rule?.unless ? { compiled: c.rule.unless } : {}),
      ...(c.unless ? { raw: c.unless } : {}),
    },
    effect: c.effect,
  };
}

function permittedSide(rule: CheckedRule, raw: RuleSpec | undefined) {
  const w: Conditions | undefined = raw?.when;
  const u: Conditions | undefined = raw?.unless;
  return {
    when: { ...(rule.when ? { compiled: rule.when } : {}), ...(w ? { raw: w } : {}) },
    unless: { ...(rule.unless ? { compiled: rule.unless } : {}), ...(u ? { raw: u } : {}) },
    effect: rule.effect as 'allow' | 'ask',
  };
}

/** Tool patterns that may name a common tool (conservative enough for "is anything permitted?"). */
function overlaps(a: string, b: string): boolean {
  const ga = compileGlob(a);
  const gb = compileGlob(b);
  return globCovers(ga, gb) || globCovers(gb, ga) || globMatch(ga, b) || globMatch(gb, a);
}

/** Builds the report from records fed one by one. */
export class GapAnalyzer {
  private readonly agents = new Map<string, AgentState>();
  private readonly declaredEngine: Engine;
  private readonly examples: number;
  private readonly decidedCache = new Map<string, boolean>();
  private scanned = 0;
  private decisions = 0;

  constructor(private readonly o: GapOptions) {
    this.examples = o.examples ?? 5;
    this.declaredEngine = compile(o.declarations.policy);
    const ids = new Set<string>([...o.policy.agents.keys(), ...o.declarations.agents.keys()]);
    const wanted = o.agents ? new Set(o.agents) : undefined;
    for (const id of [...ids].sort()) {
      if (wanted && !wanted.has(id)) continue;
      this.agents.set(id, this.prepare(id));
    }
  }

  private newRow(agent: string, status: GapStatus, tool: string, rest: Partial<GapRow> = {}): GapRow {
    return {
      agent,
      status,
      tool,
      rule: null,
      capability: null,
      detail: [],
      attempts: zero(),
      examples: [],
      ...rest,
    };
  }

  private prepare(id: string): AgentState {
    const policy = this.o.policy.agents.get(id);
    const decl = this.o.declarations.agents.get(id);
    const typed = (decl?.capabilities ?? []).filter((c) => c.rule !== undefined && c.tools !== undefined);
    const st: AgentState = {
      id,
      policy,
      decl,
      byRule: new Map(),
      notPermitted: [],
      declaredGlobs: typed.flatMap((c) => (c.tools ?? []).map(compileGlob)),
      undeclared: new Map(),
      redacted: new Map(),
      freeText: [],
      perTool: new Map(),
    };
    const rules = policy?.rules ?? [];
    const mode = policy?.mode ?? 'enforce';
    // Patterns an unconditional enforced deny covers are never permitted, whatever an allow says.
    const dead = rules
      .filter((r) => r.effect === 'deny' && !r.when && !r.unless && (r.mode ?? mode) === 'enforce')
      .flatMap((r) => r.patterns.map((p) => compileGlob(p.toLowerCase())));
    const permittedPatterns: string[] = [];
    for (const rule of rules) {
      if (rule.effect === 'deny') continue;
      const raw = ruleSpecAt(this.o.policy.doc, rule.path);
      for (const pattern of rule.patterns) {
        if (dead.some((d) => globCovers(d, compileGlob(pattern.toLowerCase())))) continue;
        permittedPatterns.push(pattern);
        const { containment, capability } = this.compare(decl, typed, rule, raw, pattern);
        const row = this.newRow(id, 'unverifiable', pattern, {
          rule: { id: rule.id, effect: rule.effect, line: rule.line, summary: rule.when?.summary ?? '' },
          capability: capability
            ? {
                id: capability.id,
                ...(capability.description !== undefined ? { description: capability.description } : {}),
                file: capability.file,
                line: capability.line,
                effect: capability.effect,
              }
            : null,
        });
        if (containment.kind === 'exceeds') row.detail.push(...containment.excess);
        if (containment.kind === 'unverifiable') row.detail.push(...containment.why);
        if ((rule.mode ?? mode) === 'shadow') row.detail.push('shadow mode: recorded, not enforced');
        const list = st.byRule.get(rule.id) ?? [];
        list.push({ row, containment, glob: compileGlob(pattern) });
        st.byRule.set(rule.id, list);
      }
    }
    for (const c of decl?.capabilities ?? []) {
      if (c.tools === undefined) {
        st.freeText.push(
          this.newRow(id, 'unverifiable', '(none)', {
            capability: {
              id: c.id,
              ...(c.description !== undefined ? { description: c.description } : {}),
              file: c.file,
              line: c.line,
              effect: c.effect,
            },
            detail: ['free text only: no tools or typed constraints to compare'],
          }),
        );
        continue;
      }
      for (const t of c.tools) {
        if (permittedPatterns.some((p) => overlaps(p, t))) continue;
        st.notPermitted.push({
          row: this.newRow(id, 'declared_not_permitted', t, {
            capability: {
              id: c.id,
              ...(c.description !== undefined ? { description: c.description } : {}),
              file: c.file,
              line: c.line,
              effect: c.effect,
            },
            detail: [policy ? 'no rule of the policy permits this tool' : 'the agent is not in the policy'],
          }),
          glob: compileGlob(t),
        });
      }
    }
    return st;
  }

  /** The best comparison of one permitted rule pattern with the declared capabilities for its tool. */
  private compare(
    decl: AgentDeclaration | undefined,
    typed: DeclaredCapability[],
    rule: CheckedRule,
    raw: RuleSpec | undefined,
    pattern: string,
  ): { containment: Containment; capability?: DeclaredCapability } {
    if (!decl) return { containment: { kind: 'exceeds', excess: ['the agent has no declaration'] } };
    const inner = compileGlob(pattern);
    const candidates = typed.filter((c) => (c.tools ?? []).some((t) => globCovers(compileGlob(t), inner)));
    if (candidates.length === 0) {
      return { containment: { kind: 'exceeds', excess: [`no declared capability covers \`${pattern}\``] } };
    }
    const side = permittedSide(rule, raw);
    let best: { containment: Containment; capability: DeclaredCapability } | undefined;
    const rank = (c: Containment) => (c.kind === 'contained' ? 0 : c.kind === 'unverifiable' ? 1 : 2);
    for (const cap of candidates) {
      const r = contains(declaredSide(cap), side);
      if (
        best === undefined ||
        rank(r) < rank(best.containment) ||
        (r.kind === 'exceeds' &&
          best.containment.kind === 'exceeds' &&
          r.excess.length < best.containment.excess.length)
      ) {
        best = { containment: r, capability: cap };
      }
      if (r.kind === 'contained') break;
    }
    return best as { containment: Containment; capability: DeclaredCapability };
  }

  private count(row: GapRow, effect: Effect, seq: number): void {
    row.attempts.total++;
    if (effect === 'allow') row.attempts.allowed++;
    else if (effect === 'deny') row.attempts.denied++;
    else row.attempts.asked++;
    if (row.examples.length < this.examples) row.examples.push(seq);
  }

  /** Feeds one record (any type; only decisions in the window count). */
  observe(r: AuditRecord): void {
    this.scanned++;
    const e = r.event;
    if (e === null || e.type !== 'decision') return;
    if (r.time < this.o.window.from || r.time >= this.o.window.to) return;
    const st = this.agents.get(e.action.agent);
    if (!st) return;
    this.decisions++;
    const { tool } = e.action;
    const effect = e.decision.effect;
    let per = st.perTool.get(tool);
    if (!per) {
      per = zero();
      st.perTool.set(tool, per);
    }
    per.total++;
    per[effect === 'allow' ? 'allowed' : effect === 'deny' ? 'denied' : 'asked']++;
    let permitted: PermittedRow | undefined;
    if (e.decision.rule !== null) {
      permitted = st.byRule.get(e.decision.rule)?.find((p) => globMatch(p.glob, tool));
      if (permitted) this.count(permitted.row, effect, r.seq);
    }
    for (const np of st.notPermitted) if (globMatch(np.glob, tool)) this.count(np.row, effect, r.seq);

    // Within the declaration? A call a contained rule decided under this very policy is, by containment.
    if (
      permitted?.containment.kind === 'contained' &&
      e.decision.policy === this.o.policy.hash &&
      (e.decision.wouldBe ?? effect) !== 'deny'
    ) {
      return;
    }
    if (!st.declaredGlobs.some((g) => globMatch(g, tool))) {
      this.undeclared(st, tool, effect, r.seq, 'no declared capability names this tool');
      return;
    }
    const args = e.action.args;
    if (
      args === null ||
      typeof args !== 'object' ||
      Array.isArray(args) ||
      !digestMatches(args, e.action.argsDigest)
    ) {
      let row = st.redacted.get(tool);
      if (!row) {
        row = this.newRow(st.id, 'unverifiable', tool, {
          detail: [
            'arguments are redacted in the audit log: the call cannot be checked against the declaration',
          ],
        });
        st.redacted.set(tool, row);
      }
      this.count(row, effect, r.seq);
      return;
    }
    const key = `${st.id}\u0000${tool}\u0000${e.action.argsDigest}`;
    let declared = this.decidedCache.get(key);
    if (declared === undefined) {
      declared = this.declaredEngine.decide({ agent: st.id, tool, args }, r.time).effect !== 'deny';
      if (this.decidedCache.size > 20_000) this.decidedCache.clear();
      this.decidedCache.set(key, declared);
    }
    if (!declared)
      this.undeclared(
        st,
        tool,
        effect,
        r.seq,
        'the arguments fall outside every declared capability for this tool',
      );
  }

  private undeclared(st: AgentState, tool: string, effect: Effect, seq: number, why: string): void {
    let row = st.undeclared.get(tool);
    if (!row) {
      row = this.newRow(st.id, 'undeclared_attempt', tool, { detail: [] });
      st.undeclared.set(tool, row);
    }
    if (!row.detail.includes(why)) row.detail.push(why);
    this.count(row, effect, seq);
  }

  /** Is this recorded call within the agent's declared capabilities? (For replay checks; never throws.) */
  isDeclared(r: AuditRecord): boolean | undefined {
    const e = r.event;
    if (e === null || e.type !== 'decision') return undefined;
    const args = e.action.args;
    if (
      args === null ||
      typeof args !== 'object' ||
      Array.isArray(args) ||
      !digestMatches(args, e.action.argsDigest)
    )
      return undefined;
    return (
      this.declaredEngine.decide({ agent: e.action.agent, tool: e.action.tool, args }, r.time).effect !==
      'deny'
    );
  }

  /** The report. */
  finish(): GapReport {
    const rows: GapRow[] = [];
    const agents: GapAgent[] = [];
    for (const st of this.agents.values()) {
      const mine: GapRow[] = [];
      for (const list of st.byRule.values()) {
        for (const p of list) {
          const c = p.containment;
          p.row.status =
            c.kind === 'exceeds'
              ? 'over_permitted'
              : c.kind === 'unverifiable'
                ? 'unverifiable'
                : p.row.attempts.total > 0
                  ? 'aligned'
                  : 'unused_permission';
          if (c.kind !== 'contained' && p.row.attempts.total === 0)
            p.row.detail.push('never attempted in the window');
          mine.push(p.row);
        }
      }
      mine.push(
        ...st.notPermitted.map((n) => n.row),
        ...st.freeText,
        ...st.undeclared.values(),
        ...st.redacted.values(),
      );
      const c = counts();
      for (const r of mine) c[r.status]++;
      const notes: string[] = [];
      if (!st.decl) notes.push('no declaration: everything the policy permits is reported as over-permitted');
      if (!st.policy) notes.push('not in the policy: it can do nothing');
      if (st.policy?.spec.documented?.length) {
        notes.push(
          'the policy still holds free-text `documented:` strings; move them with `execlayer declare migrate`',
        );
      }
      agents.push({
        id: st.id,
        declared: st.decl !== undefined,
        inPolicy: st.policy !== undefined,
        ...(st.decl ? { owner: st.decl.owner, purpose: st.decl.purpose } : {}),
        ...(st.decl?.risk.euAiAct ? { highRisk: st.decl.risk.euAiAct.highRisk } : {}),
        counts: c,
        tools: [...st.perTool.entries()].sort(([a], [b]) => cmp(a, b)).map(([tool, a]) => ({ tool, ...a })),
        notes,
      });
      rows.push(...mine);
    }
    rows.sort(compareRows);
    const totals = counts();
    for (const r of rows) totals[r.status]++;
    return {
      v: 1,
      window: { ...this.o.window },
      policy: { hash: this.o.policy.hash, file: this.o.policy.file },
      declarations: this.o.declarations.files.map((f) => ({ ...f })),
      agents,
      rows,
      totals,
      records: { scanned: this.scanned, decisions: this.decisions },
    };
  }
}

function compareRows(a: GapRow, b: GapRow): number {
  return (
    cmp(a.agent, b.agent) ||
    GAP_STATUSES.indexOf(a.status) - GAP_STATUSES.indexOf(b.status) ||
    cmp(a.tool, b.tool) ||
    cmp(a.rule?.id ?? '', b.rule?.id ?? '') ||
    cmp(a.capability?.id ?? '', b.capability?.id ?? '')
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Runs the analyzer over records (sync or async iterable). */
export async function gapReport(
  options: GapOptions,
  records: AsyncIterable<AuditRecord> | Iterable<AuditRecord>,
): Promise<GapReport> {
  const a = new GapAnalyzer(options);
  for await (const r of records) a.observe(r);
  return a.finish();
}

/** A stable content digest of a report (for the evidence bundle). */
export function gapDigest(report: GapReport): string {
  return jsonDigest(report);
}
