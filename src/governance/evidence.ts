/**
 * Runtime evidence gathered from the audit records of a window, one record at a time: policy versions and
 * when they became active, approvals with approver, bound call and time to decide, stop-switch presses
 * with time to halt, denials per rule per day, record completeness and fail-closed error decisions.
 * Only what the records show is collected; nothing is inferred.
 */
import type { AuditRecord } from '../audit/record.js';

/** One approval, from its request to its decision. */
export interface ApprovalEvidence {
  approvalId: string;
  agent: string;
  tool: string;
  /** The bound call: canonical-args digest and, when known, the asking decision. */
  argsDigest: string;
  decisionId: string | null;
  requested: { time: number; seq: number } | null;
  decided: {
    status: 'granted' | 'denied' | 'expired';
    time: number;
    seq: number;
    approver: string | null;
  } | null;
  used: { time: number; seq: number } | null;
  /** Milliseconds from request to decision (null while undecided or when the request is outside the window). */
  dwellMs: number | null;
}

/** One stop-switch press and what happened after it. */
export interface StopEvidence {
  agent: string;
  by: string;
  reason: string | null;
  suspended: { time: number; seq: number };
  resumed: { time: number; seq: number } | null;
  /** The first refusal for `suspended` after the press, and the time from press to it. */
  firstRefusal: { time: number; seq: number } | null;
  timeToHaltMs: number | null;
  /** Calls allowed for the agent after the press and before resumption (must be none). */
  allowedAfter: number[];
}

export interface PolicyVersion {
  hash: string;
  /** Times the policy was loaded (activated), with record ids. */
  activations: { time: number; seq: number; source: string }[];
  decisions: number;
  firstDecision: { time: number; seq: number } | null;
  lastDecision: { time: number; seq: number } | null;
}

/** Everything the controls are evaluated on. */
export interface Evidence {
  window: { from: number; to: number };
  segment: { first: number; end: number };
  records: number;
  pruned: number;
  types: Record<string, number>;
  decisions: { total: number; allow: number; deny: number; ask: number; byCode: Record<string, number> };
  points: string[];
  agents: string[];
  /** Decisions missing a field AU-3 requires (agent, tool, rule or code, policy, id). */
  incomplete: number[];
  /** Error-coded decisions (evaluation, store, internal, upstream) and those that were not denied. */
  errors: { total: number; notDenied: number[] };
  policies: PolicyVersion[];
  approvals: ApprovalEvidence[];
  stops: StopEvidence[];
  /** Denials per deciding rule (or the code when no rule decided) per UTC day. */
  denialsByRule: Record<string, Record<string, number>>;
  tools: { pinned: number; changed: number; approved: number; changedSeqs: number[] };
  /** First and last record seqs of the window, for citation. */
  firstSeq: number | null;
  lastSeq: number | null;
}

const ERROR_CODES = new Set([
  'evaluation_error',
  'store_error',
  'internal_error',
  'upstream_error',
  'invalid_action',
]);

/** Collects evidence from the window's records, fed in log order. */
export class EvidenceCollector {
  private readonly e: Evidence;
  private readonly approvals = new Map<string, ApprovalEvidence>();
  private readonly policies = new Map<string, PolicyVersion>();
  private readonly openStops = new Map<string, StopEvidence>();
  private readonly points = new Set<string>();
  private readonly agents = new Set<string>();

  constructor(window: { from: number; to: number }, segment: { first: number; end: number }) {
    this.e = {
      window,
      segment,
      records: 0,
      pruned: 0,
      types: {},
      decisions: { total: 0, allow: 0, deny: 0, ask: 0, byCode: {} },
      points: [],
      agents: [],
      incomplete: [],
      errors: { total: 0, notDenied: [] },
      policies: [],
      approvals: [],
      stops: [],
      denialsByRule: {},
      tools: { pinned: 0, changed: 0, approved: 0, changedSeqs: [] },
      firstSeq: null,
      lastSeq: null,
    };
  }

  private policy(hash: string): PolicyVersion {
    let p = this.policies.get(hash);
    if (!p) {
      p = { hash, activations: [], decisions: 0, firstDecision: null, lastDecision: null };
      this.policies.set(hash, p);
    }
    return p;
  }

