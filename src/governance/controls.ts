/**
 * Controls of the evidence bundle: EU AI Act, NIST AI RMF, OWASP Top 10 for Agentic Applications 2026 and
 * NIST SP 800-53, each with an honest status computed from runtime data only:
 *
 *   evidence_observed  the records show the control operating in the window
 *   partial            some of it is shown; `notAssessed` says what is not
 *   gap                the records show it failing (an over-permission, a call after a stop, …)
 *   not_assessed       runtime data cannot show it
 *   not_applicable     the declarations say it does not apply (no high-risk agent, no provider role)
 *
 * Nothing is claimed that the records cannot show: plans, training, documentation and organisational
 * measures are listed under `notAssessed`, never counted as evidence.
 */
import type { AgentDeclaration } from './declaration.js';
import { type Evidence, median } from './evidence.js';
import type { GapReport } from './gap.js';

export type ControlStatus = 'evidence_observed' | 'partial' | 'gap' | 'not_assessed' | 'not_applicable';

/** One control's assessment. `records` are the seqs it cites; each has an inclusion proof in the bundle. */
export interface Control {
  id: string;
  framework: 'EU AI Act' | 'NIST AI RMF' | 'OWASP Agentic Top 10 2026' | 'NIST SP 800-53';
  title: string;
  status: ControlStatus;
  summary: string;
  evidence: Record<string, unknown>;
  records: number[];
  notAssessed: string[];
}

/** What the controls need to know about the log beyond the window. */
export interface LogFacts {
  /** Records below this seq were pruned (content removed, hashes kept). */
  prunedBefore: number;
  /** Time of the newest pruned record (null when nothing was pruned). */
  prunedUntilTime: number | null;
  /** Time of the first record of the log (null when empty). */
  logStart: number | null;
  /** Checkpoints in the bundle, their signatures and consistency proofs all verified at build time. */
  checkpoints: number;
  consistencyVerified: boolean;
  /** Records of the window after the newest checkpoint: not anchored, left out of the segment. */
  unanchored: number;
}

const SIX_MONTHS_MS = 183 * 24 * 60 * 60 * 1000;
/** Decisions faster than this are flagged as possible rubber-stamping. */
export const QUICK_APPROVAL_MS = 2000;

const cap = (xs: readonly number[], n = 20) => [...new Set(xs)].slice(0, n);

