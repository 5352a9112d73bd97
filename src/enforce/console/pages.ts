/**
 * The console's pages, rendered on the server from plain data. Every value is escaped by `html`; the
 * scripts (`/console/static/*.js`) only add live updates and the in-page proof check, and write text with
 * `textContent`.
 */
import type { Approval } from '../../approvals/types.js';
import type { ReplayReport } from '../../audit/replay.js';
import type { DiffLine } from './diff.js';
import { Html, html, pretty } from './html.js';
import type { LiveDecision, LiveFilter } from './live.js';
import { type ConsoleSession, may } from './session.js';

const NAV: Array<[string, string]> = [
  ['/console', 'Live'],
  ['/console/approvals', 'Approvals'],
  ['/console/agents', 'Agents'],
  ['/console/tools', 'Tools'],
  ['/console/policy', 'Policy'],
  ['/console/audit', 'Audit'],
];

/** The page frame: navigation, the signed-in user, the logout form. */
export function layout(title: string, s: ConsoleSession | undefined, body: Html, current = ''): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · ExecLayer console</title>
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
<script src="/console/static/verify.js" defer></script>
</head>
<body>
<header>
<a class="brand" href="/console">ExecLayer</a>
${
  s
    ? html`<nav aria-label="Main"><ul>${NAV.map(
        ([href, label]) =>
          html`<li><a href="${href}"${current === href ? new Html(' aria-current="page"') : ''}>${label}</a></li>`,
      )}</ul></nav>
<form class="who" method="post" action="/console/logout">${csrfField(s)}<span>${s.user} (${s.roles.join(', ')})</span> <button type="submit">Log out</button></form>`
    : ''
}
</header>
<main id="main">
<h1>${title}</h1>
${body}
</main>
</body>
</html>`;
}

/** The hidden CSRF field every form carries. */
export function csrfField(s: ConsoleSession): Html {
  return html`<input type="hidden" name="_csrf" value="${s.csrf}">`;
}

export function loginPage(loginToken: string, error?: string): Html {
  return layout(
    'Log in',
    undefined,
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<form method="post" action="/console/login" class="login">
<input type="hidden" name="_csrf" value="${loginToken}">
<label for="key">API key or token</label>
<input id="key" name="key" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
<p>Use a credential from the gateway configuration with the <code>viewer</code>, <code>approver</code>,
<code>operator</code> or <code>admin</code> role.</p>`,
  );
}

export function messagePage(
  s: ConsoleSession | undefined,
  title: string,
  message: string,
  back?: string,
): Html {
  return layout(
    title,
    s,
    html`<p class="error" role="alert">${message}</p>${back ? html`<p><a href="${back}">Back</a></p>` : ''}`,
  );
}

function time(ms: number | undefined): Html {
  if (ms === undefined || !Number.isFinite(ms)) return html`—`;
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>`;
}

/** A duration in words: `850 ms`, `12 s`, `4 min`, `3 h`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 3_600_000)} h`;
}

function effectBadge(effect: string): Html {
  return html`<span class="effect effect-${effect === 'allow' || effect === 'deny' || effect === 'ask' ? effect : 'other'}">${effect}</span>`;
}

export function livePage(s: ConsoleSession, rows: LiveDecision[], filter: LiveFilter): Html {
  const field = (name: keyof LiveFilter, label: string) =>
    html`<label>${label} <input name="${name}" value="${filter[name] ?? ''}" size="16"></label> `;
  return layout(
    'Live decisions',
    s,
    html`<form method="get" action="/console" class="filters" id="filters">
${field('agent', 'Agent')}${field('tool', 'Tool')}
<label>Effect <select name="effect">${['', 'allow', 'deny', 'ask'].map(
      (e) =>
        html`<option value="${e}"${filter.effect === e ? new Html(' selected') : ''}>${e || 'any'}</option>`,
    )}</select></label>
${field('rule', 'Rule')}
<button type="submit">Filter</button>
</form>
<p id="live-status" role="status" aria-live="polite">Showing the latest decisions.</p>
<table class="decisions" id="decisions">
<thead><tr><th scope="col">Time</th><th scope="col">Agent</th><th scope="col">Tool</th><th scope="col">Effect</th><th scope="col">Rule</th><th scope="col">Reason</th></tr></thead>
<tbody>
${rows.map(
  (d) =>
    html`<tr data-id="${d.id}"><td>${time(d.time)}</td><td>${d.agent}</td><td><a href="/console/decisions/${encodeURIComponent(d.id)}">${d.tool}</a></td><td>${effectBadge(d.effect)}</td><td>${d.rule ?? 'none'}</td><td>${d.reason}</td></tr>`,
)}
</tbody>
</table>`,
    '/console',
  );
}

