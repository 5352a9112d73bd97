/**
 * compile → decide. `compile()` indexes a checked policy by agent and tool and returns an immutable
 * engine whose `decide()` never throws: every failure is a deny with a reason.
 */

import { messageOf } from '../errors.js';
import { canonicalisers } from '../facts/index.js';
import type { CelInputs } from '../policy/cel.js';
import type { CheckedAgent, CheckedPolicy, CheckedRule, CompiledConditions } from '../policy/check.js';
import { hasType, readArg } from '../policy/conditions.js';
import { compileGlob, type Glob, globMatch } from '../policy/glob.js';
import type { Action, Decision, DecisionCode, Effect, Json, LimitSpec, Mode } from '../types.js';
import { checkAction } from './action.js';
import { denyDecision } from './deny.js';
import { nextDecisionId } from './ids.js';
import { indexNames } from './tool-names.js';

/** The compiled, immutable decision function and what enforcement points need beside it. */
export interface Engine {
  /** Content hash of the policy (sha256 of its canonical JSON). */
  readonly hash: string;
  readonly policy: CheckedPolicy;
  /** Decides one action. Never throws. `now` (ms since epoch) is for CEL's `now` and tests. */
  decide(action: Action, now?: number): Decision;
  /** True when some allow/ask rule could let this agent call this tool (list filtering). */
  visible(agent: string, tool: string): boolean;
  /** Arguments as the audit trail may store them: fields the policy redacts are replaced. */
  redact(tool: string, args: { [k: string]: Json }): { [k: string]: Json };
  /**
   * The allow rules that could let this agent call this tool, whatever the arguments (exact names and
   * patterns, the same candidates `decide` tries). Empty for an unknown agent. Read-only: for search.
   */
  allowRules(agent: string, tool: string): readonly CheckedRule[];
}

/** Most values one condition reads from an array argument. */
const MAX_VALUES = 256;
const REDACTED = '[redacted]';

interface RuleEntry {
  rule: CheckedRule;
  glob: Glob;
}

interface AgentIndex {
  agent: CheckedAgent;
  /**
   * Exact-name rules by lower-cased tool name: one lookup finds every candidate. Deny and ask rules
   * match whatever the case (case tricks cannot dodge them); allow rules match the exact name only.
   */
  tools: Map<string, ToolEntry>;
  globs: Record<Effect, RuleEntry[]>;
  info: Record<string, Json>;
  /**
   * Limits an allow or ask by each rule carries: the rule's own, then the agent's. An ask's limits are
   * consumed by the runtime when an approved call runs.
   */
  limits: Map<CheckedRule, LimitSpec[]>;
  /** What this agent may call, for refusals (built once). */
  alternatives: { name: string; text: string }[];
}

interface ToolEntry {
  deny: CheckedRule[];
  ask: CheckedRule[];
  /** Allow rules per exact spelling of the name (almost always one). */
  allow: { name: string; rules: CheckedRule[] }[];
}

type Outcome = { kind: 'match' } | { kind: 'nomatch'; why: string } | { kind: 'error'; error: string };

/** Per-decision scratch: facts are derived once per (canonicaliser, argument) and shared by all rules. */
interface Ctx {
  action: Action;
  /** The caller's clock, if given; read lazily (only CEL needs it). */
  now: number | undefined;
  facts: Record<string, Json> | undefined;
  cache: Map<string, { ok: true; value: unknown } | { ok: false; error: string }> | undefined;
  agentInfo: Record<string, Json>;
  /** Arguments and context as CEL maps, converted once per decision. */
  cel: { args: unknown; context: unknown } | undefined;
}

