/**
 * `execlayer approvals list|show|approve|deny`: the human side of `ask`.
 */
import { openApprovalStore } from '../approvals/open.js';
import { type Approval, ApprovalError, type ApprovalStatus, type ApprovalStore } from '../approvals/types.js';
import type { Recorder } from '../types.js';
import { auditUrl, firstLineOf, openRecorder, operator, relative, storeUrl, table } from './store-flags.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer approvals <command> [options]

commands:
  list                 pending and recent approvals (newest first)
  show <id>            one approval, with the exact arguments it is bound to
  approve <id>         grant it: the identical call may run (uses and expiry per policy)
  deny <id>            refuse it

options:
  --status <s>         list only pending|granted|denied|expired|used
  --agent <id>         list only this agent's approvals
  --note <text>        approve/deny: a note recorded with the decision
  --as <approver>      approve/deny: who decides (default: $USER)
  --store <url>        sqlite:<file> | postgres://... | memory:  (default: $EXECLAYER_STORE or sqlite:./execlayer.db)
  --audit <url>        audit log that records the decision (default: $EXECLAYER_AUDIT, else the store)
  --no-audit           decide without recording to an audit log
  --json               machine-readable output
  -h, --help           this help

exit codes: 0 ok, 2 usage, 3 store or audit log unavailable, 4 not found or not allowed
            (expired, already decided, not an allowed approver, approver rate cap)
`;

const STATUSES: readonly ApprovalStatus[] = ['pending', 'granted', 'denied', 'expired', 'used'];

/** Runs `execlayer approvals …`; returns the exit code. */
export function approvalsCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values: v, positionals } = flags(argv, {
      status: { type: 'string' },
      agent: { type: 'string' },
      note: { type: 'string' },
      as: { type: 'string' },
      store: { type: 'string' },
      audit: { type: 'string' },
      'no-audit': { type: 'boolean' },
      json: { type: 'boolean' },
    });
    if (v.help) {
      out(HELP.trimEnd());
      return EXIT.ok;
    }
    const [cmd, id, ...extra] = positionals;
    if (cmd === undefined) throw new UsageError('missing command: list, show, approve or deny');
    if (!['list', 'show', 'approve', 'deny'].includes(cmd))
      throw new UsageError(`unknown command \`${cmd}\``);
    if (cmd !== 'list' && id === undefined) throw new UsageError(`\`${cmd}\` needs an approval id`);
    if (extra.length > 0 || (cmd === 'list' && id !== undefined)) {
      throw new UsageError(`unexpected argument \`${extra[0] ?? id}\``);
    }
    if (v.status !== undefined && !STATUSES.includes(v.status as ApprovalStatus)) {
      throw new UsageError(`--status must be one of ${STATUSES.join(', ')}`);
    }
    const url = storeUrl(v.store);
    if (url.startsWith('redis'))
      throw new UsageError('approvals are kept in sqlite:, postgres:// or memory:, not redis');
    const deciding = cmd === 'approve' || cmd === 'deny';
    let recorder: (Recorder & { close(): Promise<void> }) | undefined;
    let store: ApprovalStore;
    try {
      const audit = deciding ? auditUrl(v.audit, v['no-audit'], url) : undefined;
      // INVARIANT: fail closed — the audit log is opened before deciding, so no decision goes unrecorded.
      if (audit !== undefined) recorder = await openRecorder(audit);
      store = await openApprovalStore(url, recorder === undefined ? {} : { recorder });
    } catch (err) {
      await recorder?.close();
      process.stderr.write(`error: cannot open the approval store or audit log: ${firstLineOf(err)}\n`);
      return EXIT.error;
    }
    try {
      const now = Date.now();
      if (cmd === 'list') {
        const filter: { status?: ApprovalStatus; agent?: string } = {};
        if (v.status !== undefined) filter.status = v.status as ApprovalStatus;
        if (v.agent !== undefined) filter.agent = v.agent;
        const rows = await store.list(filter, now);
        if (v.json) printJson(rows);
        else if (rows.length === 0) out('no approvals');
        else {
          out(
            table([
              ['ID', 'STATUS', 'AGENT', 'TOOL', 'EXPIRES', 'REASON'],
              ...rows.map((a) => [a.id, a.status, a.agent, a.tool, relative(a.expiresAt, now), a.reason]),
            ]),
          );
        }
        return EXIT.ok;
      }
      if (cmd === 'show') {
        const a = await store.get(id as string, now);
        if (a === undefined) {
          process.stderr.write(`error: no approval \`${id}\`\n`);
          return EXIT.ask;
        }
        if (v.json) printJson(a);
        else out(describe(a, now));
        return EXIT.ok;
      }
      const note = v.note;
      const verdict = {
        approve: cmd === 'approve',
        approver: operator(v.as),
        ...(note === undefined ? {} : { note }),
      };
      const a = await store.decide(id as string, verdict, now);
      if (v.json) printJson(a);
      else {
        out(
          a.status === 'granted'
            ? `granted ${a.id} as ${a.approver}: ${a.agent} may call ${a.tool} with exactly these arguments ${a.uses === 1 ? 'once' : `${a.uses} times`}, ${relative(a.expiresAt, now)} at the latest`
            : `denied ${a.id} as ${a.approver}`,
        );
      }
      return EXIT.ok;
    } catch (err) {
      if (err instanceof ApprovalError) {
        process.stderr.write(`error: ${err.message}\n`);
        if (err.code === 'invalid_request') return EXIT.usage;
        return err.code === 'store_error' || err.code === 'record_failed' ? EXIT.error : EXIT.ask;
      }
      process.stderr.write(`error: ${firstLineOf(err)}\n`);
      return EXIT.error;
    } finally {
      await store.close().catch(() => undefined);
      await recorder?.close().catch(() => undefined);
    }
  });
}

function describe(a: Approval, now: number): string {
  const lines: [string, string][] = [
    ['id', a.id],
    ['status', a.status],
    ['agent', a.agent],
    ['tool', a.tool],
    ['reason', a.reason],
    ['rule', a.rule],
    ['session', a.session ?? '-'],
    ['on behalf of', a.onBehalfOf ?? '-'],
    ['approvers', a.approvers.length > 0 ? a.approvers.join(', ') : 'any (not the agent)'],
    ['uses', `${a.used} of ${a.uses}`],
    ['created', `${new Date(a.createdAt).toISOString()} (${relative(a.createdAt, now)})`],
    ['expires', `${new Date(a.expiresAt).toISOString()} (${relative(a.expiresAt, now)})`],
    ['args digest', a.argsDigest],
    ['policy', a.policy],
  ];
  if (a.approver !== undefined) lines.push(['decided by', a.approver]);
  if (a.note !== undefined) lines.push(['note', a.note]);
  return `${table(lines.map(([k, val]) => [`${k}:`, val]))}\nargs:\n${JSON.stringify(a.args, null, 2)}`;
}
