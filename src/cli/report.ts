/**
 * `execlayer report`: build the signed, deterministic evidence bundle for a window; `execlayer report verify`
 * checks one offline and names every altered or missing file or record.
 */
import { readFile } from 'node:fs/promises';
import { readSigningKey } from '../audit/checkpoint.js';
import { isAuditError } from '../audit/errors.js';
import { defaultKeyPath, defaultStoreUrl, openStore } from '../audit/log.js';
import { initFacts } from '../facts/index.js';
import { loadDeclarationFiles } from '../governance/declaration.js';
import { buildReport, ReportError } from '../governance/report.js';
import { verifyBundle } from '../governance/report-verify.js';
import type { CheckedPolicy } from '../policy/check.js';
import { loadPolicyText } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import type { CommandIo } from './audit.js';
import { EXIT, flags, UsageError } from './util.js';

const HELP = `usage: execlayer report --from <ISO> --to <ISO> --policy <policy.yaml>... --declarations <file>...
                        --out <dir> [--agents a,b] [--store <url>] [--key <signing key>] [--json]
       execlayer report verify <dir> [--key <public key pem>] [--json]

Builds the evidence bundle for the window [from, to): a signed manifest of every file, a self-contained
HTML summary, per-control JSON (EU AI Act Art. 12, 14, 19, 26(6), 72; NIST AI RMF GOVERN 1.6, MEASURE 2.6,
MANAGE 2.4, 4.1; OWASP Agentic Top 10 ASI02, ASI03, ASI04, ASI10; NIST SP 800-53 AU-2/3/9/10/11/12) with
honest statuses (evidence observed, partial, gap, not assessed, not applicable), the audit segment with an
inclusion proof for every cited record and consistency proofs between its checkpoints, the policy
versions with their activation times, approvals with time to decide, stops with time to halt, denials
per rule per day, and the gap report. The same inputs give byte-identical files.

options:
  --from, --to <ISO>      the window (ISO 8601 times; required, so the bundle does not depend on now)
  --policy <file>         the policy in force, then older versions (repeatable): their exact texts go in
  --declarations <file>   declaration files (repeatable, or comma-separated)
  --agents <a,b>          only these agents in the gap report and the evidence
  --out <dir>             where to write the bundle (must not exist or be empty)
  --store <url>           sqlite:<file> or postgres://… (default: $EXECLAYER_STORE or sqlite:./execlayer.db)
  --key <file>            build: the audit log's signing key (default: the log's key file);
                          verify: the public key (PEM) the bundle must be signed with
  --json                  results as JSON
  -h, --help              this help

exit codes: 0 built / verified, 1 invalid input or a bundle that does not verify, 2 usage error,
            3 store or file error
`;

const PROCESS_IO: CommandIo = { stdout: process.stdout, stderr: process.stderr };

function isoFlag(name: string, v: string | undefined): number {
  if (v === undefined) throw new UsageError(`report needs --${name} <ISO 8601 time>`);
  const t = /^\d{4}-\d{2}-\d{2}/.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t)) throw new UsageError(`--${name} \`${v}\` is not an iso 8601 time`);
  return t;
}

/** Entry point for `execlayer report …`; returns the exit code. */
export async function reportCommand(argv: string[], io: CommandIo = PROCESS_IO): Promise<number> {
  try {
    if (argv[0] === 'verify') return await verifyCmd(argv.slice(1), io);
    return await buildCmd(argv, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`error: ${e.message}\n\n${HELP}`);
      return EXIT.usage;
    }
    io.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    if (e instanceof ReportError) return e.code === 'output_not_empty' ? EXIT.usage : EXIT.error;
    return isAuditError(e) && e.code === 'invalid_store_url' ? EXIT.usage : EXIT.error;
  }
}