export interface DecisionView {
  seq: number;
  time: number;
  hash: string;
  event: {
    decision: {
      id: string;
      effect: string;
      wouldBe?: string;
      rule: string | null;
      reason: string;
      policy: string;
      code: string;
      mode: string;
      approvalId?: string;
      facts?: unknown;
    };
    action: {
      agent: string;
      tool: string;
      session?: string;
      onBehalfOf?: string;
      args: unknown;
      argsDigest: string;
    };
    point: string;
    latencyUs: number;
  };
  related: Array<{ seq: number; time: number; type: string; summary: string }>;
}

export function decisionPage(s: ConsoleSession, v: DecisionView): Html {
  const d = v.event.decision;
  const a = v.event.action;
  return layout(
    `Decision ${d.id}`,
    s,
    html`<dl class="facts">
<dt>Time</dt><dd>${time(v.time)}</dd>
<dt>Agent</dt><dd>${a.agent}</dd>
${a.onBehalfOf !== undefined ? html`<dt>On behalf of</dt><dd>${a.onBehalfOf}</dd>` : ''}
${a.session !== undefined ? html`<dt>Session</dt><dd>${a.session}</dd>` : ''}
<dt>Tool</dt><dd>${a.tool}</dd>
<dt>Effect</dt><dd>${effectBadge(d.effect)}${d.wouldBe ? html` (would be ${d.wouldBe}, shadow mode)` : ''}</dd>
<dt>Rule</dt><dd>${d.rule ?? 'none (default deny)'}</dd>
<dt>Code</dt><dd>${d.code}</dd>
<dt>Reason</dt><dd>${d.reason}</dd>
<dt>Policy</dt><dd><code>${d.policy}</code></dd>
<dt>Point</dt><dd>${v.event.point}, decided in ${(v.event.latencyUs / 1000).toFixed(2)} ms</dd>
${d.approvalId ? html`<dt>Approval</dt><dd>${d.approvalId}</dd>` : ''}
<dt>Arguments digest</dt><dd><code>${a.argsDigest}</code></dd>
</dl>
<h2>Arguments</h2>
<p class="note">As the audit trail stores them: fields the policy redacts are replaced.</p>
<pre class="json" id="args">${pretty(a.args)}</pre>
${d.facts ? html`<h2>Facts</h2><pre class="json">${pretty(d.facts)}</pre>` : ''}
<h2>Outcome and related records</h2>
${
  v.related.length === 0
    ? html`<p>None recorded (yet).</p>`
    : html`<ul>${v.related.map((r) => html`<li>${time(r.time)} record ${r.seq}: ${r.type} — ${r.summary}</li>`)}</ul>`
}
<h2>Audit inclusion proof</h2>
<section id="proof" data-seq="${v.seq}" data-hash="${v.hash}" data-decision="${d.id}">
<p>Record <strong>${v.seq}</strong>, hash <code>${v.hash}</code>.</p>
<p id="proof-status" role="status" aria-live="polite">The proof is checked in this page when scripts run.</p>
</section>`,
  );
}

export interface ApprovalRow extends Approval {
  firstApprover?: string;
}

