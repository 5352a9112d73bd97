/**
 * `execlayer replay`: re-decide recorded decisions with a candidate policy before rolling it out, and report
 * what would change — newly denied, newly allowed, newly asked, per rule, with examples.
 * Exit codes: 0 no change that --fail-on names, 1 such a change (or an invalid policy), 2 usage, 3 store error.
 */
import { isAuditError } from '../audit/errors.js';
import { defaultStoreUrl, openStore } from '../audit/log.js';
import { type AuditRecord, matchesQuery, toAuditRecord } from '../audit/record.js';
import { type ReplayReport, replay } from '../audit/replay.js';
import type { RecordQuery } from '../audit/store.js';
import { compile } from '../engine/compile.js';
import { messageOf } from '../errors.js';
import { initFacts } from '../facts/index.js';
import { type FlowReplayReport, replayFlows } from '../flows/replay.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import type { Action } from '../types.js';
import { type CommandIo, parseTimeFlag } from './audit.js';
import { EXIT, flags, UsageError } from './util.js';

const HELP = `usage: execlayer replay --policy <candidate.yaml> [--since 7d|ISO] [--until 7d|ISO] [--agent A] [--tool T]
                        [--fail-on newly-allowed|newly-denied|newly-asked|any-change] [--examples N]
                        [--store <url>] [--json]

Re-decides the recorded decisions (agent, tool, arguments, session, on-behalf-of) with the candidate
policy, at the time each was recorded, and reports what would change. Decisions whose stored arguments
were redacted no longer match their digest and are counted as not replayable. When the candidate has a
flow policy (\`flows:\`), it also reports which sessions the flow policy would have tainted and which calls
it would have refused, from the recorded decisions and outcomes.

options:
  --policy <file>    the candidate policy (YAML or JSON)
  --since <when>     decisions from this time on (default 7d)
  --until <when>     decisions before this time
  --agent, --tool    only these
  --fail-on <kind>   exit 1 when this kind of change occurs (repeatable)
  --examples <N>     examples kept per kind of change (default 5)
  --store <url>      sqlite:<file> or postgres://… (default: $EXECLAYER_STORE or sqlite:./execlayer.db)
  --json             the full report as JSON
  -h, --help         this help

exit codes: 0 ok, 1 a --fail-on change occurred or the policy is invalid, 2 usage error, 3 store error
`;

const FAIL_ON = ['newly-allowed', 'newly-denied', 'newly-asked', 'any-change'] as const;
type FailOn = (typeof FAIL_ON)[number];

function triggered(r: ReplayReport, kinds: FailOn[]): FailOn[] {
  return kinds.filter((k) =>
    k === 'newly-allowed'
      ? r.newlyAllowed > 0
      : k === 'newly-denied'
        ? r.newlyDenied > 0
        : k === 'newly-asked'
          ? r.newlyAsked > 0
          : r.newlyAllowed + r.newlyDenied + r.newlyAsked > 0,
  );
}

