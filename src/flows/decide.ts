/**
 * The flow verdict of one call: given the session's folded state (passed in, never read here), do the
 * sinks, guards, sequence rules and presets that name this tool refuse it? A verdict only tightens:
 * the runtime turns an allow into ask or deny, an ask into deny, and never the other way.
 */
import { evalConditions } from '../engine/compile.js';
import { readArg } from '../policy/conditions.js';
import type { Action } from '../types.js';
import { covered, describeLabel } from './label.js';
import { lookup } from './match.js';
import { recipientsOf } from './recipients.js';
import type { FlowDelta, FlowState } from './state.js';
import type { CompiledFlows, CompiledGuard, CompiledSink } from './types.js';

/** Most links a taint chain names. */
export const MAX_CHAIN = 16;

/** Why a flow rule refuses a call, and the results that raised the context (the taint chain). */
export interface FlowVerdict {
  effect: 'deny' | 'ask';
  /** `sink:<tool>`, a guard or sequence id, or a preset name. */
  rule: string;
  reason: string;
  /** The decisions whose results raised the label, oldest first: each names its audit records. */
  chain: { decisionId: string; tool: string; resultDigest: string }[];
}

/** The strongest verdict of the flow rules on this call, or undefined when none refuses it. */
export function flowVerdict(
  flows: CompiledFlows,
  action: Action,
  state: FlowState,
  now: number,
): FlowVerdict | undefined {
  // Closures are avoided on this path: it runs for every call a flow rule names.
  let best: FlowVerdict | undefined;
  for (const sink of lookup(flows.sinks, action.tool)) {
    best = stronger(best, checkSink(flows, sink, action, state));
    if (best?.effect === 'deny') return best;
  }
  for (const g of lookup(flows.guards, action.tool)) {
    if (best?.effect === 'deny') break;
    if (best && g.effect === 'ask') continue;
    best = stronger(best, checkGuard(flows, g, action, state, now));
  }
  return best;
}

/** Deny beats ask; the first of equals is kept. */
function stronger(a: FlowVerdict | undefined, b: FlowVerdict | undefined): FlowVerdict | undefined {
  if (!b) return a;
  if (!a || (a.effect === 'ask' && b.effect === 'deny')) return b;
  return a;
}

function checkSink(
  flows: CompiledFlows,
  sink: CompiledSink,
  action: Action,
  state: FlowState,
): FlowVerdict | undefined {
  const L = state.label;
  const levels = flows.levels;
  const verdict = sinkVerdict.bind(undefined, sink, action.tool);
  if (state.saturated)
    return verdict('the session has more history than is kept, so it counts as fully tainted', []);
  if (sink.trusted && L.integrity === 'untrusted') {
    return verdict(
      'the session has been shown untrusted content',
      state.deltas.filter((d) => d.label.integrity === 'untrusted'),
    );
  }
  if (sink.maxLevel !== undefined && L.level > sink.maxLevel) {
    return verdict(
      `the session holds ${levels[L.level]} data and this sink accepts at most ${levels[sink.maxLevel]}`,
      state.deltas.filter((d) => d.label.level > (sink.maxLevel as number)),
    );
  }
  const r = sink.recipients;
  // With no readers set, anyone may receive what the session holds: no recipient can be outside.
  if (L.readers !== undefined && r.email.length + r.url.length + r.text.length > 0) {
    const got = recipientsOf(action.args, r);
    // INVARIANT: fail closed — recipients that cannot be read are not among any readers.
    if (!got.ok) return verdict(`its recipients cannot be read (${got.error})`, []);
    for (const who of got.values) {
      if (covered(who, L.readers)) continue;
      return verdict(
        `\`${who}\` is not among the readers of what the session has seen (${describeLabel(L, levels)})`,
        state.deltas.filter((d) => !covered(who, d.label.readers)),
      );
    }
  }
  for (const { arg, set } of sink.seen) {
    const v = readArg(action.args, arg);
    const values = v === undefined ? [] : Array.isArray(v) ? v : [v];
    if (values.length === 0) return verdict(`argument \`${arg}\` is missing`, []);
    const known = state.seen.get(set);
    for (const x of values) {
      if (typeof x === 'string' && known?.has(x.toLowerCase())) continue;
      return verdict(
        `\`${arg}\` = ${JSON.stringify(x).slice(0, 120)} was not seen in a trusted result (set \`${set}\`)`,
        [],
      );
    }
  }
  return undefined;
}