/** Evaluates every control. Deterministic: a pure function of its inputs. */
export function evaluateControls(
  ev: Evidence,
  gap: GapReport,
  declared: readonly AgentDeclaration[],
  log: LogFacts,
): Control[] {
  const highRisk = declared.filter((d) => d.risk.euAiAct?.highRisk);
  const providers = declared.filter((d) => d.risk.euAiAct?.role === 'provider');
  const anchors = [ev.firstSeq, ev.lastSeq].filter((x): x is number => x !== null);
  const approvalsDecided = ev.approvals.filter((a) => a.decided !== null);
  const dwell = approvalsDecided.flatMap((a) => (a.dwellMs === null ? [] : [a.dwellMs]));
  const quick = approvalsDecided.filter((a) => a.dwellMs !== null && a.dwellMs < QUICK_APPROVAL_MS);
  const undecided = ev.approvals.filter((a) => a.requested && !a.decided);
  const approvalSeqs = ev.approvals.flatMap((a) =>
    [a.requested?.seq, a.decided?.seq].filter((x): x is number => x !== undefined),
  );
  const stopSeqs = ev.stops.flatMap((s) =>
    [s.suspended.seq, s.firstRefusal?.seq, ...s.allowedAfter].filter((x): x is number => x !== undefined),
  );
  const afterStop = ev.stops.flatMap((s) => s.allowedAfter);
  const overRows = gap.rows.filter((r) => r.status === 'over_permitted');
  const undeclaredAllowed = gap.rows.filter(
    (r) => r.status === 'undeclared_attempt' && r.attempts.allowed > 0,
  );
  const undeclaredRows = gap.rows.filter((r) => r.status === 'undeclared_attempt');
  const oversightMissing = overRows.filter((r) =>
    r.detail.some((d) => d.startsWith('runs without approval')),
  );
  const policySeqs = ev.policies.flatMap((p) => p.activations.map((a) => a.seq));
  const retention = retentionFacts(ev, log);

  const controls: Control[] = [];
  const add = (c: Control) => controls.push({ ...c, records: cap(c.records, 50) });

  add({
    id: 'eu-ai-act-art-12',
    framework: 'EU AI Act',
    title: 'Art. 12 Record-keeping: automatic logging of events over the lifetime of the system',
    status:
      ev.decisions.total === 0
        ? 'gap'
        : log.unanchored > 0 || ev.pruned > 0
          ? 'partial'
          : 'evidence_observed',
    summary:
      ev.decisions.total === 0
        ? 'no decision was recorded in the window'
        : `${ev.records} records (${ev.decisions.total} decisions) in a hash chain under ${log.checkpoints} signed checkpoints${log.unanchored ? `; ${log.unanchored} newer records are not yet under a checkpoint and are left out` : ''}${ev.pruned ? `; ${ev.pruned} records in the window were pruned` : ''}`,
    evidence: {
      records: ev.records,
      decisions: ev.decisions,
      types: ev.types,
      points: ev.points,
      unanchored: log.unanchored,
      pruned: ev.pruned,
    },
    records: anchors,
    notAssessed: ['logging of events outside ExecLayer (model inputs and outputs, other systems)'],
  });
  const asks = ev.decisions.ask;
  add({
    id: 'eu-ai-act-art-14',
    framework: 'EU AI Act',
    title: 'Art. 14 Human oversight: approval before risky actions, the ability to interrupt (stop switch)',
    status:
      oversightMissing.length > 0 || afterStop.length > 0
        ? 'gap'
        : asks === 0 && ev.stops.length === 0
          ? 'not_assessed'
          : quick.length > 0 || undecided.length > 0 || ev.stops.length === 0 || asks === 0
            ? 'partial'
            : 'evidence_observed',
    summary: [
      `${plural(asks, 'call')} asked for approval; ${plural(approvalsDecided.length, 'approval')} decided (median time to decide ${fmtMs(median(dwell))})`,
      quick.length
        ? `${quick.length} decided in under ${QUICK_APPROVAL_MS / 1000} s (possible rubber-stamping)`
        : '',
      undecided.length ? `${undecided.length} never decided in the window` : '',
      `${plural(ev.stops.length, 'stop-switch press', 'stop-switch presses')}${afterStop.length ? `, ${plural(afterStop.length, 'call')} allowed after a press` : ''}`,
      oversightMissing.length
        ? `${oversightMissing.length} declared-approval capabilities run without approval`
        : '',
    ]
      .filter(Boolean)
      .join('; '),
    evidence: {
      asked: asks,
      approvals: ev.approvals.length,
      decided: approvalsDecided.length,
      medianDwellMs: median(dwell),
      quickApprovals: quick.map((a) => a.approvalId),
      undecided: undecided.map((a) => a.approvalId),
      stops: ev.stops.length,
      oversightMissing: oversightMissing.map((r) => `${r.agent} ${r.tool}`),
    },
    records: [...approvalSeqs, ...stopSeqs, ...oversightMissing.flatMap((r) => r.examples)],
    notAssessed: [
      'whether the people overseeing have the competence, training and authority Art. 14(4) requires',
    ],
  });
  add({
    id: 'eu-ai-act-art-19',
    framework: 'EU AI Act',
    title: 'Art. 19 Automatically generated logs kept by providers for at least six months',
    status: providers.length === 0 ? 'not_applicable' : retention.status,
    summary: providers.length === 0 ? 'no declared agent has the provider role' : retention.summary,
    evidence: { providers: providers.map((d) => d.id), ...retention.evidence },
    records: anchors,
    notAssessed: ['logs kept outside this audit log'],
  });
  const shortRetention = highRisk.filter((d) => d.retentionDays === undefined);
  add({
    id: 'eu-ai-act-art-26-6',
    framework: 'EU AI Act',
    title: 'Art. 26(6) Deployers keep the logs of high-risk systems for at least six months',
    status:
      highRisk.length === 0
        ? 'not_applicable'
        : retention.status === 'evidence_observed' && shortRetention.length > 0
          ? 'partial'
          : retention.status,
    summary:
      highRisk.length === 0
        ? 'no declared agent is high-risk'
        : `${highRisk.length} high-risk agent(s): ${retention.summary}${shortRetention.length ? `; no retention declared for ${shortRetention.map((d) => d.id).join(', ')}` : ''}`,
    evidence: {
      highRisk: highRisk.map((d) => ({ agent: d.id, retentionDays: d.retentionDays ?? null })),
      ...retention.evidence,
    },
    records: anchors,
    notAssessed: ['copies of the logs kept elsewhere; the retention the audit prune command is run with'],
  });
  add({
    id: 'eu-ai-act-art-72',
    framework: 'EU AI Act',
    title: 'Art. 72 Post-market monitoring: signals collected from operation',
    status:
      providers.length === 0 && highRisk.length === 0
        ? 'not_applicable'
        : ev.decisions.total === 0
          ? 'gap'
          : 'partial',
    summary: `signals: ${ev.decisions.deny} denials over ${Object.keys(ev.denialsByRule).length} rules, ${undeclaredRows.length} undeclared attempt rows, ${overRows.length} over-permitted rows, ${plural(ev.stops.length, 'stop')}`,
    evidence: {
      denialsByRule: ev.denialsByRule,
      undeclared: undeclaredRows.length,
      overPermitted: overRows.length,
    },
    records: undeclaredRows.flatMap((r) => r.examples),
    notAssessed: ['the post-market monitoring plan and its analysis'],
  });
  const undeclaredAgents = ev.agents.filter((a) => !declared.some((d) => d.id === a));
  add({
    id: 'nist-ai-rmf-govern-1.6',
    framework: 'NIST AI RMF',
    title: 'GOVERN 1.6 Inventory of AI systems',
    status: declared.length === 0 ? 'gap' : undeclaredAgents.length > 0 ? 'partial' : 'evidence_observed',
    summary: `${declared.length} agents declared; ${ev.agents.length} acted in the window${undeclaredAgents.length ? `, ${undeclaredAgents.length} of them undeclared (${undeclaredAgents.join(', ')})` : ''}`,
    evidence: { declared: declared.map((d) => d.id), acted: ev.agents, undeclared: undeclaredAgents },
    records: [],
    notAssessed: ['agents that never call a tool through ExecLayer'],
  });
  add({
    id: 'nist-ai-rmf-measure-2.6',
    framework: 'NIST AI RMF',
    title: 'MEASURE 2.6 The system fails safely (fail closed on errors)',
    status:
      ev.errors.notDenied.length > 0
        ? 'gap'
        : ev.decisions.total === 0
          ? 'not_assessed'
          : 'evidence_observed',
    summary: `${ev.errors.total} decisions ended in an error; ${ev.errors.notDenied.length} of them were not denied`,
    evidence: { errors: ev.errors.total, notDenied: ev.errors.notDenied, byCode: ev.decisions.byCode },
    records: ev.errors.notDenied,
    notAssessed: ['safety evaluations of the model itself'],
  });
  add({
    id: 'nist-ai-rmf-manage-2.4',
    framework: 'NIST AI RMF',
    title: 'MANAGE 2.4 Mechanisms to supersede, disengage or deactivate',
    status: afterStop.length > 0 ? 'gap' : ev.stops.length === 0 ? 'partial' : 'evidence_observed',
    summary:
      ev.stops.length === 0
        ? 'the stop switch was not used in the window'
        : `${plural(ev.stops.length, 'press', 'presses')}; time to halt ${ev.stops.map((s) => fmtMs(s.timeToHaltMs)).join(', ')}; ${afterStop.length} calls allowed after a press`,
    evidence: { stops: ev.stops },
    records: stopSeqs,
    notAssessed: ev.stops.length === 0 ? ['the stop switch working, since it was not pressed'] : [],
  });
  add({
    id: 'nist-ai-rmf-manage-4.1',
    framework: 'NIST AI RMF',
    title: 'MANAGE 4.1 Post-deployment monitoring and change management',
    status: ev.decisions.total === 0 ? 'gap' : 'partial',
    summary: `${plural(ev.policies.length, 'policy version')} decided in the window, ${plural(policySeqs.length, 'activation')} recorded`,
    evidence: {
      policies: ev.policies.map((p) => ({
        hash: p.hash,
        activations: p.activations,
        decisions: p.decisions,
      })),
    },
    records: policySeqs,
    notAssessed: ['the monitoring plan, incident response and decommissioning procedures'],
  });
  add({
    id: 'owasp-asi02',
    framework: 'OWASP Agentic Top 10 2026',
    title: 'ASI02 Tool Misuse and Exploitation',
    status:
      undeclaredAllowed.length > 0 ? 'gap' : ev.decisions.total === 0 ? 'not_assessed' : 'evidence_observed',
    summary: `${ev.decisions.total} tool calls decided before they ran; ${undeclaredRows.reduce((n, r) => n + r.attempts.total, 0)} undeclared attempts, ${undeclaredAllowed.reduce((n, r) => n + r.attempts.allowed, 0)} of them allowed`,
    evidence: {
      undeclared: undeclaredRows.map((r) => ({ agent: r.agent, tool: r.tool, attempts: r.attempts })),
    },
    records: undeclaredRows.flatMap((r) => r.examples),
    notAssessed: ['misuse inside a tool the policy allows with arguments the declaration also allows'],
  });
  add({
    id: 'owasp-asi03',
    framework: 'OWASP Agentic Top 10 2026',
    title: 'ASI03 Identity and Privilege Abuse',
    status: overRows.length > 0 ? 'gap' : ev.decisions.total === 0 ? 'not_assessed' : 'evidence_observed',
    summary: `${plural(overRows.length, 'permission')} exceeding what was declared; unknown agents refused ${ev.decisions.byCode.unknown_agent ?? 0} times`,
    evidence: {
      overPermitted: overRows.map((r) => ({
        agent: r.agent,
        tool: r.tool,
        rule: r.rule?.id ?? null,
        excess: r.detail,
      })),
    },
    records: overRows.flatMap((r) => r.examples),
    notAssessed: ['how agent credentials are issued and stored outside ExecLayer'],
  });
  add({
    id: 'owasp-asi04',
    framework: 'OWASP Agentic Top 10 2026',
    title: 'ASI04 Agentic Supply Chain Vulnerabilities (tool definitions pinned)',
    status:
      ev.tools.pinned + ev.tools.changed + ev.tools.approved === 0
        ? 'not_assessed'
        : ev.tools.changed > ev.tools.approved
          ? 'partial'
          : 'evidence_observed',
    summary: `tool definitions: ${ev.tools.pinned} pinned, ${ev.tools.changed} changed, ${ev.tools.approved} changes approved`,
    evidence: { ...ev.tools },
    records: ev.tools.changedSeqs,
    notAssessed: ['the provenance of the MCP servers and packages themselves'],
  });
  add({
    id: 'owasp-asi10',
    framework: 'OWASP Agentic Top 10 2026',
    title: 'ASI10 Rogue Agents (detected and halted)',
    status: afterStop.length > 0 ? 'gap' : ev.stops.length > 0 ? 'evidence_observed' : 'partial',
    summary: `${plural(undeclaredRows.length, 'undeclared-attempt row')} detected; ${plural(ev.stops.length, 'stop')}`,
    evidence: { undeclaredAgents: [...new Set(undeclaredRows.map((r) => r.agent))], stops: ev.stops.length },
    records: [...stopSeqs, ...undeclaredRows.flatMap((r) => r.examples)],
    notAssessed: ['behaviour that stays within the declared capabilities'],
  });
  const types = Object.keys(ev.types).sort();
  add({
    id: 'sp800-53-au-2',
    framework: 'NIST SP 800-53',
    title: 'AU-2 Event logging',
    status: ev.decisions.total === 0 ? 'gap' : 'evidence_observed',
    summary: `event types recorded: ${types.join(', ') || 'none'}`,
    evidence: { types: ev.types },
    records: anchors,
    notAssessed: [],
  });
  add({
    id: 'sp800-53-au-3',
    framework: 'NIST SP 800-53',
    title: 'AU-3 Content of audit records',
    status:
      ev.decisions.total === 0 ? 'not_assessed' : ev.incomplete.length > 0 ? 'partial' : 'evidence_observed',
    summary: `${ev.decisions.total - ev.incomplete.length} of ${ev.decisions.total} decisions carry agent, tool, time, effect, code, policy hash and argument digest`,
    evidence: { incomplete: ev.incomplete.slice(0, 50) },
    records: ev.incomplete,
    notAssessed: [],
  });
  add({
    id: 'sp800-53-au-9',
    framework: 'NIST SP 800-53',
    title: 'AU-9 Protection of audit information',
    status: log.consistencyVerified && log.checkpoints > 0 ? 'evidence_observed' : 'partial',
    summary: `hash chain, ${log.checkpoints} Ed25519-signed checkpoints, consistency proofs between them ${log.consistencyVerified ? 'verified' : 'not verified'}`,
    evidence: { checkpoints: log.checkpoints, consistencyVerified: log.consistencyVerified },
    records: anchors,
    notAssessed: ['access control to the database and the signing key'],
  });
  add({
    id: 'sp800-53-au-10',
    framework: 'NIST SP 800-53',
    title: 'AU-10 Non-repudiation',
    status: log.checkpoints > 0 ? 'evidence_observed' : 'partial',
    summary:
      'checkpoints and this bundle are signed with the audit log key; each decision names its agent from the authenticated channel',
    evidence: { checkpoints: log.checkpoints },
    records: anchors,
    notAssessed: ['binding of agent identities to people or organisations'],
  });
  add({
    id: 'sp800-53-au-11',
    framework: 'NIST SP 800-53',
    title: 'AU-11 Audit record retention',
    status: retention.status,
    summary: retention.summary,
    evidence: retention.evidence,
    records: anchors,
    notAssessed: ['the retention period the organisation defined'],
  });
  add({
    id: 'sp800-53-au-12',
    framework: 'NIST SP 800-53',
    title: 'AU-12 Audit record generation',
    status: ev.decisions.total === 0 ? 'gap' : 'evidence_observed',
    summary: `decisions recorded at enforcement points: ${ev.points.join(', ') || 'none'}`,
    evidence: { points: ev.points },
    records: anchors,
    notAssessed: [],
  });
  return controls;
}

function retentionFacts(
  ev: Evidence,
  log: LogFacts,
): { status: 'evidence_observed' | 'partial' | 'gap'; summary: string; evidence: Record<string, unknown> } {
  const horizon = ev.window.to - SIX_MONTHS_MS;
  const evidence = {
    prunedBefore: log.prunedBefore,
    prunedUntilTime: log.prunedUntilTime,
    logStart: log.logStart,
    horizon,
  };
  if (log.prunedUntilTime !== null && log.prunedUntilTime >= horizon) {
    return { status: 'gap', summary: 'records younger than six months were pruned', evidence };
  }
  if (log.logStart === null || log.logStart > horizon) {
    return {
      status: 'partial',
      summary: 'the log is younger than six months and nothing in it younger than six months was pruned',
      evidence,
    };
  }
  return { status: 'evidence_observed', summary: 'every record of the last six months is kept', evidence };
}

/** `1 call`, `2 calls`. */
function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function fmtMs(ms: number | null): string {
  if (ms === null) return 'n/a';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
