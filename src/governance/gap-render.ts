/** The gap report as text for a terminal and as a self-contained HTML page. */
import type { GapReport, GapRow, GapStatus } from './gap.js';
import { GAP_STATUSES } from './gap.js';
import { esc, iso, page } from './html.js';

/** Words for each status, as reports print them. */
export const STATUS_LABEL: Record<GapStatus, string> = {
  aligned: 'aligned',
  over_permitted: 'over-permitted',
  undeclared_attempt: 'undeclared attempt',
  unused_permission: 'unused permission',
  declared_not_permitted: 'declared, not permitted',
  unverifiable: 'unverifiable',
};

function what(r: GapRow): string {
  const parts: string[] = [];
  if (r.rule) parts.push(`rule ${r.rule.id} (line ${r.rule.line})`);
  if (r.capability) parts.push(`declared ${r.capability.id}`);
  return parts.join(', ') || '-';
}

function attempts(r: GapRow): string {
  const a = r.attempts;
  return `${a.total} (${a.allowed} allowed, ${a.denied} denied, ${a.asked} asked)`;
}

/** The report for a terminal: per agent, one line per row, then its detail and example records. */
export function gapText(r: GapReport): string {
  const out: string[] = [
    `gap report ${iso(r.window.from)} .. ${iso(r.window.to)}: policy ${r.policy.hash.slice(0, 12)} (${r.policy.file}), ${r.records.decisions} decisions`,
    `totals: ${GAP_STATUSES.map((s) => `${STATUS_LABEL[s]} ${r.totals[s]}`).join(', ')}`,
  ];
  for (const a of r.agents) {
    out.push(
      '',
      `agent ${a.id}${a.owner ? ` — owner ${a.owner}` : ''}${a.purpose ? `; purpose: ${a.purpose}` : ''}`,
    );
    for (const n of a.notes) out.push(`  note: ${n}`);
    for (const row of r.rows) {
      if (row.agent !== a.id) continue;
      out.push(
        `  ${STATUS_LABEL[row.status].padEnd(24)} ${row.tool.padEnd(24)} ${what(row)}; attempts ${attempts(row)}`,
      );
      for (const d of row.detail) out.push(`      ${d}`);
      if (row.examples.length) out.push(`      records: ${row.examples.map((s) => `#${s}`).join(' ')}`);
    }
  }
  return `${out.join('\n')}\n`;
}

/** The report as one HTML page: figures, then a table per agent. Opens offline; nothing is fetched. */
export function gapHtml(r: GapReport): string {
  const figures = GAP_STATUSES.map(
    (s) =>
      `<div class="figure"><span class="s-${s}">${esc(STATUS_LABEL[s])}</span><b id="total-${s}">${r.totals[s]}</b></div>`,
  ).join('');
  const agents = r.agents
    .map((a) => {
      const rows = r.rows
        .filter((row) => row.agent === a.id)
        .map(
          (
            row,
          ) => `<tr data-agent="${esc(row.agent)}" data-status="${row.status}" data-tool="${esc(row.tool)}">
<td class="s-${row.status}">${esc(STATUS_LABEL[row.status])}</td><td><code>${esc(row.tool)}</code></td>
<td>${row.rule ? `<code>${esc(row.rule.id)}</code> <span class="muted">line ${row.rule.line}</span>` : '-'}</td>
<td>${row.capability ? `<code>${esc(row.capability.id)}</code>${row.capability.description ? ` <span class="muted">${esc(row.capability.description)}</span>` : ''}` : '-'}</td>
<td class="attempts">${row.attempts.total} <span class="muted">(${row.attempts.allowed} allowed, ${row.attempts.denied} denied, ${row.attempts.asked} asked)</span></td>
<td>${row.detail.map((d) => esc(d)).join('<br>')}</td>
<td>${row.examples.map((s) => `#${s}`).join(' ')}</td></tr>`,
        )
        .join('\n');
      return `<h2 id="agent-${esc(a.id)}">${esc(a.id)}</h2>
<p>${a.owner ? `owner <b>${esc(a.owner)}</b>; ` : ''}${a.purpose ? `purpose: ${esc(a.purpose)}` : ''}${a.highRisk ? ' — <b>high-risk</b>' : ''}</p>
${a.notes.map((n) => `<p class="muted">${esc(n)}</p>`).join('')}
<table><thead><tr><th>status</th><th>tool</th><th>policy rule</th><th>declared capability</th><th>attempts</th><th>detail</th><th>records</th></tr></thead>
<tbody>${rows}</tbody></table>`;
    })
    .join('\n');
  return page(
    'ExecLayer gap report',
    `<h1>Gap report: declared, permitted, attempted</h1>
<p class="muted">window ${esc(iso(r.window.from))} to ${esc(iso(r.window.to))}; policy <code>${esc(r.policy.hash)}</code>; ${r.records.decisions} decisions; declarations ${r.declarations.map((d) => `<code>${esc(d.file)}</code>`).join(', ')}</p>
<div class="figures">${figures}</div>
${agents}`,
  );
}