export function approvalsPage(
  s: ConsoleSession,
  pending: ApprovalRow[],
  decided: Approval[],
  now: number,
  twoPerson: boolean,
): Html {
  const canDecide = may(s.roles, 'approve');
  return layout(
    'Approvals',
    s,
    html`${twoPerson ? html`<p class="note">Two-person rule: a grant needs two different approvers.</p>` : ''}
<h2>Pending (${pending.length})</h2>
${pending.length === 0 ? html`<p>No call is waiting for approval.</p>` : ''}
${pending.map(
  (a) => html`<article class="approval" id="${a.id}" aria-labelledby="h-${a.id}">
<h3 id="h-${a.id}">${a.agent} → ${a.tool}</h3>
<dl class="facts">
<dt>Approval</dt><dd><code>${a.id}</code></dd>
<dt>Rule</dt><dd>${a.rule}</dd>
<dt>Reason</dt><dd>${a.reason}</dd>
<dt>Arguments digest</dt><dd><code>${a.argsDigest}</code></dd>
<dt>Policy</dt><dd><code>${a.policy}</code></dd>
${a.session !== undefined ? html`<dt>Session</dt><dd>${a.session}</dd>` : ''}
${a.onBehalfOf !== undefined ? html`<dt>On behalf of</dt><dd>${a.onBehalfOf}</dd>` : ''}
<dt>Approvers</dt><dd>${a.approvers.length > 0 ? a.approvers.join(', ') : 'any approver but the agent'}</dd>
<dt>Waiting</dt><dd>${duration(now - a.createdAt)}; expires ${time(a.expiresAt)}</dd>
${a.firstApprover ? html`<dt>First approval</dt><dd>${a.firstApprover}</dd>` : ''}
</dl>
<pre class="json">${pretty(a.args)}</pre>
${
  !canDecide
    ? html`<p class="note">Your role cannot decide approvals.</p>`
    : s.user === a.agent
      ? html`<p class="note">This is your own call: another approver must decide it.</p>`
      : html`<form method="post" action="/console/approvals/${encodeURIComponent(a.id)}/decide" class="decide">
${csrfField(s)}
<label for="note-${a.id}">Reason</label>
<input id="note-${a.id}" name="note" maxlength="2000" required>
<button type="submit" name="verdict" value="approve">Approve</button>
<button type="submit" name="verdict" value="deny" class="danger">Deny</button>
</form>`
}
</article>`,
)}
<h2>Recently decided</h2>
<table>
<thead><tr><th scope="col">Approval</th><th scope="col">Agent</th><th scope="col">Tool</th><th scope="col">Status</th><th scope="col">By</th><th scope="col">Reason</th><th scope="col">Time to decide</th></tr></thead>
<tbody>${decided.map(
      (a) =>
        html`<tr><td><code>${a.id}</code></td><td>${a.agent}</td><td>${a.tool}</td><td>${a.status}</td><td>${a.approver ?? '—'}</td><td>${a.note ?? ''}</td><td>${a.decidedAt !== undefined ? duration(a.decidedAt - a.createdAt) : '—'}</td></tr>`,
    )}</tbody>
</table>`,
    '/console/approvals',
  );
}

export interface AgentRow {
  id: string;
  owner?: string | undefined;
  purpose?: string | undefined;
  suspended?: { by: string; reason?: string | undefined; at: number } | undefined;
  limits: Array<{ id: string; kind: string; max: number; window?: string; used?: number }>;
  refusals: Array<{ time: number; tool: string; code: string; reason: string }>;
}

