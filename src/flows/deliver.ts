/**
 * Labelling a result before the agent sees it: the tool's declared label (or the most restrictive one
 * for an undeclared tool), the first argument-aware override that holds, per-item labels, what an
 * upstream attached (which may only raise), and the parts withheld. Pure: the runtime stores the delta.
 */
import { jsonDigest } from '../canonical-json.js';
import { evalConditions } from '../engine/compile.js';
import type { ArgCheck } from '../policy/conditions.js';
import { readArg } from '../policy/conditions.js';
import type { Action, Json } from '../types.js';
import { type Segment, select, selectStrings } from './jsonpath.js';
import { join, type Label, makeLabel, parseLabel, top } from './label.js';
import { lookup, matchesStep } from './match.js';
import type { FlowState } from './state.js';
import type { CompiledFlows, CompiledItem, PartialLabel } from './types.js';

/** Where an upstream may attach its own label to an MCP result (`_meta`). It can only raise. */
export const LABEL_META_KEY = 'execlayer/label';
/** What a redacted item is replaced with. */
export const WITHHELD = '[withheld]';

/** What labelling a result produced. */
export interface Delivery {
  /** The result as the agent will see it (withheld items dropped or redacted). */
  result: unknown;
  label: Label;
  /** Values extracted from the result, when it is trusted. */
  seen: Record<string, string[]>;
  /** Sequence automata stepped by this result: `[rule id, state reached]`. */
  steps: [string, number][];
  withheld: { count: number; digests: string[] };
  /** Which declaration labelled it (`undeclared` when none did). */
  source: string;
}

/** Labels `result` of `action`'s tool, given the session state before it (for sequence steps). */
export function labelResult(
  flows: CompiledFlows,
  action: Action,
  result: unknown,
  state: FlowState,
  now: number,
): Delivery {
  const levels = flows.levels.length;
  const decl = lookup(flows.produces, action.tool)[0];
  const withheld = { count: 0, digests: [] as string[] };
  let delivered = result;
  let label: Label;
  let source = 'undeclared';
  if (!decl) {
    // INVARIANT: fail closed — a tool the policy says nothing about produces untrusted, most confidential.
    label = top(levels);
  } else {
    source = `produces.${decl.tool}`;
    label = decl.label;
    for (const [i, o] of decl.overrides.entries()) {
      // Only a condition that holds lowers a label: an error never makes a result trusted.
      if (evalConditions(o.when, action, now).kind === 'match') {
        label = merge(label, o.label);
        source = `produces.${decl.tool}.overrides[${i}]`;
        break;
      }
    }
    // Copy-on-write: only the containers on the way to a withheld item are copied.
    for (const w of decl.withhold) delivered = withhold(w, delivered, withheld);
    const envelope = label;
    for (const it of decl.items) {
      // Join is idempotent: one matching item raises the label as much as all of them.
      if (select(it.path, delivered).some((loc) => applies(it, loc.value)))
        label = join(label, merge(envelope, it.label ?? {}));
    }
  }
  const attached = upstreamLabel(delivered, flows.levels);
  if (attached) label = join(label, attached);
  const seen: Record<string, string[]> = {};
  if (decl && label.integrity === 'trusted') {
    for (const x of decl.extract) {
      const values = selectStrings(x.path, delivered);
      if (values.length > 0) seen[x.set] = values;
    }
  }
  return {
    result: delivered,
    label,
    seen,
    steps: stepSequences(flows, action.tool, state, now),
    withheld,
    source,
  };
}

/** The automata a delivered result of `tool` advances, and the state each reaches. */
function stepSequences(
  flows: CompiledFlows,
  tool: string,
  state: FlowState,
  now: number,
): [string, number][] {
  const out: [string, number][] = [];
  for (const seq of lookup(flows.steppers, tool)) {
    const times = state.steps.get(seq.id) ?? [];
    // The highest state this result reaches: step k needs state k (steps before it) already reached.
    for (let k = seq.steps.length - 1; k >= 0; k--) {
      const step = seq.steps[k];
      if (!step || !matchesStep(step, tool)) continue;
      const prev = k === 0 ? now : times[k - 1];
      if (prev === undefined) continue;
      if (seq.withinMs !== undefined && k > 0 && now - prev > seq.withinMs) continue;
      out.push([seq.id, k + 1]);
      break;
    }
  }
  return out;
}

