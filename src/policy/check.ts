/**
 * check: semantic validation of a schema-valid policy. Compiles every condition (canonicalisers, CEL,
 * typed argument constraints) so a policy that loads can be evaluated, reports errors and warnings with
 * positions, and produces the checked policy that `compile()` indexes.
 */
import { jsonDigest } from '../canonical-json.js';
import { canonicalisers } from '../facts/index.js';
import type { CompiledFlows } from '../flows/types.js';
import type { ApprovalSpec, Effect, LimitScope, LimitSpec, Mode } from '../types.js';
import { compileCel } from './cel.js';
import { checkFlows } from './check-flows.js';
import { type ArgCheck, compileArgConstraint } from './conditions.js';
import { parseDuration } from './duration.js';
import { compileGlob, globCovers, isValidToolPattern } from './glob.js';
import { closest, type Problem } from './problems.js';
import type { PolicySource } from './source.js';
import {
  type AgentSpec,
  CANON_NAMES,
  type CanonName,
  type Conditions,
  type LimitInput,
  type PolicyDocument,
  type RuleSpec,
} from './types.js';

/** A compiled condition block (`when` or `unless`): all parts must pass. */
export interface CompiledConditions {
  canon: { name: CanonName; condition: unknown; args: readonly string[] | undefined }[];
  args: ArgCheck[];
  cel?: ReturnType<typeof compileCel> extends { ok: true; value: infer V } | { ok: false } ? V : never;
  /** Human summary, e.g. `path under [/srv/kb]`. */
  summary: string;
}

export interface CheckedRule {
  id: string;
  effect: Effect;
  patterns: string[];
  when?: CompiledConditions;
  unless?: CompiledConditions;
  limits: LimitSpec[];
  approval?: ApprovalSpec;
  mode?: Mode;
  reason?: string;
  /** Where it came from: the JSON path of the rule in the policy, for messages. */
  path: (string | number)[];
  line: number;
  /** The file it is in, for a bundle's rules. */
  file?: string;
}

export interface CheckedAgent {
  id: string;
  spec: AgentSpec;
  roles: string[];
  mode: Mode;
  rules: CheckedRule[];
  limits: LimitSpec[];
}

export interface CheckedPolicy {
  doc: PolicyDocument;
  /** sha256 of the canonical JSON of the document. */
  hash: string;
  mode: Mode;
  agents: Map<string, CheckedAgent>;
  redact: { all: ReadonlySet<string>; byTool: ReadonlyMap<string, ReadonlySet<string>> };
  file: string;
  /** The compiled `flows:` section, when the policy has one. */
  flows?: CompiledFlows;
}

const AGENT_ID = /^[A-Za-z0-9_.@:-]{1,128}$/;
const DEFAULT_APPROVAL_TTL = 15 * 60_000;
const SCOPES: readonly LimitScope[] = ['agent', 'role', 'tool', 'session', 'principal', 'global'];
/**
 * Allow-list fields of each canonicaliser ("every value is in the list"), from its declarations: under
 * `deny`/`ask` + `when` they rarely mean what the author thinks.
 */
const ALLOW_LISTS = Object.fromEntries(
  Object.entries(canonicalisers).map(([name, c]) => [
    name,
    Object.entries(c.fields)
      .filter(([, f]) => f.allowList === true)
      .map(([k]) => k),
  ]),
) as Record<CanonName, string[]>;

