/** The evidence bundle's summary page: one self-contained HTML file (inline style, no scripts, no network). */
import type { Control, LogFacts } from './controls.js';
import { type Evidence, median } from './evidence.js';
import type { GapReport } from './gap.js';
import { GAP_STATUSES } from './gap.js';
import { STATUS_LABEL } from './gap-render.js';
import { esc, iso, page } from './html.js';

const CONTROL_LABEL: Record<Control['status'], string> = {
  evidence_observed: 'evidence observed',
  partial: 'partial',
  gap: 'gap',
  not_assessed: 'not assessed',
  not_applicable: 'not applicable',
};

export interface SummaryInput {
  evidence: Evidence;
  controls: Control[];
  gap: GapReport;
  policies: {
    hash: string;
    activations: { time: number; seq: number }[];
    decisions: number;
    file: string | null;
    inForce: boolean;
  }[];
  facts: LogFacts;
  keyId: string;
  window: { from: number; to: number };
}

const ms = (x: number | null) =>
  x === null ? 'n/a' : x < 1000 ? `${Math.round(x)} ms` : `${(x / 1000).toFixed(1)} s`;

/** The summary page. */
export function summaryHtml(s: SummaryInput): string {
  const e = s.evidence;
  const dwell = e.approvals.flatMap((a) => (a.dwellMs === null ? [] : [a.dwellMs]));
  const fig = (id: string, label: string, value: string | number) =>
    `<div class="figure"><span>${esc(label)}</span><b id="figure-${id}">${esc(value)}</b></div>`;
  const controls = s.controls
    .map(
      (
        c,
      ) => `<tr id="control-${esc(c.id)}" data-status="${c.status}"><td>${esc(c.framework)}</td><td>${esc(c.title)}</td>
<td class="s-${c.status}">${esc(CONTROL_LABEL[c.status])}</td><td>${esc(c.summary)}${c.notAssessed.length ? `<br><span class="muted">not assessed: ${esc(c.notAssessed.join('; '))}</span>` : ''}</td>
<td>${c.records.map((r) => `<code>#${r}</code>`).join(' ')}</td></tr>`,
    )
    .join('\n');
  const approvals = e.approvals
    .map(
      (
        a,
      ) => `<tr><td><code>${esc(a.approvalId)}</code></td><td>${esc(a.agent)}</td><td><code>${esc(a.tool)}</code> <span class="muted">${esc(a.argsDigest.slice(0, 16))}…</span></td>
<td>${a.decided ? `${esc(a.decided.status)} by ${esc(a.decided.approver ?? '?')}` : 'undecided'}</td><td class="dwell">${esc(ms(a.dwellMs))}</td></tr>`,
    )
    .join('\n');
  const stops = e.stops
    .map(
      (
        x,
      ) => `<tr><td>${esc(x.agent)}</td><td>${esc(x.by)}</td><td>${esc(x.reason ?? '')}</td><td>${esc(iso(x.suspended.time))}</td>
<td class="halt">${esc(ms(x.timeToHaltMs))}</td><td>${x.allowedAfter.length}</td></tr>`,
    )
    .join('\n');
  const policies = s.policies
    .map(
      (
        p,
      ) => `<tr><td><code>${esc(p.hash.slice(0, 16))}</code>${p.inForce ? ' (in force)' : ''}</td><td>${p.activations.map((a) => esc(iso(a.time))).join('<br>') || '-'}</td>
<td>${p.decisions}</td><td>${p.file ? `<code>${esc(p.file)}</code>` : 'text not supplied'}</td></tr>`,
    )
    .join('\n');
  const denials = Object.entries(e.denialsByRule)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(
      ([rule, days]) =>
        `<tr><td><code>${esc(rule)}</code></td><td>${Object.entries(days)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([d, n]) => `${esc(d)}: ${n}`)
          .join(', ')}</td></tr>`,
    )
    .join('\n');
  const gapFigures = GAP_STATUSES.map(
    (st) => `${esc(STATUS_LABEL[st])} <b id="gap-${st}">${s.gap.totals[st]}</b>`,
  ).join(' · ');
  return page(
    'ExecLayer evidence bundle',
    `<h1>Evidence bundle</h1>
<p class="muted">window ${esc(iso(s.window.from))} to ${esc(iso(s.window.to))}; audit records ${e.segment.first} to ${e.segment.end - 1}; signed with key <code>${esc(s.keyId)}</code>. Verify offline with <code>execlayer report verify &lt;bundle&gt;</code>.</p>
<div class="figures">
${fig('records', 'records', e.records)}${fig('decisions', 'decisions', e.decisions.total)}${fig('allowed', 'allowed', e.decisions.allow)}${fig('denied', 'denied', e.decisions.deny)}${fig('asked', 'asked', e.decisions.ask)}${fig('agents', 'agents', e.agents.length)}${fig('checkpoints', 'checkpoints', s.facts.checkpoints)}${fig('median-dwell', 'median time to approve', ms(median(dwell)))}
</div>
<h2>Controls</h2>
<table><thead><tr><th>framework</th><th>control</th><th>status</th><th>what the records show</th><th>cited records</th></tr></thead>
<tbody>${controls}</tbody></table>
<h2>Declared, permitted, attempted</h2>
<p>${gapFigures} — details in <code>gap.html</code>.</p>
<h2>Approvals</h2>
<table><thead><tr><th>approval</th><th>agent</th><th>bound call</th><th>decision</th><th>time to decide</th></tr></thead><tbody>${approvals}</tbody></table>
<h2>Stop switch</h2>
<table><thead><tr><th>agent</th><th>by</th><th>reason</th><th>pressed</th><th>time to halt</th><th>allowed after</th></tr></thead><tbody>${stops}</tbody></table>
<h2>Policy versions</h2>
<table><thead><tr><th>policy</th><th>activated</th><th>decisions</th><th>text</th></tr></thead><tbody>${policies}</tbody></table>
<h2>Denials per rule per day</h2>
<table><thead><tr><th>rule</th><th>denials</th></tr></thead><tbody>${denials}</tbody></table>`,
  );
}
