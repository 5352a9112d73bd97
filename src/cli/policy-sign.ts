/**
 * `execlayer policy sign`: a detached Ed25519 signature over a policy's hash (one file or a bundle),
 * written to `<policy>.sig`, for gateways and SDKs configured with `policyKey` to verify.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { initFacts } from '../facts/index.js';
import { signaturePath } from '../policy/bundle-read.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import { PolicyKeyError, parsePolicyKey, signPolicyHash } from '../policy/signature.js';
import type { CommandIo } from './audit.js';
import { EXIT, flags, UsageError } from './util.js';

export const SIGN_HELP = `usage: execlayer policy sign --key <private.pem> <policy> [--out <file>] [--json]

Checks the policy (a file, a file with \`include:\`, or a bundle directory) like \`execlayer validate\`,
then signs its hash — the hash decisions and audit records carry, which covers every file of a bundle,
its name and its content — with an Ed25519 private key (PEM, PKCS#8), and writes the detached signature
to <policy>.sig (a directory's beside it: \`policy/\` → \`policy.sig\`). A gateway with \`policyKey\`, or
an SDK with the \`policyKey\` option, loads the policy only while that signature verifies. Make a key
pair with: openssl genpkey -algorithm ed25519 -out policy-signing.pem &&
           openssl pkey -in policy-signing.pem -pubout -out policy-signing.pub.pem

options:
  --key <file>   the Ed25519 private key (PEM)
  --out <file>   where to write the signature (default: <policy>.sig)
  --json         print {ok, policy, signature} as JSON
  -h, --help     this help

exit codes: 0 signed, 1 the policy is invalid (nothing written), 2 usage error, 3 unreadable key
`;

/** Runs `execlayer policy sign`. */
export async function signCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = flags(
    argv,
    { key: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' } },
    true,
  );
  if (values.help) {
    io.stdout.write(SIGN_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 1) throw new UsageError('expected exactly one policy (a file or a directory)');
  if (values.key === undefined) throw new UsageError('`policy sign` needs `--key <private.pem>`');
  const policy = positionals[0] as string;
  let key: ReturnType<typeof parsePolicyKey>;
  try {
    key = parsePolicyKey(readFileSync(values.key, 'utf8'), 'private', values.key);
  } catch (e) {
    const why =
      e instanceof PolicyKeyError ? e.message : `cannot read \`${values.key}\`: ${(e as Error).message}`;
    io.stderr.write(`error: ${why}\n`);
    return EXIT.error;
  }
  await initFacts();
  const r = await loadPolicyFile(policy);
  if (!r.ok) {
    for (const p of r.problems) io.stderr.write(`${formatProblem(p)}\n`);
    io.stderr.write(`${policy}: invalid, not signed\n`);
    return EXIT.fail;
  }
  const sig = signPolicyHash(r.policy.hash, key);
  const out = values.out ?? signaturePath(policy);
  // Written beside and renamed over, so a watching gateway never reads half a signature.
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(sig, null, 2)}\n`);
  renameSync(tmp, out);
  if (values.json) io.stdout.write(`${JSON.stringify({ ok: true, policy: sig.policy, signature: out })}\n`);
  else io.stdout.write(`${policy}: signed policy ${sig.policy} → ${out}\n`);
  return EXIT.ok;
}
