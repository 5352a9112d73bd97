/**
 * A session's flow state, rebuilt from its deltas. Each delivered result adds one delta (its label, the
 * values it let the session see, the sequence steps it took); an approval bound to one result's digest
 * may endorse or declassify that result. The state is a pure fold of these two grow-only sets, so
 * any order of arrival — two replicas, a replay of the audit trail — yields the same state.
 */
import { BOTTOM, join, type Label, makeLabel, top, withReaders } from './label.js';

/** Most deltas one session keeps; past it the context is the most restrictive label (fail closed). */
export const MAX_DELTAS = 4096;
/** Most values one extracted set keeps (further values are not seen). */
export const MAX_SEEN = 10_000;

/** What one delivered result changed. Stored as JSON; `id` makes appends idempotent. */
export interface FlowDelta {
  /** `<decisionId>:<resultDigest>`: the same result recorded twice counts once. */
  id: string;
  /** The decision whose result this was: it names the audit records of the call and its outcome. */
  decisionId: string;
  tool: string;
  /** sha256 of the result as delivered to the agent. */
  resultDigest: string;
  /** Milliseconds since the epoch. */
  at: number;
  label: Label;
  /** Values extracted from trusted parts, by set name. */
  seen?: Record<string, string[]>;
  /** Sequence automata this result stepped: `[rule id, state reached]`. */
  steps?: [string, number][];
}

/** An approval, bound to one result's digest, that raised trust in it or widened its readers. */
export interface Endorsement {
  resultDigest: string;
  approvalId: string;
  at: number;
  /** `trusted`: the result no longer taints the session's integrity. */
  integrity?: 'trusted';
  /** Readers added to the result's label (declassification). */
  readers?: string[];
}

/** Everything a store keeps for one session. */
export interface SessionRecord {
  deltas: readonly FlowDelta[];
  endorsements: readonly Endorsement[];
}

/** The folded state the flow evaluator reads. */
export interface FlowState {
  /** Join of every delivered result's label (endorsements applied). */
  label: Label;
  seen: ReadonlyMap<string, ReadonlySet<string>>;
  /** Per sequence rule: the time each automaton state was last reached (index = state - 1). */
  steps: ReadonlyMap<string, readonly number[]>;
  /** The deltas, in a deterministic order (time, then id), endorsements applied: for taint chains. */
  deltas: readonly FlowDelta[];
  /** More deltas than `MAX_DELTAS`: the label is the most restrictive one. */
  saturated: boolean;
}

/** The state of a session that has been shown nothing. */
export const EMPTY_STATE: FlowState = Object.freeze({
  label: BOTTOM,
  seen: new Map(),
  steps: new Map(),
  deltas: [],
  saturated: false,
});

/** Folds a session's record into its state. `levels` is the number of confidentiality levels. */
export function foldState(record: SessionRecord, levels: number): FlowState {
  if (record.deltas.length === 0) return EMPTY_STATE;
  const endorsed = new Map<string, Endorsement[]>();
  for (const e of record.endorsements) {
    const list = endorsed.get(e.resultDigest);
    if (list) list.push(e);
    else endorsed.set(e.resultDigest, [e]);
  }
  const byId = new Map<string, FlowDelta>();
  for (const d of record.deltas) if (!byId.has(d.id)) byId.set(d.id, d);
  const deltas = [...byId.values()].sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let label: Label = BOTTOM;
  const seen = new Map<string, Set<string>>();
  const steps = new Map<string, number[]>();
  const out: FlowDelta[] = [];
  for (const raw of deltas) {
    const d = endorse(raw, endorsed.get(raw.resultDigest));
    out.push(d);
    label = join(label, d.label);
    for (const [set, values] of Object.entries(d.seen ?? {})) {
      let s = seen.get(set);
      if (!s) {
        s = new Set();
        seen.set(set, s);
      }
      for (const v of values) if (s.size < MAX_SEEN) s.add(v.toLowerCase());
    }
    for (const [rule, state] of d.steps ?? []) {
      let times = steps.get(rule);
      if (!times) {
        times = [];
        steps.set(rule, times);
      }
      // Max-merge per state: commutes, like the label join.
      const prev = times[state - 1];
      if (prev === undefined || d.at > prev) times[state - 1] = d.at;
    }
  }
  const saturated = byId.size > MAX_DELTAS;
  // INVARIANT: fail closed — a session with more history than is kept is treated as fully tainted.
  if (saturated) label = top(levels);
  return { label, seen, steps, deltas: out, saturated };
}

/** A delta with the endorsements of its result applied. */
function endorse(d: FlowDelta, list: Endorsement[] | undefined): FlowDelta {
  if (!list) return d;
  let label = d.label;
  for (const e of list) {
    if (e.integrity === 'trusted') label = makeLabel({ ...label, integrity: 'trusted' });
    if (e.readers) label = withReaders(label, e.readers);
  }
  return label === d.label ? d : { ...d, label };
}

/** The state after one more delta, without refolding (the runtime's view right after a delivery). */
export function withDelta(record: SessionRecord, delta: FlowDelta): SessionRecord {
  return { deltas: [...record.deltas, delta], endorsements: record.endorsements };
}

/**
 * The scope key of a session: agent, principal and channel session id, unambiguous. With `principal`
 * scope (clients that open a session per call) the session id is left out: everything the agent did for
 * that principal counts.
 */
export function sessionScope(
  a: { agent: string; onBehalfOf?: string; session?: string },
  scope: 'session' | 'principal' = 'session',
): string {
  return JSON.stringify([a.agent, a.onBehalfOf ?? '', scope === 'principal' ? '' : (a.session ?? '')]);
}