export function agentsPage(
  s: ConsoleSession,
  agents: AgentRow[],
  stop: { by: string; reason?: string | undefined; at: number } | undefined,
): Html {
  const canOperate = may(s.roles, 'operate');
  const reasonField = (id: string) =>
    html`<label for="${id}">Reason</label> <input id="${id}" name="reason" maxlength="2000">`;
  return layout(
    'Agents',
    s,
    html`<section class="stop" aria-labelledby="h-stop">
<h2 id="h-stop">Emergency stop</h2>
${
  stop
    ? html`<p class="error">Every agent is stopped, by ${stop.by} at ${time(stop.at)}${stop.reason ? html`: ${stop.reason}` : ''}.</p>`
    : html`<p>Not set: agents act as their policy allows.</p>`
}
${
  canOperate
    ? stop
      ? html`<form method="post" action="/console/resume-all">${csrfField(s)}<button type="submit">Lift the emergency stop</button></form>`
      : html`<form method="post" action="/console/stop">${csrfField(s)}${reasonField('stop-reason')} <button type="submit" class="danger">Stop every agent</button></form>`
    : ''
}
</section>
${agents.map(
  (a) => html`<article class="agent" aria-labelledby="h-agent-${a.id}">
<h2 id="h-agent-${a.id}">${a.id}</h2>
<p>${a.owner ? html`Owner ${a.owner}. ` : ''}${a.purpose ?? ''}</p>
${
  a.suspended
    ? html`<p class="error">Suspended by ${a.suspended.by} at ${time(a.suspended.at)}${a.suspended.reason ? html`: ${a.suspended.reason}` : ''}.</p>`
    : html`<p>Active.</p>`
}
${
  canOperate
    ? a.suspended
      ? html`<form method="post" action="/console/agents/${encodeURIComponent(a.id)}/resume">${csrfField(s)}<button type="submit">Resume ${a.id}</button></form>`
      : html`<form method="post" action="/console/agents/${encodeURIComponent(a.id)}/suspend">${csrfField(s)}${reasonField(`reason-${a.id}`)} <button type="submit" class="danger">Suspend ${a.id}</button></form>`
    : ''
}
<h3>Limits</h3>
${
  a.limits.length === 0
    ? html`<p>No limits.</p>`
    : html`<table><thead><tr><th scope="col">Limit</th><th scope="col">Kind</th><th scope="col">Max</th><th scope="col">Window</th><th scope="col">Used (allowed calls in the window, from the audit trail)</th></tr></thead><tbody>${a.limits.map(
        (l) =>
          html`<tr><td>${l.id}</td><td>${l.kind}</td><td>${l.max}</td><td>${l.window ?? '—'}</td><td>${l.used ?? '—'}</td></tr>`,
      )}</tbody></table>`
}
<h3>Recent refusals</h3>
${
  a.refusals.length === 0
    ? html`<p>None recorded.</p>`
    : html`<ul>${a.refusals.map((r) => html`<li>${time(r.time)} ${r.tool}: ${r.code} — ${r.reason}</li>`)}</ul>`
}
</article>`,
)}`,
    '/console/agents',
  );
}

export interface ToolRow {
  tool: string;
  hash: string;
  pendingHash?: string | undefined;
  pinnedAt: string;
  approvedBy?: string | undefined;
}

export function toolsPage(
  s: ConsoleSession,
  pins: ToolRow[],
  upstreams: Array<{
    name: string;
    state: string;
    session: string;
    agent: string;
    tools: number;
    heldBack: number;
  }>,
): Html {
  return layout(
    'Tools',
    s,
    html`<h2>Pinned tool definitions</h2>
${
  pins.length === 0
    ? html`<p>No tool has been pinned yet: definitions are pinned when an upstream first lists them.</p>`
    : html`<table><thead><tr><th scope="col">Tool</th><th scope="col">Pinned hash</th><th scope="col">Status</th><th scope="col">Pinned</th><th scope="col">Approved by</th></tr></thead><tbody>${pins.map(
        (p) =>
          html`<tr><td><a href="/console/tools/${encodeURIComponent(p.tool)}">${p.tool}</a></td><td><code>${p.hash.slice(0, 16)}…</code></td><td>${p.pendingHash ? html`<strong class="error">changed: held back</strong>` : 'matches'}</td><td>${p.pinnedAt}</td><td>${p.approvedBy ?? '—'}</td></tr>`,
      )}</tbody></table>`
}
<h2>Upstream connections</h2>
${
  upstreams.length === 0
    ? html`<p>No open connection (upstreams start with the first session).</p>`
    : html`<table><thead><tr><th scope="col">Upstream</th><th scope="col">State</th><th scope="col">Agent</th><th scope="col">Tools</th><th scope="col">Held back</th></tr></thead><tbody>${upstreams.map(
        (u) =>
          html`<tr><td>${u.name}</td><td>${u.state}</td><td>${u.agent}</td><td>${u.tools}</td><td>${u.heldBack}</td></tr>`,
      )}</tbody></table>`
}`,
    '/console/tools',
  );
}