async function buildCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values } = flags(
    argv,
    {
      from: { type: 'string' },
      to: { type: 'string' },
      policy: { type: 'string', multiple: true },
      declarations: { type: 'string', multiple: true },
      agents: { type: 'string' },
      out: { type: 'string' },
      store: { type: 'string' },
      key: { type: 'string' },
      json: { type: 'boolean' },
    },
    false,
  );
  const v = values as typeof values & { policy?: string[]; declarations?: string[] };
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT.ok;
  }
  const from = isoFlag('from', values.from);
  const to = isoFlag('to', values.to);
  if (to <= from) throw new UsageError('--to must be after --from');
  if (!v.policy?.length) throw new UsageError('report needs --policy <policy.yaml>');
  const declFiles = (v.declarations ?? []).flatMap((d) => d.split(',')).filter(Boolean);
  if (declFiles.length === 0) throw new UsageError('report needs --declarations <file>');
  if (values.out === undefined) throw new UsageError('report needs --out <dir>');
  const agents = values.agents
    ?.split(',')
    .map((a) => a.trim())
    .filter(Boolean);

  await initFacts();
  const policyTexts: { file: string; text: string; hash: string }[] = [];
  let inForce: CheckedPolicy | undefined;
  for (const file of v.policy) {
    const text = await readFile(file, 'utf8');
    const r = loadPolicyText(text, file);
    if (!r.ok) {
      for (const p of r.problems) io.stderr.write(`${formatProblem(p)}\n`);
      return EXIT.fail;
    }
    inForce ??= r.policy;
    policyTexts.push({ file, text, hash: r.policy.hash });
  }
  const decls = await loadDeclarationFiles(declFiles);
  if (!decls.ok) {
    for (const p of decls.problems) io.stderr.write(`${formatProblem(p)}\n`);
    return EXIT.fail;
  }
  const declarationTexts = await Promise.all(
    declFiles.map(async (file) => ({ file, text: await readFile(file, 'utf8') })),
  );
  const url = values.store ?? defaultStoreUrl();
  const key = readSigningKey(values.key ?? defaultKeyPath(url));
  // No memory map: the bundle streams, and its memory stays bounded by what it holds, not by the file size.
  const store = await openStore(url, { sqlite: { mmapBytes: 0 } });
  try {
    const r = await buildReport({
      store,
      key,
      policy: inForce as CheckedPolicy,
      policyTexts,
      declarations: decls.declarations,
      declarationTexts,
      window: { from, to },
      ...(agents?.length ? { agents } : {}),
      out: values.out,
    });
    const statuses = r.controls.map((c) => ({ id: c.id, status: c.status }));
    if (values.json) {
      io.stdout.write(
        `${JSON.stringify({ ok: true, out: values.out, files: r.files, records: r.records, proofs: r.proofs, unanchored: r.unanchored, controls: statuses, gap: r.gap.totals }, null, 2)}\n`,
      );
    } else {
      io.stdout.write(
        `evidence bundle written to ${values.out}: ${r.files} files, ${r.records} records, ${r.proofs} inclusion proofs\n`,
      );
      if (r.unanchored > 0)
        io.stdout.write(
          `note: ${r.unanchored} newer records are not under a signed checkpoint yet and were left out\n`,
        );
      for (const c of r.controls) io.stdout.write(`  ${c.status.padEnd(18)} ${c.id}: ${c.summary}\n`);
    }
    return EXIT.ok;
  } finally {
    await store.close();
  }
}

async function verifyCmd(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = flags(argv, { key: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT.ok;
  }
  const dir = positionals[0];
  if (dir === undefined) throw new UsageError('verify needs the bundle directory');
  const { statSync } = await import('node:fs');
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    io.stderr.write(`error: \`${dir}\` is not a directory: give the bundle directory\n`);
    return EXIT.error;
  }
  const pem = values.key === undefined ? undefined : await readFile(values.key, 'utf8');
  await initFacts();
  const r = verifyBundle(dir, pem);
  if (values.json) io.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else if (r.ok) {
    io.stdout.write(
      `ok: ${r.checked.files} files, ${r.checked.records} records, ${r.checked.proofs} proofs, ${r.checked.checkpoints} checkpoints, ${r.checked.policies} policies verified; signed by key ${r.keyId}${pem === undefined ? ' (the key in the bundle: pass --key to pin the log key)' : ''}\n`,
    );
  } else {
    for (const p of r.problems) io.stdout.write(`${p.code}: ${p.message}\n`);
    io.stdout.write(`FAILED: ${r.problems.length} problem(s)\n`);
  }
  return r.ok ? EXIT.ok : EXIT.fail;
}
