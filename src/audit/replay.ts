/**
 * Replay: re-decide recorded decisions with a candidate policy and report what would change. The engine is
 * not imported here — the caller passes the decide function — so this stays a pure library over records.
 */

import { jsonDigest } from '../canonical-json.js';
import type { Action, Decision, Effect, Json } from '../types.js';
import type { AuditRecord } from './record.js';

/** Decides one reconstructed action; `at` is the recorded time (ms) for time-dependent rules. */
export type DecideFn = (action: Action, at: number) => Decision;

/** How one replayed decision compares with the recorded one. */
export type ReplayChange = 'unchanged' | 'newly_allowed' | 'newly_denied' | 'newly_asked';

/** One replayed decision, for examples. */
export interface ReplayExample {
  seq: number;
  time: number;
  agent: string;
  tool: string;
  before: { effect: Effect; rule: string | null };
  after: { effect: Effect; rule: string | null; reason: string };
}

/** The replay report. */
export interface ReplayReport {
  /** Decision records looked at. */
  decisions: number;
  unchanged: number;
  newlyAllowed: number;
  newlyDenied: number;
  newlyAsked: number;
  /** Decisions whose stored arguments were redacted (they no longer match `argsDigest`): not re-decidable. */
  notReplayable: number;
  /** The decide function threw (it should not; counted, never hidden). */
  errors: number;
  /**
   * Refusals the policy did not make — the stop switch, or a store that could not answer — so there is
   * no policy verdict to compare with: counted, not compared.
   */
  runtimeRefusals: number;
  /** Calls the policy allowed and a limit refused: compared as allowed (limits are not rule changes). */
  limited: number;
  /** Changes per deciding rule of the candidate policy (`(none)` for default deny). */
  byRule: Record<
    string,
    { newlyAllowed: number; newlyDenied: number; newlyAsked: number; unchanged: number }
  >;
  examples: Record<Exclude<ReplayChange, 'unchanged'>, ReplayExample[]>;
}

/** Effect as enforce mode would have applied it: in shadow mode that is `wouldBe`. */
function verdict(d: Pick<Decision, 'effect' | 'wouldBe'>): Effect {
  return d.wouldBe ?? d.effect;
}

/** Codes of refusals the runtime made before or instead of the policy: no policy verdict recorded. */
const RUNTIME_CODES: ReadonlySet<string> = new Set([
  'suspended',
  'store_error',
  'upstream_error',
  'internal_error',
]);

/**
 * What the policy itself decided for a recorded decision, undefined when the runtime refused it without
 * the policy's verdict. A call that ran on a granted approval was an `ask`; a call a limit refused was
 * an `allow` (the limit, not the policy, refused it).
 */
export function policyVerdict(d: Pick<Decision, 'effect' | 'wouldBe' | 'code'>): Effect | undefined {
  if (RUNTIME_CODES.has(d.code)) return undefined;
  if (d.code === 'approval_granted' || d.code === 'approval_pending') return 'ask';
  if (d.code === 'limit_exceeded') return 'allow';
  return verdict(d);
}

function compare(before: Effect, after: Effect): ReplayChange {
  if (before === after) return 'unchanged';
  return after === 'allow' ? 'newly_allowed' : after === 'deny' ? 'newly_denied' : 'newly_asked';
}

/** Digest forms accepted: bare hex or `sha256:<hex>`. */
export function digestMatches(args: Json, digest: string): boolean {
  const hex = digest.startsWith('sha256:') ? digest.slice(7) : digest;
  return jsonDigest(args) === hex;
}

/**
 * Re-decide every decision record in `records` with `decide` and compare with what was recorded. Records of
 * other types are skipped. `examplesPerKind` caps the examples kept per change kind (default 10).
 */
export function replay(
  records: Iterable<AuditRecord>,
  decide: DecideFn,
  options: { examplesPerKind?: number } = {},
): ReplayReport {
  const cap = options.examplesPerKind ?? 10;
  const report: ReplayReport = {
    decisions: 0,
    unchanged: 0,
    newlyAllowed: 0,
    newlyDenied: 0,
    newlyAsked: 0,
    notReplayable: 0,
    errors: 0,
    runtimeRefusals: 0,
    limited: 0,
    byRule: {},
    examples: { newly_allowed: [], newly_denied: [], newly_asked: [] },
  };
  for (const r of records) {
    // Pruned records (event null) carry nothing to replay; other event types are not decisions.
    if (r.event === null || r.event.type !== 'decision') continue;
    report.decisions++;
    const { action: a, decision: d } = r.event;
    const before = policyVerdict(d);
    if (before === undefined) {
      report.runtimeRefusals++;
      continue;
    }
    if (d.code === 'limit_exceeded') report.limited++;
    const args = a.args;
    if (
      args === null ||
      typeof args !== 'object' ||
      Array.isArray(args) ||
      !digestMatches(args, a.argsDigest)
    ) {
      report.notReplayable++;
      continue;
    }
    const action: Action = { agent: a.agent, tool: a.tool, args };
    if (a.session !== undefined) action.session = a.session;
    if (a.onBehalfOf !== undefined) action.onBehalfOf = a.onBehalfOf;
    if (a.delegation !== undefined) action.delegation = a.delegation;
    if (a.declaredArgs !== undefined) action.declaredArgs = a.declaredArgs;
    let next: Decision;
    try {
      next = decide(action, r.time);
    } catch {
      report.errors++;
      continue;
    }
    const change = compare(before, verdict(next));
    const key = next.rule ?? '(none)';
    let per = report.byRule[key];
    if (per === undefined) {
      per = { newlyAllowed: 0, newlyDenied: 0, newlyAsked: 0, unchanged: 0 };
      report.byRule[key] = per;
    }
    switch (change) {
      case 'unchanged':
        report.unchanged++;
        per.unchanged++;
        continue;
      case 'newly_allowed':
        report.newlyAllowed++;
        per.newlyAllowed++;
        break;
      case 'newly_denied':
        report.newlyDenied++;
        per.newlyDenied++;
        break;
      case 'newly_asked':
        report.newlyAsked++;
        per.newlyAsked++;
        break;
    }
    const list = report.examples[change];
    if (list.length < cap) {
      list.push({
        seq: r.seq,
        time: r.time,
        agent: a.agent,
        tool: a.tool,
        before: { effect: before, rule: d.rule },
        after: { effect: verdict(next), rule: next.rule, reason: next.reason },
      });
    }
  }
  return report;
}
