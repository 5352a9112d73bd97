/**
 * Learn, then enforce: turn observed calls (the decisions of a shadow-mode roll-out, or the allowed calls
 * of an enforced policy) into a least-privilege policy draft. Only tools an agent actually used are
 * allowed, each with the tightest typed constraints the canonicalisers can state about what was seen —
 * path directories, URL hosts, schemes and ports, SQL statement kinds, tables and functions, shell
 * programs and features, email domains, numeric ranges — and each rule says its evidence.
 *
 * INVARIANT: the draft allows every observed call. The draft is compiled and every observation decided
 * with it; a rule whose inferred constraints refuse one of its own observations falls back to fewer
 * constraints (each canonicaliser's condition is dropped in turn), so `replay` of the draft over the
 * same traffic shows no newly denied call.
 */
import { stringify } from 'yaml';
import { canonicalisers } from '../facts/index.js';
import type { CanonicaliserName } from '../facts/types.js';
import { loadPolicyObject } from '../policy/load.js';
import type { Json, Mode } from '../types.js';
import { compile } from './compile.js';

/** One call that ran: who called what with which arguments, and when (ms since the epoch). */
export interface Observation {
  agent: string;
  tool: string;
  args: { [k: string]: Json };
  time: number;
}

export interface SuggestOptions {
  /** The draft's mode (default `shadow`: review it, replay it, then enforce). */
  mode?: Mode;
  /** A line naming where the observations came from, for the header comment. */
  source?: string;
}

export interface Suggestion {
  /** The draft as YAML text, with comments. */
  text: string;
  /** The draft as a policy document. */
  doc: { version: 1; mode: Mode; agents: Record<string, { rules: Record<string, unknown>[] }> };
  agents: number;
  rules: number;
  /** Rules whose inferred constraints did not hold for every observation and were loosened. */
  loosened: string[];
}

type Conditions = Record<string, unknown>;

interface ToolUse {
  agent: string;
  tool: string;
  calls: Observation[];
}

const CANON_ORDER: CanonicaliserName[] = ['path', 'url', 'sql', 'shell', 'email'];

/** Builds the draft. Deterministic for the same observations. */
export function suggestPolicy(
  observations: readonly Observation[],
  options: SuggestOptions = {},
): Suggestion {
  const mode = options.mode ?? 'shadow';
  const uses = new Map<string, ToolUse>();
  for (const o of observations) {
    const key = `${o.agent}\u0000${o.tool}`;
    let u = uses.get(key);
    if (!u) {
      u = { agent: o.agent, tool: o.tool, calls: [] };
      uses.set(key, u);
    }
    u.calls.push(o);
  }
  const sorted = [...uses.values()].sort((a, b) =>
    a.agent === b.agent ? (a.tool < b.tool ? -1 : 1) : a.agent < b.agent ? -1 : 1,
  );

  const loosened: string[] = [];
  const agents: Record<string, { rules: Record<string, unknown>[] }> = {};
  const comments = new Map<string, string>();
  for (const u of sorted) {
    const id = ruleId(u.tool);
    const inferred = inferConditions(u.calls);
    const when = holdsForAll(u, inferred, (dropped) => loosened.push(`${u.agent}/${id}: ${dropped}`));
    const rule: Record<string, unknown> = { id, allow: u.tool };
    if (Object.keys(when).length > 0) rule.when = when;
    const agent = agents[u.agent] ?? { rules: [] };
    agent.rules.push(rule);
    agents[u.agent] = agent;
    comments.set(`${u.agent}\u0000${id}`, evidence(u));
  }
  const doc = { version: 1 as const, mode, agents };
  return {
    text: render(doc, comments, observations, options.source),
    doc,
    agents: Object.keys(agents).length,
    rules: sorted.length,
    loosened,
  };
}

/** A rule id from a tool name (ids are shown in decisions; keep them readable). */
function ruleId(tool: string): string {
  return `use-${tool}`.slice(0, 128);
}