/** An item entry applies when every `where` holds and not every `unless` does. */
function applies(it: CompiledItem, value: unknown): boolean {
  return holdsAll(it.where, value) && !(it.unless.length > 0 && holdsAll(it.unless, value));
}

function holdsAll(checks: readonly ArgCheck[], value: unknown): boolean {
  if (checks.length === 0) return true;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  for (const c of checks) {
    if (!c.test(readArg(value as { [k: string]: Json }, c.name)).ok) return false;
  }
  return true;
}

/** Drops or redacts the items one `withhold` entry selects, counting them and keeping their digests. */
function withhold(w: CompiledItem, doc: unknown, out: { count: number; digests: string[] }): unknown {
  const act = (v: unknown): boolean => {
    if (!applies(w, v)) return false;
    out.count++;
    out.digests.push(safeDigest(v));
    return true;
  };
  if (w.path.segments.length === 0) return act(doc) ? WITHHELD : doc;
  return rewrite(doc, w.path.segments, 0, act, w.action === 'drop');
}

const DROPPED: unique symbol = Symbol('dropped');

/**
 * `node` with the items the path selects (from segment `i` on) dropped or replaced where `act` says so.
 * Returns `node` itself when nothing under it changed, else a shallow copy: the input is never mutated.
 */
function rewrite(
  node: unknown,
  segs: readonly Segment[],
  i: number,
  act: (v: unknown) => boolean,
  drop: boolean,
): unknown {
  if (node === null || typeof node !== 'object') return node;
  const seg = segs[i] as Segment;
  const last = i === segs.length - 1;
  const visit = (child: unknown): unknown => {
    if (!last) return rewrite(child, segs, i + 1, act, drop);
    return act(child) ? (drop ? DROPPED : WITHHELD) : child;
  };
  if (Array.isArray(node)) {
    let copy: unknown[] | undefined;
    const at = (k: number) => {
      const next = visit(node[k]);
      if (next === node[k]) return;
      copy ??= node.slice();
      copy[k] = next;
    };
    if (seg.kind === 'index') {
      if (seg.index < node.length) at(seg.index);
    } else if (seg.kind === 'all') for (let k = 0; k < node.length; k++) at(k);
    return copy ? copy.filter((x) => x !== DROPPED) : node;
  }
  const o = node as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  const at = (k: string) => {
    const next = visit(o[k]);
    if (next === o[k]) return;
    copy ??= { ...o };
    if (next === DROPPED) delete copy[k];
    else copy[k] = next;
  };
  if (seg.kind === 'key') {
    if (Object.hasOwn(o, seg.key)) at(seg.key);
  } else if (seg.kind === 'all') for (const k of Object.keys(o)) at(k);
  return copy ?? node;
}

function merge(base: Label, over: PartialLabel): Label {
  return makeLabel({
    integrity: over.integrity ?? base.integrity,
    level: over.level ?? base.level,
    readers: over.readers ?? base.readers,
    tags: over.tags ?? base.tags,
  });
}

/** The label an upstream attached in `_meta`; a malformed one is the most restrictive label. */
function upstreamLabel(result: unknown, levels: readonly string[]): Label | undefined {
  if (result === null || typeof result !== 'object') return undefined;
  const meta = (result as { _meta?: unknown })._meta;
  if (meta === null || typeof meta !== 'object' || !Object.hasOwn(meta, LABEL_META_KEY)) return undefined;
  const raw = (meta as Record<string, unknown>)[LABEL_META_KEY];
  return parseLabel(raw, levels) ?? top(levels.length);
}

function safeDigest(v: unknown): string {
  try {
    return jsonDigest(v);
  } catch {
    return '';
  }
}
