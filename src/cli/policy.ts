/**
 * `execlayer policy suggest`: a least-privilege policy draft from recorded traffic (a shadow-mode
 * roll-out, or the allowed calls of an enforced policy). See src/engine/suggest.ts for what is inferred.
 */
import { writeFileSync } from 'node:fs';
import { isAuditError } from '../audit/errors.js';
import { defaultStoreUrl, openStore, redactUrl } from '../audit/log.js';
import { matchesQuery, toAuditRecord } from '../audit/record.js';
import type { RecordQuery } from '../audit/store.js';
import { jsonDigest } from '../canonical-json.js';
import { type Observation, suggestPolicy } from '../engine/suggest.js';
import { messageOf } from '../errors.js';
import { initFacts } from '../facts/index.js';
import { loadPolicyText } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import type { Json } from '../types.js';
import { type CommandIo, parseTimeFlag } from './audit.js';
import { SIGN_HELP, signCommand } from './policy-sign.js';
import { EXIT, flags, UsageError } from './util.js';

const HELP = `usage: execlayer policy suggest [--since 7d|ISO] [--until 7d|ISO] [--agent A] [--store <url>]
                               [--out <file>] [--mode shadow|enforce] [--json]

Turns the calls recorded in the audit trail — every call that ran: allowed ones, and all calls of a
shadow-mode roll-out — into a least-privilege policy draft: only the tools each agent used, each with
the constraints its calls showed (path directories, URL hosts, SQL statements and tables, shell
programs, email domains, numeric ranges), each rule commented with its evidence. The draft allows
every call it was made from (replay it to see), validates without warnings, and starts in shadow
mode: review it, then set \`mode: enforce\`.

options:
  --since <when>   calls from this time on (default 7d)
  --until <when>   calls before this time
  --agent <id>     only this agent
  --store <url>    sqlite:<file> or postgres://… (default: $EXECLAYER_STORE or sqlite:./execlayer.db)
  --out <file>     write the draft here (default: print it)
  --mode <mode>    the draft's mode: shadow (default) or enforce
  --json           a summary as JSON (the draft goes to --out, or into the summary)
  -h, --help       this help

exit codes: 0 a draft was made, 1 no call to learn from, 2 usage error, 3 store error
`;

const SUBCOMMANDS = `usage: execlayer policy <command>

commands:
  suggest   a least-privilege policy draft from recorded traffic
  sign      a detached signature over a policy or bundle, for gateways that require one

Run \`execlayer policy <command> --help\` for its options and exit codes.

exit codes: 0 help shown, 2 no or an unknown command
`;

/** Entry point for `execlayer policy …`. */
export async function policyCommand(
  argv: string[],
  io: CommandIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout.write(SUBCOMMANDS);
    return sub === undefined ? EXIT.usage : EXIT.ok;
  }
  if (sub !== 'suggest' && sub !== 'sign') {
    io.stderr.write(`error: unknown policy command \`${sub}\`\n\n${SUBCOMMANDS}`);
    return EXIT.usage;
  }
  try {
    return sub === 'sign' ? await signCommand(rest, io) : await suggest(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`error: ${e.message}\n\n${sub === 'sign' ? SIGN_HELP : HELP}`);
      return EXIT.usage;
    }
    io.stderr.write(`error: ${messageOf(e)}\n`);
    return isAuditError(e) && e.code === 'invalid_store_url' ? EXIT.usage : EXIT.error;
  }
}

async function suggest(argv: string[], io: CommandIo): Promise<number> {
  const { values } = flags(
    argv,
    {
      since: { type: 'string' },
      until: { type: 'string' },
      agent: { type: 'string' },
      store: { type: 'string' },
      out: { type: 'string' },
      mode: { type: 'string' },
      json: { type: 'boolean' },
    },
    false,
  );
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT.ok;
  }
  const mode = values.mode ?? 'shadow';
  if (mode !== 'shadow' && mode !== 'enforce')
    throw new UsageError(`--mode \`${mode}\` is not shadow or enforce`);
  const q: RecordQuery = { type: 'decision', since: parseTimeFlag('since', values.since ?? '7d') };
  if (values.until !== undefined) q.until = parseTimeFlag('until', values.until);
  if (values.agent !== undefined) q.agent = values.agent;
  const storeUrl = values.store ?? defaultStoreUrl();

  await initFacts();
  const { observations, redacted } = await readCalls(storeUrl, q);
  if (observations.length === 0) {
    io.stderr.write(
      `no recorded call to learn from in ${redactUrl(storeUrl)}${redacted > 0 ? ` (${redacted} had redacted arguments)` : ''}: run the gateway in shadow mode first\n`,
    );
    return EXIT.fail;
  }
  const s = suggestPolicy(observations, { mode, source: redactUrl(storeUrl) });
  // INVARIANT: the draft we print validates; a draft that does not is a bug, reported, never written.
  const loaded = loadPolicyText(s.text, values.out ?? '<draft>');
  if (!loaded.ok) {
    for (const p of loaded.problems) io.stderr.write(`${formatProblem(p)}\n`);
    return EXIT.error;
  }
  if (values.out !== undefined) writeFileSync(values.out, s.text);
  const summary = {
    ok: true,
    calls: observations.length,
    redacted,
    agents: s.agents,
    rules: s.rules,
    loosened: s.loosened,
    warnings: loaded.warnings.map(formatProblem),
    ...(values.out !== undefined ? { out: values.out } : { policy: s.text }),
  };
  if (values.json) io.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else if (values.out === undefined) io.stdout.write(s.text);
  if (!values.json) {
    io.stderr.write(
      `${observations.length} calls → ${s.rules} rules for ${s.agents} agent${s.agents === 1 ? '' : 's'}${values.out ? ` in ${values.out}` : ''}${redacted > 0 ? `; ${redacted} calls with redacted arguments were left out` : ''}\n`,
    );
    for (const l of s.loosened) io.stderr.write(`loosened: ${l}\n`);
    for (const w of loaded.warnings) io.stderr.write(`${formatProblem(w)}\n`);
  }
  return EXIT.ok;
}

/** Every recorded call that ran (effect allow, shadow decisions included), oldest first. */
async function readCalls(
  storeUrl: string,
  q: RecordQuery,
): Promise<{ observations: Observation[]; redacted: number }> {
  const store = await openStore(storeUrl);
  const observations: Observation[] = [];
  let redacted = 0;
  try {
    let after = -1;
    for (;;) {
      const rows = await store.query({ ...q, afterSeq: after, limit: 5000 });
      if (rows.length === 0) break;
      after = (rows.at(-1) as { seq: number }).seq;
      for (const r of rows.map(toAuditRecord)) {
        if (!matchesQuery(r, q) || r.event === null || r.event.type !== 'decision') continue;
        const { action, decision } = r.event;
        if (decision.effect !== 'allow') continue;
        const args = action.args as Json;
        if (args === null || typeof args !== 'object' || Array.isArray(args)) continue;
        const hex = action.argsDigest.startsWith('sha256:') ? action.argsDigest.slice(7) : action.argsDigest;
        if (jsonDigest(args) !== hex) {
          redacted++;
          continue;
        }
        observations.push({ agent: action.agent, tool: action.tool, args, time: r.time });
      }
    }
  } finally {
    await store.close();
  }
  return { observations, redacted };
}
