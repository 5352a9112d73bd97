/**
 * `execlayer agents suspend|resume|stop-all|resume-all|list`: the stop switch.
 */
import { AgentStateError, type AgentStateStore } from '../state/agent-state.js';
import { openAgentStateStore } from '../state/open.js';
import type { Recorder } from '../types.js';
import { auditUrl, firstLineOf, openRecorder, operator, relative, storeUrl, table } from './store-flags.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer agents <command> [options]

commands:
  suspend <agent>      deny every action of this agent from its next decision on
  resume <agent>       lift that agent's suspension
  stop-all             emergency stop: deny every action of every agent
  resume-all           lift the emergency stop (individual suspensions stay)
  list                 current suspensions

options:
  --reason <text>      suspend/stop-all: why (shown to the agent and recorded)
  --as <operator>      who acts (default: $USER)
  --store <url>        sqlite:<file> | redis://host:port | memory:  (default: $EXECLAYER_STORE or sqlite:./execlayer.db)
  --audit <url>        audit log that records the change (default: $EXECLAYER_AUDIT, else a SQL store itself)
  --no-audit           change without recording to an audit log
  --json               machine-readable output
  -h, --help           this help

A suspension takes effect even when the audit log cannot record it; the command then exits 3.
exit codes: 0 ok, 2 usage, 3 store or audit log unavailable, 4 not found (resume of an agent that is not suspended)
`;

/** Runs `execlayer agents …`; returns the exit code. */
export function agentsCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values: v, positionals } = flags(argv, {
      reason: { type: 'string' },
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
    const [cmd, agent, ...extra] = positionals;
    const needsAgent = cmd === 'suspend' || cmd === 'resume';
    if (cmd === undefined)
      throw new UsageError('missing command: suspend, resume, stop-all, resume-all or list');
    if (!['suspend', 'resume', 'stop-all', 'resume-all', 'list'].includes(cmd)) {
      throw new UsageError(`unknown command \`${cmd}\``);
    }
    if (needsAgent && agent === undefined) throw new UsageError(`\`${cmd}\` needs an agent id`);
    if (needsAgent && agent === '*') throw new UsageError('use `stop-all` / `resume-all` for every agent');
    const stray = needsAgent ? extra[0] : agent;
    if (stray !== undefined) throw new UsageError(`unexpected argument \`${stray}\``);
    const url = storeUrl(v.store);
    if (url.startsWith('postgres'))
      throw new UsageError('suspensions are kept in sqlite:, redis:// or memory:');
    const changing = cmd !== 'list';
    let store: AgentStateStore | undefined;
    let recorder: (Recorder & { close(): Promise<void> }) | undefined;
    let recorderError: unknown;
    try {
      const audit = changing ? auditUrl(v.audit, v['no-audit'], url) : undefined;
      if (audit !== undefined) {
        try {
          recorder = await openRecorder(audit);
        } catch (err) {
          // An emergency stop must never wait for the audit log: act, then report the gap.
          recorderError = err;
        }
      }
      store = await openAgentStateStore(url, recorder === undefined ? {} : { recorder });
    } catch (err) {
      await recorder?.close().catch(() => undefined);
      process.stderr.write(`error: cannot open the agent state store: ${firstLineOf(err)}\n`);
      return EXIT.error;
    }
    try {
      const by = operator(v.as);
      const target = cmd === 'stop-all' || cmd === 'resume-all' ? '*' : (agent as string);
      let code: number = EXIT.ok;
      if (cmd === 'list') {
        const rows = await store.list();
        if (v.json) printJson(rows);
        else if (rows.length === 0) out('no agent is suspended');
        else {
          const now = Date.now();
          out(
            table([
              ['AGENT', 'BY', 'SINCE', 'REASON'],
              ...rows.map((s) => [
                s.agent === '*' ? '* (all agents)' : s.agent,
                s.by,
                relative(s.at, now),
                s.reason ?? '',
              ]),
            ]),
          );
        }
        return EXIT.ok;
      }
      let changed = true;
      if (cmd === 'suspend' || cmd === 'stop-all') await store.suspend(target, by, v.reason);
      else changed = await store.resume(target, by);
      const what = target === '*' ? 'all agents' : `agent ${target}`;
      const msg =
        cmd === 'suspend' || cmd === 'stop-all'
          ? `${target === '*' ? 'stopped all agents' : `suspended ${what}`}: every action is denied from the next decision on`
          : changed
            ? `resumed ${what}`
            : `${what} ${target === '*' ? 'were not stopped' : 'was not suspended'}`;
      if (!changed) code = EXIT.ask;
      if (v.json) printJson({ agent: target, action: cmd, changed, by });
      else out(msg);
      if (recorderError !== undefined) {
        process.stderr.write(
          `error: ${msg}, but the audit log could not record it: ${firstLineOf(recorderError)}\n`,
        );
        code = EXIT.error;
      }
      return code;
    } catch (err) {
      process.stderr.write(`error: ${firstLineOf(err)}\n`);
      if (err instanceof AgentStateError && err.code === 'invalid_agent') return EXIT.usage;
      return EXIT.error;
    } finally {
      await store.close().catch(() => undefined);
      await recorder?.close().catch(() => undefined);
    }
  });
}
