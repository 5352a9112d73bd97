/**
 * Flow replay: run a candidate flow policy over recorded traffic and report which sessions it would have
 * tainted and which calls it would have refused, before it is enforced. Pure: the caller passes the
 * records (in order) and the candidate's decide function.
 *
 * The audit trail keeps digests of results, not results: replay labels each result by its tool's
 * declaration and argument-aware overrides only. Per-item labels, withholding and extracted values need
 * the results themselves, so a sink's `seen` requirement cannot be judged here: such calls are counted as
 * `unverifiable`, never as passing or refused.
 */
import { jsonDigest } from '../canonical-json.js';
import type { Action, AuditEvent, Decision, Json } from '../types.js';
import { flowVerdict } from './decide.js';
import { labelResult } from './deliver.js';
import { lookup } from './match.js';
import { type FlowDelta, foldState, sessionScope } from './state.js';
import type { CompiledFlows, CompiledSink, ToolIndex } from './types.js';

/** A recorded event with its place in the log. */
export interface ReplayedRecord {
  seq: number;
  time: number;
  event: AuditEvent | null;
}

/** One call the flow policy would have refused. */
export interface FlowReplayExample {
  seq: number;
  agent: string;
  session?: string;
  tool: string;
  effect: 'deny' | 'ask';
  rule: string;
  reason: string;
}

export interface FlowReplayReport {
  /** Session scopes that made at least one call. */
  sessions: number;
  /** Sessions whose context the candidate would have made untrusted. */
  tainted: number;
  /** Sessions with at least one call the candidate would deny / ask for. */
  blockedSessions: number;
  askedSessions: number;
  /** Calls the candidate's flow rules would deny / ask for. */
  denied: number;
  asked: number;
  /** Sink calls whose verdict rests on values seen in results, which the audit trail does not keep. */
  unverifiable: number;
  /** Decisions whose stored arguments were redacted: not replayable. */
  notReplayable: number;
  examples: FlowReplayExample[];
}

interface Session {
  deltas: FlowDelta[];
  tainted: boolean;
  denied: boolean;
  asked: boolean;
}

/** Replays `records` (in log order) under `flows`, deciding each call with the candidate's `decide`. */
export function replayFlows(
  records: Iterable<ReplayedRecord>,
  flows: CompiledFlows,
  decide: (action: Action, at: number) => Decision,
  options: { examples?: number } = {},
): FlowReplayReport {
  const cap = options.examples ?? 10;
  // Without the results there are no seen values: `seen` requirements are set aside and counted.
  const judged: CompiledFlows = { ...flows, sinks: mapIndex(flows.sinks, (s) => ({ ...s, seen: [] })) };
  const report: FlowReplayReport = {
    sessions: 0,
    tainted: 0,
    blockedSessions: 0,
    askedSessions: 0,
    denied: 0,
    asked: 0,
    unverifiable: 0,
    notReplayable: 0,
    examples: [],
  };
  const sessions = new Map<string, Session>();
  const ran = new Map<string, { action: Action; session: Session }>();
  const levels = flows.levels.length;
  for (const r of records) {
    const e = r.event;
    if (e === null) continue;
    if (e.type === 'outcome') {
      const call = ran.get(e.decisionId);
      ran.delete(e.decisionId);
      if (!call || !e.ok) continue;
      const state = foldState({ deltas: call.session.deltas, endorsements: [] }, levels);
      const d = labelResult(flows, call.action, undefined, state, r.time);
      call.session.deltas.push({
        id: `${e.decisionId}:${e.resultDigest ?? ''}`,
        decisionId: e.decisionId,
        tool: call.action.tool,
        resultDigest: e.resultDigest ?? '',
        at: r.time,
        label: d.label,
        ...(d.steps.length > 0 ? { steps: d.steps } : {}),
      });
      if (d.label.integrity === 'untrusted' && !call.session.tainted) {
        call.session.tainted = true;
        report.tainted++;
      }
      continue;
    }
    if (e.type !== 'decision') continue;
    const a = e.action;
    const args = a.args;
    if (
      args === null ||
      typeof args !== 'object' ||
      Array.isArray(args) ||
      jsonDigest(args) !== bare(a.argsDigest)
    ) {
      report.notReplayable++;
      continue;
    }
    const action: Action = { agent: a.agent, tool: a.tool, args: args as { [k: string]: Json } };
    if (a.session !== undefined) action.session = a.session;
    if (a.onBehalfOf !== undefined) action.onBehalfOf = a.onBehalfOf;
    const scope = sessionScope(action, flows.scope);
    let s = sessions.get(scope);
    if (!s) {
      s = { deltas: [], tainted: false, denied: false, asked: false };
      sessions.set(scope, s);
      report.sessions++;
    }
    const recorded = e.decision.wouldBe ?? e.decision.effect;
    if (recorded === 'allow') ran.set(e.decision.id, { action, session: s });
    let next: Decision;
    try {
      next = decide(action, r.time);
    } catch {
      continue;
    }
    if ((next.wouldBe ?? next.effect) === 'deny') continue;
    if (lookup(flows.sinks, action.tool).some((k) => k.seen.length > 0)) report.unverifiable++;
    const state = foldState({ deltas: s.deltas, endorsements: [] }, levels);
    const v = flowVerdict(judged, action, state, r.time);
    if (!v) continue;
    if (v.effect === 'deny') {
      report.denied++;
      if (!s.denied) report.blockedSessions++;
      s.denied = true;
    } else {
      report.asked++;
      if (!s.asked) report.askedSessions++;
      s.asked = true;
    }
    if (report.examples.length < cap) {
      report.examples.push({
        seq: r.seq,
        agent: a.agent,
        ...(a.session !== undefined ? { session: a.session } : {}),
        tool: a.tool,
        effect: v.effect,
        rule: v.rule,
        reason: v.reason,
      });
    }
  }
  return report;
}

function bare(digest: string): string {
  return digest.startsWith('sha256:') ? digest.slice(7) : digest;
}

function mapIndex(
  idx: ToolIndex<CompiledSink>,
  f: (s: CompiledSink) => CompiledSink,
): ToolIndex<CompiledSink> {
  const cache = new Map<CompiledSink, CompiledSink>();
  const m = (s: CompiledSink) => {
    let x = cache.get(s);
    if (!x) {
      x = f(s);
      cache.set(s, x);
    }
    return x;
  };
  return {
    exact: new Map([...idx.exact].map(([k, v]) => [k, v.map(m)])),
    globs: idx.globs.map((g) => ({ glob: g.glob, value: m(g.value) })),
  };
}