export function compile(policy: CheckedPolicy): Engine {
  const index = new Map<string, AgentIndex>();
  const declared = declaredArgs(policy);
  const names = indexNames([
    ...[...policy.agents.values()].flatMap((a) => a.rules.flatMap((r) => r.patterns)),
    ...Object.keys(policy.doc.tools ?? {}),
  ]);
  for (const agent of policy.agents.values()) {
    const idx: AgentIndex = {
      agent,
      tools: new Map(),
      globs: { deny: [], ask: [], allow: [] },
      info: {
        id: agent.id,
        roles: agent.roles,
        ...(agent.spec.owner ? { owner: agent.spec.owner } : {}),
        ...(agent.spec.purpose ? { purpose: agent.spec.purpose } : {}),
        ...(agent.spec.risk ? { risk: agent.spec.risk } : {}),
      },
      limits: new Map(),
      alternatives: [],
    };
    for (const rule of agent.rules) {
      for (const raw of rule.patterns) {
        const pattern = rule.effect === 'allow' ? raw : raw.toLowerCase();
        if (pattern.includes('*')) {
          idx.globs[rule.effect].push({ rule, glob: compileGlob(pattern) });
          continue;
        }
        const key = raw.toLowerCase();
        let entry = idx.tools.get(key);
        if (!entry) {
          entry = { deny: [], ask: [], allow: [] };
          idx.tools.set(key, entry);
        }
        let list: CheckedRule[];
        if (rule.effect === 'allow') {
          let spelled = entry.allow.find((a) => a.name === raw);
          if (!spelled) {
            spelled = { name: raw, rules: [] };
            entry.allow.push(spelled);
          }
          list = spelled.rules;
        } else list = entry[rule.effect];
        if (!list.includes(rule)) list.push(rule);
      }
    }
    for (const rule of agent.rules) {
      if (rule.effect !== 'deny') idx.limits.set(rule, [...rule.limits, ...agent.limits]);
    }
    for (const entry of idx.tools.values()) {
      for (const { name, rules } of entry.allow) {
        if (idx.alternatives.length > 5) break;
        const cond = rules.every((r) => r.when) ? rules[0]?.when?.summary : undefined;
        idx.alternatives.push({ name, text: cond ? `\`${name}\` (when ${cond})` : `\`${name}\`` });
      }
    }
    for (const g of idx.globs.allow) {
      if (idx.alternatives.length > 5) break;
      idx.alternatives.push({ name: g.glob.source, text: `\`${g.glob.source}\`` });
    }
    index.set(agent.id, idx);
  }

  const finish = (
    mode: Mode,
    effect: Effect,
    code: DecisionCode,
    rule: CheckedRule | null,
    reason: string,
    ctx: Ctx | undefined,
    agent: AgentIndex | undefined,
  ): Decision => {
    const d: Decision = {
      id: nextDecisionId(),
      effect: mode === 'shadow' ? 'allow' : effect,
      rule: rule?.id ?? null,
      reason:
        mode === 'shadow' && effect !== 'allow'
          ? `shadow mode: would ${effect === 'ask' ? 'ask' : 'deny'} — ${reason}`
          : reason,
      policy: policy.hash,
      mode,
      code,
    };
    if (mode === 'shadow') d.wouldBe = effect;
    if (agent) d.roles = agent.agent.roles;
    if (ctx?.facts) d.facts = ctx.facts;
    // An ask carries its limits too: an approved call is an action that runs, and passes them.
    if (effect !== 'deny' && agent && rule) {
      const limits = agent.limits.get(rule);
      if (limits && limits.length > 0) d.limits = limits;
    }
    if (effect === 'ask' && rule?.approval) d.approval = rule.approval;
    return d;
  };

  const decide = (action: Action, now?: number): Decision => {
    try {
      return decideInner(action, now);
    } catch (e) {
      // INVARIANT: fail closed — decide() never throws; an unexpected error is a deny.
      return denyDecision('internal_error', `internal error while deciding: ${messageOf(e)}`, policy.hash);
    }
  };

  const decideInner = (action: Action, now: number | undefined): Decision => {
    const invalid = checkAction(action);
    if (invalid !== undefined)
      return finish('enforce', 'deny', 'invalid_action', null, invalid, undefined, undefined);
    const idx = index.get(action.agent);
    if (!idx) {
      return finish(
        'enforce',
        'deny',
        'unknown_agent',
        null,
        `agent \`${action.agent}\` is not in the policy: an unknown agent can do nothing`,
        undefined,
        undefined,
      );
    }
    const tool = action.tool;
    // INVARIANT: a look-alike of a known tool is refused before any rule, so it never reaches a
    // case-insensitive ask rule (an approval request) or a tool the upstream spells that way.
    const imitated = names.imitated(tool);
    if (imitated !== undefined) {
      return finish(
        'enforce',
        'deny',
        'invalid_action',
        null,
        `tool name \`${tool}\` only looks like \`${imitated}\`: call tools by their exact names`,
        undefined,
        idx,
      );
    }
    const undeclared = declared.get(tool)?.(action.args) ?? outsideTarget(action);
    if (undeclared !== undefined) {
      return finish(idx.agent.mode, 'deny', 'invalid_action', null, undeclared, undefined, idx);
    }
    const lower = tool.toLowerCase();
    const entry = idx.tools.get(lower);
    const ctx: Ctx = { action, now, facts: undefined, cache: undefined, agentInfo: idx.info, cel: undefined };
    // Deny beats ask beats allow. An error in a deny or ask rule counts as a match (fail closed).
    for (const effect of BLOCKING) {
      for (const rule of candidates(idx, effect, lower, entry)) {
        const o = evalRule(rule, ctx);
        if (o.kind === 'nomatch') continue;
        if (o.kind === 'error') {
          return finish(
            rule.mode ?? idx.agent.mode,
            'deny',
            'evaluation_error',
            rule,
            `denied: could not evaluate ${effect} rule \`${rule.id}\` (${o.error}), so it is treated as matching`,
            ctx,
            idx,
          );
        }
        if (effect === 'deny') {
          const reason =
            rule.reason ??
            `rule \`${rule.id}\` denies \`${tool}\` for agent \`${action.agent}\`${rule.when ? ` when ${rule.when.summary}` : ''}${rule.unless ? ` unless ${rule.unless.summary}` : ''}`;
          return finish(
            rule.mode ?? idx.agent.mode,
            'deny',
            'denied_by_rule',
            rule,
            withAlternatives(reason, idx, tool),
            ctx,
            idx,
          );
        }
        const reason =
          rule.reason ??
          `\`${tool}\` needs human approval under rule \`${rule.id}\`${rule.unless ? ` (no approval needed when ${rule.unless.summary})` : ''}: an approver must grant this exact call`;
        return finish(rule.mode ?? idx.agent.mode, 'ask', 'asked', rule, reason, ctx, idx);
      }
    }

    const misses: string[] = [];
    for (const rule of candidates(idx, 'allow', tool, entry)) {
      const o = evalRule(rule, ctx);
      if (o.kind === 'match') {
        return finish(
          rule.mode ?? idx.agent.mode,
          'allow',
          'allowed',
          rule,
          `allowed by rule \`${rule.id}\``,
          ctx,
          idx,
        );
      }
      misses.push(
        o.kind === 'error'
          ? `rule \`${rule.id}\` could not be evaluated: ${o.error}`
          : `rule \`${rule.id}\` allows it only when ${rule.when?.summary ?? 'its conditions hold'}${rule.unless ? ` and not when ${rule.unless.summary}` : ''} — ${o.why}`,
      );
    }
    const reason =
      misses.length > 0
        ? `no rule allows this call of \`${tool}\`: ${misses.slice(0, 3).join('; ')}`
        : withAlternatives(
            `agent \`${action.agent}\` has no capability for \`${tool}\` (default deny)`,
            idx,
            tool,
          );
    return finish(idx.agent.mode, 'deny', 'no_matching_rule', null, reason, ctx, idx);
  };

  const evalRule = (rule: CheckedRule, ctx: Ctx): Outcome => {
    if (rule.when) {
      const o = evalBlock(rule.when, ctx);
      if (o.kind !== 'match') return o;
    }
    if (rule.unless) {
      const o = evalBlock(rule.unless, ctx);
      if (o.kind === 'error') return o;
      if (o.kind === 'match')
        return { kind: 'nomatch', why: `the exception applies (${rule.unless.summary})` };
    }
    return MATCH;
  };

  const visible = (agent: string, tool: string): boolean => {
    const idx = index.get(agent);
    if (!idx || checkAction({ agent, tool, args: {} }) !== undefined) return false;
    // A look-alike of a known tool is refused before any rule, in every mode.
    if (names.imitated(tool) !== undefined) return false;
    if (idx.agent.mode === 'shadow') return true;
    const lower = tool.toLowerCase();
    const entry = idx.tools.get(lower);
    const blocked = candidates(idx, 'deny', lower, entry).some(
      (r) => !r.when && !r.unless && (r.mode ?? idx.agent.mode) === 'enforce',
    );
    if (blocked) return false;
    // INVARIANT: hidden means uncallable — visible whenever some call could proceed, so also when a
    // shadow-mode deny or ask rule names the tool (its calls proceed, the verdict is only recorded).
    const shadowed = (r: CheckedRule) => (r.mode ?? idx.agent.mode) === 'shadow';
    return (
      candidates(idx, 'allow', tool, entry).length > 0 ||
      candidates(idx, 'ask', lower, entry).length > 0 ||
      candidates(idx, 'deny', lower, entry).some(shadowed)
    );
  };

  const redact = (tool: string, args: { [k: string]: Json }): { [k: string]: Json } => {
    const perTool = policy.redact.byTool.get(tool);
    if (policy.redact.all.size === 0 && !perTool) return args;
    const out: { [k: string]: Json } = {};
    for (const k of Object.keys(args)) {
      out[k] = policy.redact.all.has(k) || perTool?.has(k) ? REDACTED : (args[k] as Json);
    }
    return out;
  };

  const allowRules = (agent: string, tool: string): readonly CheckedRule[] => {
    const idx = index.get(agent);
    if (!idx) return NONE;
    return candidates(idx, 'allow', tool, idx.tools.get(tool.toLowerCase()));
  };

  return Object.freeze({ hash: policy.hash, policy, decide, visible, redact, allowRules });
}