/** Every argument value a condition with default names would read, per canonicaliser. */
function inferConditions(calls: readonly Observation[]): Conditions {
  const when: Conditions = {};
  const covered = new Set<string>();
  for (const name of CANON_ORDER) {
    const canon = canonicalisers[name];
    const facts: Json[] = [];
    let usable = true;
    for (const c of calls) {
      const present = canon.defaultArgs.filter((a) => Object.hasOwn(c.args, a));
      const values = present.flatMap((a) => [c.args[a] as Json].flat());
      // A condition needs a value in every call, or the calls without one would be refused.
      if (values.length === 0) {
        usable = false;
        break;
      }
      for (const v of values) {
        const f = canon.facts(v);
        if (!f.ok) {
          usable = false;
          break;
        }
        facts.push(canon.toJson(f.value));
      }
      if (!usable) break;
      for (const a of present) covered.add(a);
    }
    if (!usable || facts.length === 0) continue;
    const condition = FROM_FACTS[name](facts as Record<string, Json>[]);
    if (condition !== undefined) when[name] = condition;
  }
  const args = numericRanges(calls, covered);
  if (Object.keys(args).length > 0) when.args = args;
  return when;
}

const strings = (facts: Record<string, Json>[], key: string): string[] =>
  [
    ...new Set(facts.flatMap((f) => [f[key] ?? []].flat().filter((x): x is string => typeof x === 'string'))),
  ].sort();

/** The tightest condition each canonicaliser can state about the facts seen (undefined: none). */
const FROM_FACTS: Record<CanonicaliserName, (facts: Record<string, Json>[]) => Conditions | undefined> = {
  path: (facts) => ({ under: directories(strings(facts, 'path')) }),
  url: (facts) => {
    const c: Conditions = { hosts: strings(facts, 'host'), schemes: strings(facts, 'scheme') };
    const defaults: Record<string, number> = { http: 80, https: 443 };
    const ports = [...new Set(facts.map((f) => f.port))];
    const allDefault = facts.every((f) => f.port === (defaults[String(f.scheme)] ?? null));
    if (!allDefault) {
      if (ports.some((p) => typeof p !== 'number')) return undefined;
      c.ports = (ports as number[]).sort((a, b) => a - b);
    }
    if (facts.some((f) => f.userinfo === true)) c.allow_userinfo = true;
    return c;
  },
  sql: (facts) => {
    const c: Conditions = { statements: strings(facts, 'statements'), tables: strings(facts, 'tables') };
    const functions = strings(facts, 'functions');
    if (functions.length > 0) c.functions = functions;
    const most = Math.max(...facts.map((f) => (typeof f.count === 'number' ? f.count : 1)));
    if (most > 1) c.max_statements = most;
    return c;
  },
  shell: (facts) => {
    const c: Conditions = { programs: strings(facts, 'programs') };
    const seen = (k: string) => facts.some((f) => f[k] === true || (Array.isArray(f[k]) && f[k].length > 0));
    for (const [fact, field] of [
      ['pipes', 'allow_pipes'],
      ['redirects', 'allow_redirects'],
      ['substitution', 'allow_substitution'],
      ['chaining', 'allow_chaining'],
      ['background', 'allow_background'],
      ['assignments', 'allow_assignments'],
    ] as const) {
      if (seen(fact) && field in canonicalisers.shell.fields) c[field] = true;
    }
    return c;
  },
  email: (facts) => ({ to_domains: strings(facts, 'domains') }),
};

/**
 * The fewest directories that hold every path seen: each path's parent, or the path itself where
 * other paths seen lie inside it (a directory that was listed), with nested ones folded into their
 * ancestor.
 */
export function directories(paths: readonly string[]): string[] {
  const inside = (p: string, d: string) => d === '/' || p === d || p.startsWith(`${d}/`);
  const dirs = paths.map((p) => {
    if (paths.some((q) => q !== p && inside(q, p))) return p;
    const cut = p.lastIndexOf('/');
    return cut <= 0 ? '/' : p.slice(0, cut);
  });
  const unique = [...new Set(dirs)].sort();
  return unique.filter((d) => !unique.some((e) => e !== d && inside(d, e)));
}