export function checkPolicy(
  doc: PolicyDocument,
  source: PolicySource,
  opts: { hash?: string } = {},
): { policy: CheckedPolicy; problems: Problem[] } {
  const problems: Problem[] = [];
  /** Warning codes each rule acknowledges, by the rule's JSON pointer. */
  const acknowledged: { at: string; codes: ReadonlySet<string> }[] = [];
  const report = (
    severity: Problem['severity'],
    code: string,
    message: string,
    path: (string | number)[],
    hint?: string,
    key = false,
  ) => {
    const at = source.locate(path, key);
    problems.push({
      severity,
      code,
      message,
      file: at.file ?? source.file,
      line: at.line,
      column: at.column,
      path: `/${path.join('/')}`,
      ...(hint ? { hint } : {}),
    });
  };

  const policyMode: Mode = doc.mode ?? 'enforce';
  // The same expression text compiles to the same immutable program: large policies repeat expressions
  // across agents, and compiling each once keeps the check linear in distinct expressions.
  const celCompiled = new Map<string, ReturnType<typeof compileCel>>();
  const roles = doc.roles ?? {};
  const seenIds = new Map<string, string>();
  const roleRules = new Map<string, CheckedRule[]>();
  const toolArgs = new Map<string, Set<string>>();
  for (const [name, spec] of Object.entries(doc.tools ?? {})) {
    if (spec.args) toolArgs.set(name, new Set(Object.keys(spec.args)));
  }

  const checkRule = (
    rule: RuleSpec,
    path: (string | number)[],
    defaultId: string,
  ): CheckedRule | undefined => {
    if (rule.acknowledge !== undefined)
      acknowledged.push({ at: `/${path.join('/')}`, codes: new Set(rule.acknowledge) });
    const effects = (['allow', 'deny', 'ask'] as const).filter((e) => rule[e] !== undefined);
    if (effects.length !== 1) {
      report(
        'error',
        'rule_effect',
        effects.length === 0
          ? 'rule has no effect: give exactly one of `allow`, `deny`, `ask`'
          : `rule has ${effects.join(' and ')}: give exactly one of \`allow\`, \`deny\`, \`ask\``,
        path,
        'split it into one rule per effect',
      );
      return undefined;
    }
    const effect = effects[0] as Effect;
    const raw = rule[effect] as string | string[];
    const patterns = Array.isArray(raw) ? raw : [raw];
    let ok = true;
    patterns.forEach((p, i) => {
      if (!isValidToolPattern(p)) {
        ok = false;
        report(
          'error',
          'bad_tool_pattern',
          `tool pattern \`${p}\` is not valid`,
          Array.isArray(raw) ? [...path, effect, i] : [...path, effect],
          'tool names use ASCII letters, digits and `_ . : / -`; `*` matches any run of characters',
        );
      } else if (p === '*' && effect === 'allow') {
        report(
          'warning',
          'allow_everything',
          'rule allows `*`: every tool, including ones added later',
          [...path, effect],
          'list the tools or use a prefix such as `crm.*`',
        );
      }
    });
    const id = rule.id ?? defaultId;
    if (rule.id !== undefined) {
      const prev = seenIds.get(rule.id);
      if (prev) {
        ok = false;
        report(
          'error',
          'duplicate_id',
          `rule id \`${rule.id}\` is already used at ${prev}`,
          [...path, 'id'],
          'rule ids must be unique',
        );
      } else {
        const at = source.locate([...path, 'id']);
        seenIds.set(rule.id, at.file ? `${at.file}:${at.line}` : `line ${at.line}`);
      }
    }
    const when = rule.when ? compileConditions(rule.when, [...path, 'when'], effect, false) : undefined;
    const unless = rule.unless
      ? compileConditions(rule.unless, [...path, 'unless'], effect, true)
      : undefined;
    if ((rule.when && !when) || (rule.unless && !unless)) ok = false;

    // Reads of arguments a known tool does not have.
    const exactTools = patterns.filter((p) => !p.includes('*') && toolArgs.has(p));
    for (const [block, compiled] of [
      ['when', when],
      ['unless', unless],
    ] as const) {
      if (!compiled) continue;
      const reads = new Set<string>([
        ...(compiled.cel?.argsRead ?? []),
        ...compiled.args.map((a) => a.name.split('.')[0] as string),
        ...compiled.canon.flatMap((c) => (c.args ?? []).map((a) => a.split('.')[0] as string)),
      ]);
      for (const tool of exactTools) {
        const known = toolArgs.get(tool) as Set<string>;
        for (const arg of reads) {
          if (!known.has(arg)) {
            report(
              'warning',
              'unknown_argument',
              `condition reads argument \`${arg}\`, which tool \`${tool}\` does not have`,
              [...path, block],
              `known arguments: ${[...known].join(', ') || '(none)'}`,
            );
          }
        }
      }
    }

    const limits = compileLimits(rule.limit, [...path, 'limit'], id);
    if (limits === undefined) ok = false;
    if (effect === 'deny' && rule.limit) {
      report(
        'warning',
        'limit_on_deny',
        'a limit on a deny rule is never consumed',
        [...path, 'limit'],
        'move it to the allow rule',
      );
    }
    let approval: ApprovalSpec | undefined;
    if (rule.approval) {
      if (effect !== 'ask') {
        ok = false;
        report(
          'error',
          'approval_without_ask',
          '`approval` applies only to `ask` rules',
          [...path, 'approval'],
          undefined,
          true,
        );
      }
      const ttl = rule.approval.ttl === undefined ? DEFAULT_APPROVAL_TTL : parseDuration(rule.approval.ttl);
      if (ttl === undefined) {
        ok = false;
        report(
          'error',
          'bad_duration',
          `\`${rule.approval.ttl}\` is not a duration`,
          [...path, 'approval', 'ttl'],
          'write e.g. 30s, 15m, 1h or 7d',
        );
      }
      approval = {
        ttlMs: ttl ?? DEFAULT_APPROVAL_TTL,
        uses: rule.approval.uses ?? 1,
        approvers: rule.approval.approvers ?? [],
      };
    } else if (effect === 'ask') {
      approval = { ttlMs: DEFAULT_APPROVAL_TTL, uses: 1, approvers: [] };
    }
    if (!ok) return undefined;
    const at = source.locate(path);
    return {
      id,
      effect,
      patterns,
      ...(when ? { when } : {}),
      ...(unless ? { unless } : {}),
      limits: limits ?? [],
      ...(approval ? { approval } : {}),
      ...(rule.mode ? { mode: rule.mode } : {}),
      ...(rule.reason ? { reason: rule.reason } : {}),
      path,
      line: at.line,
      ...(at.file ? { file: at.file } : {}),
    };
  };

  const compileConditions = (
    c: Conditions,
    path: (string | number)[],
    effect: Effect,
    negated: boolean,
  ): CompiledConditions | undefined => {
    let ok = true;
    const out: CompiledConditions = { canon: [], args: [], summary: '' };
    const parts: string[] = [];
    for (const name of CANON_NAMES) {
      const cond = c[name];
      if (cond === undefined) continue;
      const canon = canonicalisers[name];
      const r = canon.compile(cond);
      if (!r.ok) {
        ok = false;
        for (const e of r.errors) {
          const fieldPath = e.field ? [...path, name, ...e.field.split('.')] : [...path, name];
          report('error', 'bad_condition', `${name}: ${e.message}`, fieldPath);
        }
        continue;
      }
      const args = cond.args ?? (cond.arg !== undefined ? [cond.arg] : undefined);
      out.canon.push({ name, condition: r.value, args });
      const fields = Object.entries(cond)
        .filter(([k]) => k !== 'arg' && k !== 'args')
        .map(([k, v]) => `${k} ${showValue(v)}`);
      parts.push(`${name}${args ? ` (${args.join(', ')})` : ''}: ${fields.join('; ')}`);
      if (effect === 'allow' && !negated) {
        for (const w of canon.warnings?.(r.value) ?? []) {
          const at = w.field ? [...path, name, ...w.field.split('.')] : [...path, name];
          report('warning', w.code, `${name}: ${w.message}`, at, w.hint);
        }
      }
      if (!negated && effect !== 'allow') {
        const lists = ALLOW_LISTS[name].filter((k) => k in cond);
        if (lists.length > 0) {
          report(
            'warning',
            'deny_with_allow_list',
            `\`${effect}\` rule with \`when.${name}.${lists[0]}\` matches only when every value is in that list`,
            [...path, name],
            `to ${effect} everything outside the list, write \`unless: { ${name}: { ${lists[0]}: [...] } }\``,
          );
        }
      }
    }
    for (const [name, constraint] of Object.entries(c.args ?? {})) {
      const r = compileArgConstraint(name, constraint);
      if (!r.ok) {
        ok = false;
        report('error', 'bad_condition', `args.${name}: ${r.error}`, [...path, 'args', name]);
        continue;
      }
      if (r.neverMatches) {
        report(
          'warning',
          'never_matches',
          `args.${name}: ${r.neverMatches}`,
          [...path, 'args', name],
          'this rule can never match',
        );
      }
      out.args.push(r.value);
      parts.push(r.value.summary);
    }
    if (c.cel !== undefined) {
      let r = celCompiled.get(c.cel);
      if (r === undefined) {
        r = compileCel(c.cel);
        celCompiled.set(c.cel, r);
      }
      if (!r.ok) {
        ok = false;
        const base = source.offsetOf([...path, 'cel']);
        for (const p of r.problems) {
          // Positions inside a plain or quoted one-line scalar: offset from the scalar start (+1 for a quote).
          const line =
            base === undefined
              ? source.locate([...path, 'cel'])
              : source.position(base + quoteSkip(source, base) + p.offset);
          problems.push({
            severity: 'error',
            code: p.code,
            message: `cel: ${p.message}`,
            file: line.file ?? source.file,
            line: line.line,
            column: line.column,
            path: `/${[...path, 'cel'].join('/')}`,
            hint:
              p.code === 'cel_syntax'
                ? 'CEL syntax: https://cel.dev — e.g. `args.amount > 0 && args.amount <= 100`'
                : 'conditions read args, facts, agent, context, tool, session, principal and now',
          });
        }
      } else {
        out.cel = r.value;
        parts.push(`cel: ${c.cel}`);
      }
    }
    out.summary = parts.join('; ');
    return ok ? out : undefined;
  };

  const compileLimits = (
    input: LimitInput | LimitInput[] | undefined,
    path: (string | number)[],
    ruleId: string,
  ) => {
    if (!input) return [];
    const list = Array.isArray(input) ? input : [input];
    const out: LimitSpec[] = [];
    let ok = true;
    list.forEach((l, i) => {
      const p = Array.isArray(input) ? [...path, i] : path;
      const kinds = (['calls', 'sum', 'concurrent', 'steps'] as const).filter((k) => l[k] !== undefined);
      if (kinds.length !== 1) {
        ok = false;
        report('error', 'bad_limit', 'a limit needs exactly one of `calls`, `sum`, `concurrent`, `steps`', p);
        return;
      }
      const kind = kinds[0] as LimitSpec['kind'];
      let windowMs: number | undefined;
      if (kind === 'calls' || kind === 'sum') {
        if (l.per === undefined) {
          ok = false;
          report(
            'error',
            'bad_limit',
            `a \`${kind}\` limit needs \`per\` (a window such as minute, day or 15m)`,
            p,
          );
          return;
        }
        windowMs = parseDuration(l.per);
        if (windowMs === undefined) {
          ok = false;
          report(
            'error',
            'bad_duration',
            `\`${l.per}\` is not a window`,
            [...p, 'per'],
            'use second, minute, hour, day, week or e.g. 15m',
          );
          return;
        }
      } else if (l.per !== undefined) {
        report('warning', 'ignored_field', `\`per\` has no meaning for a \`${kind}\` limit`, [...p, 'per']);
      }
      if (kind === 'sum') {
        if (l.max === undefined) {
          ok = false;
          report('error', 'bad_limit', 'a `sum` limit needs `max`', p);
          return;
        }
        if (!/^args(\.[A-Za-z0-9_-]+)+$/.test(l.sum as string)) {
          ok = false;
          report(
            'error',
            'bad_limit',
            `\`sum\` must name an argument such as \`args.amount\`, not \`${l.sum}\``,
            [...p, 'sum'],
          );
          return;
        }
      } else if (l.max !== undefined) {
        report(
          'warning',
          'ignored_field',
          `\`max\` applies to \`sum\` limits; \`${kind}\` carries its own maximum`,
          [...p, 'max'],
        );
      }
      const scopes = l.scope === undefined ? ['agent'] : Array.isArray(l.scope) ? l.scope : [l.scope];
      const max = kind === 'sum' ? (l.max as number) : (l[kind] as number);
      out.push({
        id: l.id ?? `${ruleId}/${kind}${list.length > 1 ? `-${i}` : ''}`,
        kind,
        max,
        ...(windowMs !== undefined ? { windowMs } : {}),
        ...(kind === 'sum' ? { sumOf: l.sum as string } : {}),
        scope: scopes.filter((s): s is LimitScope => (SCOPES as readonly string[]).includes(s)),
      });
    });
    return ok ? out : undefined;
  };

  // Roles.
  for (const [role, rules] of Object.entries(roles)) {
    const compiled: CheckedRule[] = [];
    rules.forEach((r, i) => {
      const c = checkRule(r, ['roles', role, i], `${role}[${i}]`);
      if (c) compiled.push(c);
    });
    roleRules.set(role, compiled);
  }

  // Agents.
  const agents = new Map<string, CheckedAgent>();
  const usedRoles = new Set<string>();
  for (const [id, spec] of Object.entries(doc.agents)) {
    if (!AGENT_ID.test(id)) {
      report(
        'error',
        'bad_agent_id',
        `agent id \`${id}\` is not valid`,
        ['agents', id],
        'use ASCII letters, digits and `_ . @ : -`',
        true,
      );
      continue;
    }
    const rules: CheckedRule[] = [];
    for (const [i, role] of (spec.roles ?? []).entries()) {
      const rs = roleRules.get(role);
      if (!rs) {
        const guess = closest(role, Object.keys(roles));
        report(
          'error',
          'unknown_role',
          `agent \`${id}\` has unknown role \`${role}\``,
          ['agents', id, 'roles', i],
          guess ? `did you mean \`${guess}\`?` : 'define it under `roles:`',
        );
        continue;
      }
      usedRoles.add(role);
      rules.push(...rs);
    }
    (spec.rules ?? []).forEach((r, i) => {
      const c = checkRule(r, ['agents', id, 'rules', i], `${id}[${i}]`);
      if (c) rules.push(c);
    });
    const limits = compileLimits(spec.limits, ['agents', id, 'limits'], id) ?? [];
    const mode = spec.mode ?? policyMode;
    agents.set(id, { id, spec, roles: spec.roles ?? [], mode, rules, limits });
    reportDeadRules(id, rules, mode, report);
  }
  for (const role of Object.keys(roles)) {
    if (!usedRoles.has(role)) {
      report(
        'warning',
        'unused_role',
        `role \`${role}\` is not given to any agent: its rules never apply`,
        ['roles', role],
        undefined,
        true,
      );
    }
  }

  const flows = checkFlows(doc.flows, policyMode, report, compileConditions);
  const byTool = new Map<string, ReadonlySet<string>>();
  for (const [name, spec] of Object.entries(doc.tools ?? {}))
    if (spec.redact) byTool.set(name, new Set(spec.redact));
  const policy: CheckedPolicy = {
    doc,
    hash: opts.hash ?? jsonDigest(doc),
    mode: policyMode,
    agents,
    redact: { all: new Set(doc.redact ?? []), byTool },
    file: source.file,
    ...(flows ? { flows } : {}),
  };
  // A warning the rule's author acknowledged (`acknowledge: [code]`) is not shown again.
  const shown = problems.filter(
    (p) =>
      p.severity !== 'warning' ||
      !acknowledged.some((a) => (p.path === a.at || p.path.startsWith(`${a.at}/`)) && a.codes.has(p.code)),
  );
  return { policy, problems: shown };
}