const MATCH: Outcome = { kind: 'match' };

/** The first argument the target itself does not declare (`action.declaredArgs`), as a refusal. */
function outsideTarget(action: Action): string | undefined {
  const declared = action.declaredArgs;
  if (declared === undefined) return undefined;
  for (const k of Object.keys(action.args)) {
    if (!declared.includes(k)) {
      const list = declared.map((d) => `\`${d}\``).join(', ') || 'none';
      return `\`${action.tool}\` takes no argument \`${k}\` (the arguments its server declares: ${list})`;
    }
  }
  return undefined;
}

function evalBlock(block: CompiledConditions, ctx: Ctx): Outcome {
  const args = ctx.action.args;
  for (const a of block.args) {
    const raw = readArg(args, a.name);
    // INVARIANT: a list is checked item by item unless the constraint is about the list itself.
    if (Array.isArray(raw) && !a.wholeList) {
      if (raw.length === 0) return { kind: 'nomatch', why: `argument \`${a.name}\` is an empty list` };
      for (const item of raw) {
        const v = a.test(item);
        if (!v.ok) return argOutcome(v, `an item of ${v.why}`);
      }
      continue;
    }
    const v = a.test(raw);
    if (!v.ok) return argOutcome(v, v.why);
  }
  let ruleFacts: Record<string, Json> | undefined;
  for (const c of block.canon) {
    const canon = canonicalisers[c.name];
    let names = c.args;
    if (!names) {
      // INVARIANT: every present default argument is checked (a move's `source` and `destination`).
      names = canon.defaultArgs.filter((n) => Object.hasOwn(args, n));
      if (names.length === 0) {
        return { kind: 'nomatch', why: `argument \`${canon.defaultArgs.join('` or `')}\` is missing` };
      }
    }
    const matchAll = canon.matchAll;
    const all: unknown[] | undefined = matchAll ? [] : undefined;
    let checked = 0;
    for (const name of names) {
      const raw = readArg(args, name);
      if (raw === undefined) return { kind: 'nomatch', why: `argument \`${name}\` is missing` };
      const values = Array.isArray(raw) ? raw : [raw];
      if (values.length > MAX_VALUES)
        return { kind: 'error', error: `argument \`${name}\` has more than ${MAX_VALUES} values` };
      for (let i = 0; i < values.length; i++) {
        const key = `${c.name}\u0000${name}\u0000${i}`;
        ctx.cache ??= new Map();
        let f = ctx.cache.get(key);
        if (!f) {
          f = canon.facts(values[i] as Json) as { ok: true; value: unknown } | { ok: false; error: string };
          ctx.cache.set(key, f);
          if (f.ok) {
            ctx.facts ??= {};
            const j = canon.toJson(f.value);
            const fk = `${c.name}.${name}`;
            const prev = ctx.facts[fk];
            ctx.facts[fk] =
              prev === undefined ? j : Array.isArray(prev) && i > 0 ? [...prev, j] : i > 0 ? [prev, j] : j;
          }
        }
        if (!f.ok) return { kind: 'error', error: `${c.name} argument \`${name}\`: ${f.error}` };
        ruleFacts ??= {};
        const seen = (ruleFacts[c.name] as Json[] | undefined) ?? [];
        seen.push(canon.toJson(f.value));
        ruleFacts[c.name] = seen;
        const m = canon.match(c.condition, f.value);
        if (!m.ok) return { kind: 'nomatch', why: m.why };
        all?.push(f.value);
        checked++;
      }
    }
    // INVARIANT: fail closed — a condition that checked no value (only empty lists) does not hold.
    if (checked === 0) {
      return { kind: 'nomatch', why: `argument \`${names.join('` or `')}\` holds no value to check` };
    }
    if (matchAll && all) {
      const m = matchAll(c.condition, all, names);
      if (!m.ok) return { kind: 'nomatch', why: m.why };
    }
  }
  if (block.cel) {
    const a = ctx.action;
    ctx.cel ??= { args: toCel(a.args), context: toCel(a.context ?? {}) };
    const inputs: CelInputs = {
      args: ctx.cel.args,
      facts: toCel(ruleFacts ?? {}),
      agent: toCel(ctx.agentInfo),
      context: ctx.cel.context,
      tool: a.tool,
      session: a.session ?? '',
      principal: a.onBehalfOf ?? '',
      now: BigInt(Math.floor(ctx.now ?? Date.now())),
    };
    const r = block.cel.program(inputs);
    if (!r.ok) return { kind: 'error', error: `cel: ${r.error}` };
    if (!r.value) return { kind: 'nomatch', why: 'its CEL condition is false for these arguments' };
  }
  return MATCH;
}