/** `args:` ranges for top-level numeric arguments present in every call and not read by a canonicaliser. */
function numericRanges(calls: readonly Observation[], covered: ReadonlySet<string>): Conditions {
  const out: Conditions = {};
  const first = calls[0];
  if (first === undefined) return out;
  for (const name of Object.keys(first.args).sort()) {
    if (covered.has(name)) continue;
    const values = calls.map((c) => c.args[name]);
    if (!values.every((v): v is number => typeof v === 'number' && Number.isFinite(v))) continue;
    const integer = values.every((v) => Number.isSafeInteger(v));
    out[name] = { type: integer ? 'integer' : 'number', min: Math.min(...values), max: Math.max(...values) };
  }
  return out;
}

/**
 * The inferred conditions, loosened until every observation of the tool is allowed: first as inferred,
 * then without each canonicaliser's condition in turn, then without any.
 */
function holdsForAll(u: ToolUse, when: Conditions, note: (dropped: string) => void): Conditions {
  const attempt = (w: Conditions) => allowsAll(u, w);
  if (attempt(when)) return when;
  let current = { ...when };
  for (const key of [...CANON_ORDER, 'args']) {
    if (!(key in current)) continue;
    const { [key]: _drop, ...rest } = current;
    note(`\`${key}\` constraints inferred did not hold for every call; left out`);
    current = rest;
    if (attempt(current)) return current;
  }
  return {};
}

function allowsAll(u: ToolUse, when: Conditions): boolean {
  const rule = { id: 'x', allow: u.tool, ...(Object.keys(when).length > 0 ? { when } : {}) };
  const loaded = loadPolicyObject({ version: 1, agents: { [u.agent]: { rules: [rule] } } }, '<suggest>');
  if (!loaded.ok) return false;
  const engine = compile(loaded.policy);
  return u.calls.every(
    (c) => engine.decide({ agent: c.agent, tool: c.tool, args: c.args }, c.time).effect === 'allow',
  );
}

function evidence(u: ToolUse): string {
  const times = u.calls.map((c) => c.time);
  const iso = (t: number) => new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const n = u.calls.length;
  return `${n} call${n === 1 ? '' : 's'}, first ${iso(Math.min(...times))}, last ${iso(Math.max(...times))}`;
}

function render(
  doc: Suggestion['doc'],
  comments: ReadonlyMap<string, string>,
  observations: readonly Observation[],
  source: string | undefined,
): string {
  const lines = [
    '# yaml-language-server: $schema=https://execlayer.dev/schema/policy.schema.json',
    `# Suggested by \`execlayer policy suggest\` from ${observations.length} call${observations.length === 1 ? '' : 's'}${source ? ` in ${source}` : ''}.`,
    '# Only tools the agents used are allowed, each with the constraints its calls showed. Review every',
    '# rule, replay the draft (`execlayer replay --policy <this file> --fail-on newly-denied`), then set',
    '# `mode: enforce`.',
    'version: 1',
    `mode: ${doc.mode}`,
    'agents:',
  ];
  for (const [agent, { rules }] of Object.entries(doc.agents)) {
    lines.push(`  ${yamlKey(agent)}:`, '    rules:');
    for (const r of rules) {
      lines.push(`      # ${comments.get(`${agent}\u0000${String(r.id)}`) ?? ''}`);
      lines.push(`      - id: ${flow(r.id)}`, `        allow: ${flow(r.allow)}`);
      if (r.when !== undefined) lines.push(`        when: ${flow(r.when)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function flow(v: unknown): string {
  return stringify(v, { collectionStyle: 'flow', lineWidth: 0 }).trimEnd();
}

function yamlKey(k: string): string {
  return /^[A-Za-z0-9_.@-]+$/.test(k) && !/^[0-9]/.test(k) ? k : JSON.stringify(k);
}