export function toolPage(
  s: ConsoleSession,
  pin: ToolRow,
  diff: DiffLine[] | undefined,
  current: unknown,
): Html {
  const canOperate = may(s.roles, 'operate');
  return layout(
    `Tool ${pin.tool}`,
    s,
    html`<dl class="facts"><dt>Pinned hash</dt><dd><code>${pin.hash}</code></dd>
${pin.pendingHash ? html`<dt>New hash</dt><dd><code>${pin.pendingHash}</code></dd>` : ''}
<dt>Pinned</dt><dd>${pin.pinnedAt}</dd><dt>Approved by</dt><dd>${pin.approvedBy ?? '—'}</dd></dl>
${
  pin.pendingHash
    ? html`<h2>What changed</h2>
${
  diff
    ? html`<pre class="diff" id="diff" aria-label="Definition diff: lines starting with minus were removed, plus were added">${diff.map(
        (l) =>
          html`<span class="${l.op === '+' ? 'add' : l.op === '-' ? 'del' : 'same'}">${l.op} ${l.text}\n</span>`,
      )}</pre>`
    : html`<p>The definitions behind these hashes were not kept (pinned before this version, or too large): compare the hashes.</p>`
}
${
  canOperate
    ? html`<form method="post" action="/console/tools/${encodeURIComponent(pin.tool)}/approve">${csrfField(s)}<input type="hidden" name="hash" value="${pin.pendingHash}"><button type="submit">Approve the new definition</button></form>`
    : html`<p class="note">Approving a definition needs the operator role.</p>`
}`
    : html`<h2>Definition</h2>${current === undefined ? html`<p>Not kept.</p>` : html`<pre class="json">${pretty(current)}</pre>`}`
}`,
    '/console/tools',
  );
}

export interface PolicyView {
  hash: string;
  source: string;
  agents: number;
  history: Array<{
    time: number;
    status: string;
    policy?: string;
    previous?: string;
    trigger?: string;
    by?: string;
    problems?: string[];
  }>;
  replay?: { report?: ReplayReport; problems?: string[]; candidate?: string; records: number };
}