  observe(r: AuditRecord): void {
    const e = this.e;
    e.records++;
    e.firstSeq ??= r.seq;
    e.lastSeq = r.seq;
    const ev = r.event;
    if (ev === null) {
      e.pruned++;
      return;
    }
    e.types[ev.type] = (e.types[ev.type] ?? 0) + 1;
    const at = { time: r.time, seq: r.seq };
    switch (ev.type) {
      case 'decision': {
        const d = ev.decision;
        e.decisions.total++;
        e.decisions[d.effect]++;
        e.decisions.byCode[d.code] = (e.decisions.byCode[d.code] ?? 0) + 1;
        this.points.add(ev.point);
        this.agents.add(ev.action.agent);
        if (!ev.action.agent || !ev.action.tool || !d.id || !d.policy || !d.code || !ev.action.argsDigest) {
          e.incomplete.push(r.seq);
        }
        if (ERROR_CODES.has(d.code)) {
          e.errors.total++;
          if ((d.wouldBe ?? d.effect) !== 'deny') e.errors.notDenied.push(r.seq);
        }
        const p = this.policy(d.policy);
        p.decisions++;
        p.firstDecision ??= at;
        p.lastDecision = at;
        if (d.effect === 'deny') {
          const key = d.rule ?? `(${d.code})`;
          const day = new Date(r.time).toISOString().slice(0, 10);
          const per = e.denialsByRule[key] ?? {};
          per[day] = (per[day] ?? 0) + 1;
          e.denialsByRule[key] = per;
        }
        for (const [agent, stop] of this.openStops) {
          if (agent !== '*' && agent !== ev.action.agent) continue;
          if (d.code === 'suspended' && stop.firstRefusal === null) {
            stop.firstRefusal = at;
            stop.timeToHaltMs = r.time - stop.suspended.time;
          } else if (d.effect === 'allow' && d.wouldBe === undefined) stop.allowedAfter.push(r.seq);
        }
        break;
      }
      case 'approval': {
        let a = this.approvals.get(ev.approvalId);
        if (!a) {
          a = {
            approvalId: ev.approvalId,
            agent: ev.agent,
            tool: ev.tool,
            argsDigest: ev.argsDigest,
            decisionId: ev.decisionId ?? null,
            requested: null,
            decided: null,
            used: null,
            dwellMs: null,
          };
          this.approvals.set(ev.approvalId, a);
        }
        if (ev.status === 'requested') {
          a.requested = at;
          a.decisionId ??= ev.decisionId ?? null;
        } else if (ev.status === 'used') a.used = at;
        else {
          a.decided = { status: ev.status, ...at, approver: ev.approver ?? null };
          if (a.requested) a.dwellMs = r.time - a.requested.time;
        }
        break;
      }
      case 'agent': {
        if (ev.status === 'suspended') {
          const s: StopEvidence = {
            agent: ev.agent,
            by: ev.by,
            reason: ev.reason ?? null,
            suspended: at,
            resumed: null,
            firstRefusal: null,
            timeToHaltMs: null,
            allowedAfter: [],
          };
          this.openStops.set(ev.agent, s);
          e.stops.push(s);
        } else {
          const s = this.openStops.get(ev.agent);
          if (s) {
            s.resumed = at;
            this.openStops.delete(ev.agent);
          }
        }
        break;
      }
      case 'policy':
        if (ev.status === 'loaded' && ev.policy)
          this.policy(ev.policy).activations.push({ ...at, source: ev.source });
        break;
      case 'tool':
        e.tools[ev.status]++;
        if (ev.status === 'changed') e.tools.changedSeqs.push(r.seq);
        break;
    }
  }

  finish(): Evidence {
    const byHash = (a: { hash: string }, b: { hash: string }) =>
      a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0;
    return {
      ...this.e,
      points: [...this.points].sort(),
      agents: [...this.agents].sort(),
      policies: [...this.policies.values()].sort(byHash),
      approvals: [...this.approvals.values()].sort((a, b) =>
        a.approvalId < b.approvalId ? -1 : a.approvalId > b.approvalId ? 1 : 0,
      ),
    };
  }
}

/** Median of a list of numbers (null when empty). */
export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