function text(r: ReplayReport, policyFile: string): string {
  const lines = [
    `replayed ${r.decisions} decisions with ${policyFile}:`,
    `  unchanged       ${r.unchanged}`,
    `  newly allowed   ${r.newlyAllowed}`,
    `  newly denied    ${r.newlyDenied}`,
    `  newly asked     ${r.newlyAsked}`,
    `  not replayable  ${r.notReplayable} (arguments redacted in the log)`,
    `  not compared    ${r.runtimeRefusals} (refused by the stop switch or a store, not by the policy)`,
    `  limited         ${r.limited} (allowed by the policy, refused by a limit: compared as allowed)`,
  ];
  if (r.errors > 0) lines.push(`  errors          ${r.errors}`);
  const changed = Object.entries(r.byRule).filter(
    ([, c]) => c.newlyAllowed + c.newlyDenied + c.newlyAsked > 0,
  );
  if (changed.length > 0) {
    lines.push('', 'changes by deciding rule of the candidate:');
    for (const [rule, c] of changed) {
      lines.push(`  ${rule}: +allow ${c.newlyAllowed}, +deny ${c.newlyDenied}, +ask ${c.newlyAsked}`);
    }
  }
  for (const [kind, list] of Object.entries(r.examples)) {
    if (list.length === 0) continue;
    lines.push('', `${kind.replace('_', ' ')}, e.g.:`);
    for (const e of list) {
      lines.push(
        `  #${e.seq} ${new Date(e.time).toISOString()} ${e.agent} ${e.tool}: ${e.before.effect} (${e.before.rule ?? 'no rule'}) -> ${e.after.effect} (${e.after.rule ?? 'no rule'}) — ${e.after.reason}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The flow policy's part of the report: which sessions it would have tainted or blocked. */
function flowText(r: FlowReplayReport): string {
  const lines = [
    '',
    `flow policy over ${r.sessions} sessions:`,
    `  tainted         ${r.tainted} (shown untrusted content)`,
    `  blocked         ${r.blockedSessions} sessions, ${r.denied} calls denied`,
    `  asked           ${r.askedSessions} sessions, ${r.asked} calls needing approval`,
    `  unverifiable    ${r.unverifiable} sink calls checking values seen in results (not in the log)`,
  ];
  if (r.examples.length > 0) {
    lines.push('', 'flow refusals, e.g.:');
    for (const e of r.examples) {
      lines.push(
        `  #${e.seq} ${e.agent}${e.session ? ` (session ${e.session})` : ''} ${e.tool}: ${e.effect} (${e.rule}) — ${e.reason}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Entry point for `execlayer replay …`; returns the exit code. */
export async function replayCommand(
  argv: string[],
  io: CommandIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  try {
    const { values } = flags(
      argv,
      {
        policy: { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        agent: { type: 'string' },
        tool: { type: 'string' },
        'fail-on': { type: 'string', multiple: true },
        examples: { type: 'string' },
        store: { type: 'string' },
        json: { type: 'boolean' },
      },
      false,
    );
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    if (values.policy === undefined) throw new UsageError('replay needs --policy <candidate.yaml>');
    const failOn = ((values as unknown as { 'fail-on'?: string[] })['fail-on'] ?? []).map((k) => {
      if (!(FAIL_ON as readonly string[]).includes(k)) {
        throw new UsageError(`--fail-on \`${k}\` is not one of ${FAIL_ON.join(', ')}`);
      }
      return k as FailOn;
    });
    let examples = 5;
    if (values.examples !== undefined) {
      if (!/^\d{1,4}$/.test(values.examples))
        throw new UsageError(`--examples \`${values.examples}\` is not a number`);
      examples = Number(values.examples);
    }
    const q: RecordQuery = { type: 'decision', since: parseTimeFlag('since', values.since ?? '7d') };
    if (values.until !== undefined) q.until = parseTimeFlag('until', values.until);
    if (values.agent !== undefined) q.agent = values.agent;
    if (values.tool !== undefined) q.tool = values.tool;

    await initFacts();
    const loaded = await loadPolicyFile(values.policy);
    if (!loaded.ok) {
      if (values.json)
        io.stdout.write(`${JSON.stringify({ ok: false, problems: loaded.problems }, null, 2)}\n`);
      else for (const p of loaded.problems) io.stderr.write(`${formatProblem(p)}\n`);
      return EXIT.fail;
    }
    const engine = compile(loaded.policy);
    const store = await openStore(values.store ?? defaultStoreUrl());
    let report: ReplayReport;
    let flowReport: FlowReplayReport | undefined;
    try {
      const read = async (query: RecordQuery): Promise<AuditRecord[]> => {
        const out: AuditRecord[] = [];
        let after = -1;
        for (;;) {
          const rows = await store.query({ ...query, afterSeq: after, limit: 5000 });
          if (rows.length === 0) break;
          after = rows.at(-1)!.seq;
          for (const r of rows.map(toAuditRecord)) if (matchesQuery(r, query)) out.push(r);
        }
        return out;
      };
      const records = await read(q);
      const decide = (action: Action, at: number) => engine.decide(action, at);
      report = replay(records, decide, { examplesPerKind: examples });
      const flows = engine.policy.flows;
      if (flows) {
        // The flow policy also needs the outcomes: a result the agent was shown raises its session's label.
        const outcomes = await read({ ...q, type: 'outcome' });
        const all = [...records, ...outcomes].sort((a, b) => a.seq - b.seq);
        flowReport = replayFlows(all, flows, decide, { examples });
      }
    } finally {
      await store.close();
    }
    const hit = triggered(report, failOn);
    if (values.json) {
      const body = { ok: hit.length === 0, policy: engine.hash, failedOn: hit, ...report };
      io.stdout.write(`${JSON.stringify(flowReport ? { ...body, flows: flowReport } : body, null, 2)}\n`);
    } else {
      io.stdout.write(text(report, values.policy));
      if (flowReport) io.stdout.write(flowText(flowReport));
      if (hit.length > 0) io.stdout.write(`\nFAILED: ${hit.join(', ')}\n`);
    }
    return hit.length > 0 ? EXIT.fail : EXIT.ok;
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`error: ${e.message}\n\n${HELP}`);
      return EXIT.usage;
    }
    io.stderr.write(`error: ${messageOf(e)}\n`);
    return isAuditError(e) && e.code === 'invalid_store_url' ? EXIT.usage : EXIT.error;
  }
}