export function policyPage(s: ConsoleSession, v: PolicyView): Html {
  const canOperate = may(s.roles, 'operate');
  const r = v.replay?.report;
  return layout(
    'Policy',
    s,
    html`<dl class="facts"><dt>In force</dt><dd><code>${v.hash}</code></dd><dt>Source</dt><dd>${v.source}</dd><dt>Agents</dt><dd>${v.agents}</dd></dl>
${canOperate ? html`<form method="post" action="/console/policy/reload">${csrfField(s)}<button type="submit">Reload the policy file</button></form>` : ''}
<h2>Replay a candidate</h2>
${
  canOperate
    ? html`<form method="post" action="/console/policy/replay" class="candidate">${csrfField(s)}
<label for="candidate">Candidate policy (YAML or JSON)</label>
<textarea id="candidate" name="candidate" rows="14" cols="80" required>${v.replay?.candidate ?? ''}</textarea>
<label for="candidate-file">Or load a file</label> <input type="file" id="candidate-file" accept=".yaml,.yml,.json">
<button type="submit">Replay the recorded decisions</button></form>
<p class="note">Nothing changes: the candidate re-decides recorded decisions and the differences are shown.</p>`
    : html`<p class="note">Replaying a candidate needs the operator role.</p>`
}
${v.replay?.problems ? html`<div class="error" role="alert"><p>The candidate is invalid:</p><ul>${v.replay.problems.map((p) => html`<li>${p}</li>`)}</ul></div>` : ''}
${
  r
    ? html`<section id="replay-result" aria-labelledby="h-replay"><h3 id="h-replay">Impact over the last ${v.replay?.records ?? 0} records</h3>
<ul class="impact"><li>Decisions: ${r.decisions}</li><li>Unchanged: ${r.unchanged}</li><li>Newly allowed: <strong>${r.newlyAllowed}</strong></li><li>Newly denied: <strong>${r.newlyDenied}</strong></li><li>Newly asked: <strong>${r.newlyAsked}</strong></li><li>Not replayable (redacted arguments): ${r.notReplayable}</li></ul>
${(['newly_allowed', 'newly_denied', 'newly_asked'] as const).map((k) =>
  r.examples[k].length === 0
    ? ''
    : html`<h4>${k.replace('_', ' ')}</h4><table><thead><tr><th scope="col">Record</th><th scope="col">Agent</th><th scope="col">Tool</th><th scope="col">Before</th><th scope="col">After</th><th scope="col">Reason</th></tr></thead><tbody>${r.examples[
        k
      ].map(
        (e) =>
          html`<tr><td>${e.seq}</td><td>${e.agent}</td><td>${e.tool}</td><td>${e.before.effect} (${e.before.rule ?? 'none'})</td><td>${e.after.effect} (${e.after.rule ?? 'none'})</td><td>${e.after.reason}</td></tr>`,
      )}</tbody></table>`,
)}</section>`
    : ''
}
<h2>Reload history</h2>
<table><thead><tr><th scope="col">Time</th><th scope="col">Status</th><th scope="col">Policy</th><th scope="col">Trigger</th><th scope="col">By</th><th scope="col">Problems</th></tr></thead>
<tbody>${v.history.map(
      (h) =>
        html`<tr><td>${time(h.time)}</td><td>${h.status}</td><td><code>${(h.policy ?? h.previous ?? '').slice(0, 16)}</code></td><td>${h.trigger ?? '—'}</td><td>${h.by ?? '—'}</td><td>${(h.problems ?? []).join('; ')}</td></tr>`,
    )}</tbody></table>`,
    '/console/policy',
  );
}

export interface AuditView {
  available: boolean;
  size?: number;
  checkpoint?: { size: number; root: string; time: number; keyId: string } | undefined;
  keyId?: string;
  publicKeyPem?: string;
  verification?: { at: number; ok: boolean; size: number; problems: string[]; elapsedMs: number; by: string };
}

export function auditPage(s: ConsoleSession, v: AuditView): Html {
  const ver = v.verification;
  return layout(
    'Audit',
    s,
    html`${
      !v.available
        ? html`<p class="error">No audit log: the store is <code>memory:</code>, so nothing is recorded durably.</p>`
        : html`<dl class="facts"><dt>Records</dt><dd>${v.size ?? 0}</dd>
<dt>Last signed checkpoint</dt><dd>${v.checkpoint ? html`size ${v.checkpoint.size}, root <code>${v.checkpoint.root}</code>, signed ${time(v.checkpoint.time)} by key <code>${v.checkpoint.keyId}</code>` : 'none yet'}</dd>
<dt>Signing key</dt><dd><code>${v.keyId ?? ''}</code></dd></dl>
<details><summary>Public key</summary><pre>${v.publicKeyPem ?? ''}</pre></details>
<h2>Verification</h2>
${
  ver
    ? html`<p class="${ver.ok ? 'ok' : 'error'}" role="status">${ver.ok ? 'Verified' : 'Verification failed'}: ${ver.size} records checked in ${duration(ver.elapsedMs)} at ${time(ver.at)} (asked by ${ver.by}).</p>${ver.problems.length > 0 ? html`<ul>${ver.problems.map((p) => html`<li>${p}</li>`)}</ul>` : ''}`
    : html`<p>Not verified since this process started.</p>`
}
${may(s.roles, 'operate') ? html`<form method="post" action="/console/audit/verify">${csrfField(s)}<button type="submit">Verify the whole log now</button></form>` : ''}`
    }
<h2>Gap report</h2>
<section id="gap-report" aria-labelledby="h-gap"><h3 id="h-gap" class="visually-hidden">Gap report status</h3>
<p>The gap report is not configured. It compares what governance declares for each agent with what the
policy permits and what agents attempted; it appears here once governance declarations are configured.</p>
</section>`,
    '/console/audit',
  );
}
