/** `execlayer test <policy> <cases>`: policy unit tests — every case's action must get its expected effect. */
import { readFile } from 'node:fs/promises';
import { compile } from '../engine/compile.js';
import { initFacts } from '../facts/index.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import { parsePolicyText } from '../policy/source.js';
import type { Action, Decision, Effect } from '../types.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

export const testHelp = `usage: execlayer test <policy> <cases.yaml> [--json]

Runs policy test cases against a policy: one file, a file with \`include:\`, or a bundle directory
(checked whole, as \`execlayer validate\` does). The cases file (YAML or JSON) holds a list under \`cases:\`:

  cases:
    - name: reads a customer record
      action: { agent: support-bot, tool: db.query, args: { sql: "select * from customers" } }
      expect: allow                    # or: { effect: deny, rule: no-writes }
      now: 2026-01-05T10:00:00Z        # optional, for time-based conditions

options:
  --json       print every result as JSON
  -h, --help   show this help

exit codes: 0 all cases pass, 1 a case failed, 2 usage error, 3 invalid policy or cases file
`;

interface Case {
  name: string;
  action: Action;
  expect: { effect: Effect; rule?: string | null; code?: string };
  now?: number;
  line: number;
}

export interface CaseResult {
  name: string;
  line: number;
  pass: boolean;
  expected: Case['expect'];
  got: Pick<Decision, 'effect' | 'rule' | 'code' | 'reason' | 'wouldBe'>;
}

export async function testCommand(argv: string[]): Promise<number> {
  return runCommand(testHelp, async () => {
    const { values, positionals } = flags(argv, { json: { type: 'boolean' } });
    if (values.help) {
      out(testHelp);
      return EXIT.ok;
    }
    if (positionals.length !== 2)
      throw new UsageError('expected a policy (a file or a directory) and a cases file');
    const [policyFile, casesFile] = positionals as [string, string];
    await initFacts();
    const r = await loadPolicyFile(policyFile);
    if (!r.ok) {
      for (const p of r.problems) process.stderr.write(`${formatProblem(p)}\n`);
      return EXIT.error;
    }
    const cases = await readCases(casesFile);
    if (!Array.isArray(cases)) {
      for (const p of cases.problems) process.stderr.write(`${p}\n`);
      return EXIT.error;
    }
    const engine = compile(r.policy);
    const results: CaseResult[] = cases.map((c) => {
      const d = engine.decide(c.action, c.now);
      const pass =
        d.effect === c.expect.effect &&
        (c.expect.rule === undefined || d.rule === c.expect.rule) &&
        (c.expect.code === undefined || d.code === c.expect.code);
      return {
        name: c.name,
        line: c.line,
        pass,
        expected: c.expect,
        got: {
          effect: d.effect,
          rule: d.rule,
          code: d.code,
          reason: d.reason,
          ...(d.wouldBe ? { wouldBe: d.wouldBe } : {}),
        },
      };
    });
    const failed = results.filter((x) => !x.pass).length;
    if (values.json) printJson({ policy: r.policy.hash, passed: results.length - failed, failed, results });
    else {
      for (const x of results) {
        out(`${x.pass ? 'ok  ' : 'FAIL'} ${x.name}`);
        if (!x.pass) {
          out(`     ${casesFile}:${x.line}`);
          out(`     expected: ${describe(x.expected.effect, x.expected.rule, x.expected.code)}`);
          out(`     got:      ${describe(x.got.effect, x.got.rule, x.got.code)}`);
          out(`     reason:   ${x.got.reason}`);
        }
      }
      out(`${results.length - failed} passed, ${failed} failed`);
    }
    return failed > 0 ? EXIT.fail : EXIT.ok;
  });
}

function describe(effect: string, rule: string | null | undefined, code: string | undefined): string {
  return `${effect}${rule !== undefined ? ` (rule ${rule ?? 'none'})` : ''}${code ? ` [${code}]` : ''}`;
}

async function readCases(file: string): Promise<Case[] | { problems: string[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    return { problems: [`${file}:1:1: error: cannot read cases file: ${(e as Error).message}`] };
  }
  const parsed = parsePolicyText(text, file);
  if (!parsed.ok) return { problems: parsed.problems.map(formatProblem) };
  const data = parsed.source.data as { cases?: unknown } | unknown[];
  const list = Array.isArray(data) ? data : (data as { cases?: unknown })?.cases;
  const prefix: (string | number)[] = Array.isArray(data) ? [] : ['cases'];
  if (!Array.isArray(list))
    return { problems: [`${file}:1:1: error: expected a list of cases under \`cases:\``] };
  const problems: string[] = [];
  const cases: Case[] = [];
  list.forEach((raw, i) => {
    const at = parsed.source.locate([...prefix, i]);
    const where = `${file}:${at.line}:${at.column}`;
    const c = raw as Record<string, unknown>;
    if (c === null || typeof c !== 'object') {
      problems.push(`${where}: error: case ${i + 1} must be a mapping`);
      return;
    }
    const expect =
      typeof c.expect === 'string' ? { effect: c.expect } : (c.expect as Record<string, unknown> | undefined);
    if (!expect || !['allow', 'deny', 'ask'].includes(String(expect.effect))) {
      problems.push(`${where}: error: case ${i + 1} needs \`expect\`: allow, deny, ask, or { effect, rule }`);
      return;
    }
    if (c.action === null || typeof c.action !== 'object') {
      problems.push(`${where}: error: case ${i + 1} needs an \`action\` mapping`);
      return;
    }
    let now: number | undefined;
    if (c.now !== undefined) {
      now = c.now instanceof Date ? c.now.getTime() : Date.parse(String(c.now));
      if (Number.isNaN(now)) {
        problems.push(`${where}: error: case ${i + 1}: \`now\` is not an ISO date`);
        return;
      }
    }
    cases.push({
      name: typeof c.name === 'string' ? c.name : `case ${i + 1}`,
      action: c.action as Action,
      expect: {
        effect: expect.effect as Effect,
        ...(expect.rule !== undefined ? { rule: expect.rule as string | null } : {}),
        ...(typeof expect.code === 'string' ? { code: expect.code } : {}),
      },
      ...(now !== undefined ? { now } : {}),
      line: at.line,
    });
  });
  return problems.length > 0 ? { problems } : cases;
}
