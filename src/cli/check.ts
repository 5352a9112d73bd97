/** `execlayer check --policy P --action '<json>'`: one decision, explained. */
import { readFile } from 'node:fs/promises';
import { compile } from '../engine/compile.js';
import { initFacts } from '../facts/index.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import type { Action, Decision } from '../types.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

export const checkHelp = `usage: execlayer check --policy <policy.yaml> --action '<json>' [--json]

Decides one action against a policy and explains the decision. The action is JSON:
  {"agent": "support-bot", "tool": "db.query", "args": {"sql": "select * from customers"}}
Pass it inline, as @file.json, or as - to read standard input.

options:
  --policy <file>   policy file (YAML or JSON)
  --action <json>   the action, @file or -
  --now <iso>       evaluate as of this time (for time-based conditions)
  --json            print the full decision as JSON
  -h, --help        show this help

exit codes: 0 allow, 1 deny, 4 ask, 2 usage error, 3 error (invalid policy, unreadable input)
`;

export async function checkCommand(argv: string[]): Promise<number> {
  return runCommand(checkHelp, async () => {
    const { values } = flags(
      argv,
      {
        policy: { type: 'string' },
        action: { type: 'string' },
        now: { type: 'string' },
        json: { type: 'boolean' },
      },
      false,
    );
    if (values.help) {
      out(checkHelp);
      return EXIT.ok;
    }
    if (!values.policy) throw new UsageError('--policy is required');
    if (!values.action) throw new UsageError('--action is required');
    const action = parseJsonArg(await readArg(values.action), '--action');
    const now = values.now === undefined ? Date.now() : Date.parse(values.now);
    if (Number.isNaN(now)) throw new UsageError(`--now \`${values.now}\` is not an ISO date`);
    await initFacts();
    const r = await loadPolicyFile(values.policy);
    if (!r.ok) {
      for (const p of r.problems) process.stderr.write(`${formatProblem(p)}\n`);
      return EXIT.error;
    }
    const d = compile(r.policy).decide(action as Action, now);
    if (values.json) printJson(d);
    else printDecision(d);
    return exitFor(d);
  });
}

export function exitFor(d: Decision): number {
  return d.effect === 'allow' ? EXIT.ok : d.effect === 'ask' ? EXIT.ask : EXIT.fail;
}

export function printDecision(d: Decision): void {
  out(
    `${d.effect.toUpperCase()}${d.wouldBe ? ` (shadow: would ${d.wouldBe})` : ''}  rule=${d.rule ?? '-'}  code=${d.code}  policy=${d.policy.slice(0, 12)}`,
  );
  out(`  reason: ${d.reason}`);
  if (d.facts) out(`  facts:  ${JSON.stringify(d.facts)}`);
  if (d.limits) out(`  limits: ${d.limits.map((l) => `${l.id} (${l.kind} ${l.max})`).join(', ')}`);
}

async function readArg(value: string): Promise<string> {
  try {
    if (value === '-') return await readStdin();
    if (value.startsWith('@')) return await readFile(value.slice(1), 'utf8');
  } catch (e) {
    throw new Error(`cannot read \`${value}\`: ${(e as Error).message}`);
  }
  return value;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJsonArg(text: string, flag: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${flag} is not valid JSON: ${(e as Error).message}`);
  }
}
