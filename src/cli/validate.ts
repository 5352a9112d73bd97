/** `execlayer validate <policy>`: load and check a policy, print every problem as file:line:column. */
import { initFacts } from '../facts/index.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

export const validateHelp = `usage: execlayer validate <policy.yaml> [--strict] [--json]

Loads a policy (YAML or JSON) and runs every static check: schema, unknown keys, types, roles,
duplicate ids, conditions, CEL syntax and types. Warnings (rules that can never match, rules a
broader deny makes dead, allow on \`*\`, CEL reading arguments a tool does not have) are printed too.

options:
  --strict   treat warnings as errors
  --json     print {ok, hash, problems[]} as JSON
  -h, --help show this help

exit codes: 0 valid, 1 invalid (or warnings with --strict), 2 usage error
`;

export async function validateCommand(argv: string[]): Promise<number> {
  return runCommand(validateHelp, async () => {
    const { values, positionals } = flags(argv, { strict: { type: 'boolean' }, json: { type: 'boolean' } });
    if (values.help) {
      out(validateHelp);
      return EXIT.ok;
    }
    if (positionals.length !== 1) throw new UsageError('expected exactly one policy file');
    await initFacts();
    const file = positionals[0] as string;
    const r = await loadPolicyFile(file);
    const problems = r.ok ? r.warnings : r.problems;
    const failed = !r.ok || (values.strict === true && problems.length > 0);
    if (values.json) {
      printJson({ ok: !failed, ...(r.ok ? { hash: r.policy.hash } : {}), problems });
    } else {
      for (const p of problems) process.stderr.write(`${formatProblem(p)}\n`);
      if (r.ok) {
        const agents = r.policy.agents.size;
        const rules = [...r.policy.agents.values()].reduce((n, a) => n + a.rules.length, 0);
        out(
          `${file}: ${failed ? 'invalid (warnings with --strict)' : 'valid'} — ${agents} agents, ${rules} rules, ${problems.length} warnings, policy ${r.policy.hash.slice(0, 12)}`,
        );
      } else {
        out(`${file}: invalid — ${r.problems.filter((p) => p.severity === 'error').length} errors`);
      }
    }
    return failed ? EXIT.fail : EXIT.ok;
  });
}
