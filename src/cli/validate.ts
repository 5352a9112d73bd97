/** `execlayer validate <policy>`: load and check a policy, print every problem as file:line:column. */
import { readFileSync } from 'node:fs';
import { initFacts } from '../facts/index.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import { PolicyKeyError, parsePolicyKey } from '../policy/signature.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

export const validateHelp = `usage: execlayer validate <policy> [--key <public.pem>] [--strict] [--json]

Loads a policy — one YAML or JSON file, a file with \`include:\`, or a bundle directory (every
*.yaml, *.yml and *.json under it, from its bundle.yaml) — and runs every static check: schema,
unknown keys, types, roles, duplicate ids, conditions, CEL syntax and types, and for a bundle what
each team's files may define. Warnings (rules that can never match, rules a broader deny makes dead,
allow on \`*\`, CEL reading arguments a tool does not have) are printed too.

options:
  --key <file>  also require <policy>.sig to verify against this Ed25519 public key (PEM)
  --strict      treat warnings as errors
  --json        print {ok, hash, problems[]} as JSON
  -h, --help    show this help

exit codes: 0 valid, 1 invalid (or warnings with --strict, or a signature that does not verify),
            2 usage error, 3 unreadable key
`;

export async function validateCommand(argv: string[]): Promise<number> {
  return runCommand(validateHelp, async () => {
    const { values, positionals } = flags(argv, {
      strict: { type: 'boolean' },
      json: { type: 'boolean' },
      key: { type: 'string' },
    });
    if (values.help) {
      out(validateHelp);
      return EXIT.ok;
    }
    if (positionals.length !== 1) throw new UsageError('expected exactly one policy (a file or a directory)');
    let publicKey: ReturnType<typeof parsePolicyKey> | undefined;
    if (values.key !== undefined) {
      try {
        const pem = readFileSync(values.key, 'utf8');
        publicKey = parsePolicyKey(pem, pem.includes('PRIVATE KEY') ? 'private' : 'public', values.key);
      } catch (e) {
        const why =
          e instanceof PolicyKeyError ? e.message : `cannot read \`${values.key}\`: ${(e as Error).message}`;
        process.stderr.write(`error: ${why}\n`);
        return EXIT.error;
      }
    }
    await initFacts();
    const file = positionals[0] as string;
    const r = await loadPolicyFile(file, publicKey ? { publicKey } : {});
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