/** Warns about allow/ask rules that an unconditional deny (in enforce mode) makes unreachable. */
function reportDeadRules(
  agent: string,
  rules: CheckedRule[],
  agentMode: Mode,
  report: (
    s: Problem['severity'],
    code: string,
    msg: string,
    path: (string | number)[],
    hint?: string,
  ) => void,
) {
  const denies = rules.filter(
    (r) => r.effect === 'deny' && !r.when && !r.unless && (r.mode ?? agentMode) === 'enforce',
  );
  for (const r of rules) {
    if (r.effect === 'deny') continue;
    for (const pattern of r.patterns) {
      const killer = denies.find((d) =>
        d.patterns.some((dp) =>
          globCovers(compileGlob(dp.toLowerCase()), compileGlob(pattern.toLowerCase())),
        ),
      );
      if (killer) {
        report(
          'warning',
          'dead_rule',
          `rule \`${r.id}\` can never ${r.effect} \`${pattern}\` for agent \`${agent}\`: deny rule \`${killer.id}\` (${killer.file ? `${killer.file}:` : 'line '}${killer.line}) covers every such call`,
          r.path,
          'narrow the deny with `when`/`unless`, or remove the dead rule',
        );
      }
    }
  }
}

/** A quoted scalar's text starts one character after the node. */
function quoteSkip(source: PolicySource, offset: number): number {
  const c = source.text[offset];
  return c === '"' || c === "'" ? 1 : 0;
}

/** A condition field's value as a reason shows it: `[a, b]`, `{ under: [/srv] }`, `true`. */
function showValue(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(showValue).join(', ')}]`;
  if (v !== null && typeof v === 'object')
    return `{ ${Object.entries(v)
      .map(([k, x]) => `${k}: ${showValue(x)}`)
      .join(', ')} }`;
  return String(v);
}