function sinkVerdict(
  sink: CompiledSink,
  tool: string,
  why: string,
  chain: readonly FlowDelta[],
): FlowVerdict {
  return {
    effect: sink.effect,
    rule: `sink:${sink.tool}`,
    reason: `${sink.reason ?? `\`${tool}\` is a sink and this session's context does not allow it`}: ${why}${chainText(chain)}`,
    chain: links(chain),
  };
}

function checkGuard(
  flows: CompiledFlows,
  g: CompiledGuard,
  action: Action,
  state: FlowState,
  now: number,
): FlowVerdict | undefined {
  // INVARIANT: fail closed — a condition that cannot be evaluated counts as holding for a guard.
  if (g.when && evalConditions(g.when, action, now).kind === 'nomatch') return undefined;
  if (g.unless && evalConditions(g.unless, action, now).kind === 'match') return undefined;
  const L = state.label;
  let chain: readonly FlowDelta[] = [];
  const why: string[] = [];
  if (g.context) {
    const c = g.context;
    if (c.integrity !== undefined && L.integrity !== c.integrity) return undefined;
    if (c.levelAtLeast !== undefined && L.level < c.levelAtLeast) return undefined;
    if (c.tagsAny && !c.tagsAny.some((t) => L.tags.includes(t))) return undefined;
    if (c.integrity === 'untrusted') {
      why.push('the session has been shown untrusted content');
      chain = state.deltas.filter((d) => d.label.integrity === 'untrusted');
    }
    if (c.levelAtLeast !== undefined) {
      why.push(`it holds ${flows.levels[L.level]} data`);
      const at = c.levelAtLeast;
      chain = [...new Set([...chain, ...state.deltas.filter((d) => d.label.level >= at)])];
    }
    if (c.tagsAny) {
      why.push(`it carries ${L.tags.filter((t) => c.tagsAny?.includes(t)).join(', ')}`);
    }
  }
  if (g.sequence) {
    const s = g.sequence;
    const last = state.steps.get(s.id)?.[s.steps.length - 1];
    if (last === undefined) return undefined;
    if (s.withinMs !== undefined && now - last > s.withinMs) return undefined;
    why.push(`it follows the sequence of rule \`${s.id}\``);
  }
  const kind =
    g.kind === 'lethal_trifecta'
      ? 'the lethal trifecta (untrusted input, sensitive data, external communication)'
      : g.kind === 'rule_of_two'
        ? 'the rule of two (untrusted input, sensitive data, a state change)'
        : `${g.kind} \`${g.id}\``;
  const base = g.reason ?? `${g.effect === 'deny' ? 'refused' : 'needs approval'} under ${kind}`;
  const text = why.length > 0 ? `${base}: ${why.join('; ')}` : base;
  const sorted = [...chain].sort((a, b) => a.at - b.at);
  return { effect: g.effect, rule: g.id, reason: `${text}${chainText(sorted)}`, chain: links(sorted) };
}

function links(chain: readonly FlowDelta[]): FlowVerdict['chain'] {
  return chain.slice(0, MAX_CHAIN).map((d) => ({
    decisionId: d.decisionId,
    tool: d.tool,
    resultDigest: d.resultDigest,
  }));
}

function chainText(chain: readonly FlowDelta[]): string {
  if (chain.length === 0) return '';
  const shown = chain
    .slice(0, 3)
    .map((d) => `\`${d.tool}\` (decision ${d.decisionId})`)
    .join(', ');
  return ` — tainted by ${shown}${chain.length > 3 ? ` and ${chain.length - 3} more` : ''}`;
}