/**
 * Evaluates one compiled condition block (`when:`/`unless:`) against an action, outside a rule: the flow
 * policy's overrides and guards use the typed conditions exactly as rules do. Never throws.
 */
export function evalConditions(
  block: CompiledConditions,
  action: Action,
  now?: number,
): { kind: 'match' } | { kind: 'nomatch'; why: string } | { kind: 'error'; error: string } {
  const ctx: Ctx = {
    action,
    now,
    facts: undefined,
    cache: undefined,
    agentInfo: { id: action.agent },
    cel: undefined,
  };
  try {
    return evalBlock(block, ctx);
  } catch (e) {
    return { kind: 'error', error: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * A failed typed constraint: a value of another type, or a missing one, cannot be judged by it — an
 * error, so a deny or ask rule matches (fail closed: `"5000"` must not slip past `deny ... gt: 1000`).
 */
function argOutcome(v: { why: string; undecidable?: true }, why: string): Outcome {
  return v.undecidable ? { kind: 'error', error: why } : { kind: 'nomatch', why };
}

/**
 * Declared tools are strict: for a tool whose arguments the policy declares (`tools.<name>.args`),
 * returns a check that names the first argument outside the declaration (names compared exactly) or of
 * a type the declaration does not give.
 */
function declaredArgs(
  policy: CheckedPolicy,
): Map<string, (args: { [k: string]: Json }) => string | undefined> {
  const out = new Map<string, (args: { [k: string]: Json }) => string | undefined>();
  for (const [tool, spec] of Object.entries(policy.doc.tools ?? {})) {
    if (spec.args === undefined) continue;
    const types = new Map(
      Object.entries(spec.args).map(([k, a]) => [k, a.type === undefined ? undefined : [a.type].flat()]),
    );
    const list = [...types.keys()].map((k) => `\`${k}\``).join(', ') || 'none';
    out.set(tool, (args) => {
      for (const k of Object.keys(args)) {
        if (!types.has(k)) return `\`${tool}\` takes no argument \`${k}\` (its declared arguments: ${list})`;
        const want = types.get(k);
        const v = args[k] as Json;
        if (want !== undefined && !want.some((t) => hasType(v, t)))
          return `argument \`${k}\` of \`${tool}\` must be ${want.join(' or ')}`;
      }
      return undefined;
    });
  }
  return out;
}

const BLOCKING = ['deny', 'ask'] as const;

/**
 * JSON objects become Maps for CEL: the evaluator then never inspects object shapes, so a data key
 * such as `constructor` is just a key.
 */
function toCel(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(toCel);
  const m = new Map<string, unknown>();
  for (const k of Object.keys(v)) m.set(k, toCel((v as Record<string, unknown>)[k]));
  return m;
}
const NONE: readonly CheckedRule[] = [];

/** Rules of one effect that name this tool: exact entries first, then matching globs. */
function candidates(
  idx: AgentIndex,
  effect: Effect,
  name: string,
  entry: ToolEntry | undefined,
): readonly CheckedRule[] {
  let exact: readonly CheckedRule[] = NONE;
  if (entry) {
    if (effect !== 'allow') exact = entry[effect];
    else for (const a of entry.allow) if (a.name === name) exact = a.rules;
  }
  let out: CheckedRule[] | undefined;
  for (const e of idx.globs[effect]) {
    if (!globMatch(e.glob, name) || exact.includes(e.rule) || out?.includes(e.rule)) continue;
    out ??= exact.slice();
    out.push(e.rule);
  }
  return out ?? exact;
}

/** Appends what this agent may do instead, so the agent can act on the refusal. */
function withAlternatives(reason: string, idx: AgentIndex, tool: string): string {
  const others = idx.alternatives.filter((a) => a.name !== tool).slice(0, 5);
  return others.length > 0
    ? `${reason}; this agent may call ${others.map((a) => a.text).join(', ')}`
    : reason;
}
