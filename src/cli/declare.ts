/**
 * `execlayer declare …`: check declaration files, import them from A2A agent cards, CycloneDX ML/AI-BOMs and
 * CSV/JSON registers, and migrate the policy's free-text `documented:` strings out of the policy.
 * Exit codes: 0 ok, 1 invalid declaration or input, 2 usage, 3 unreadable file.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { loadDeclarationFiles, loadDeclarationTexts } from '../governance/declaration.js';
import {
  fromA2aCard,
  fromCycloneDx,
  fromPolicyDocumented,
  fromRegister,
  ImportError,
  type Imported,
  parseFieldMap,
  registerRows,
} from '../governance/import.js';
import { loadPolicyFile } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import type { CommandIo } from './audit.js';
import { EXIT, flags, UsageError } from './util.js';

const HELP = `usage: execlayer declare validate <declaration.yaml>... [--json]
       execlayer declare import --from a2a|cyclonedx|csv|json <file> [--map <fields.json>]
                                [--agent <id>] [--owner <who>] [--out <declaration.yaml>] [--json]
       execlayer declare migrate --policy <policy.yaml> [--out <declaration.yaml>] [--json]

Declarations say what governance documents about each agent: owner, purpose, prohibited uses, risk
class, data categories, and capabilities as typed atoms in the policy's condition language.

  validate   check declaration files; problems as file:line:column
  import     build a declaration from an A2A AgentCard (skills), a CycloneDX 1.6 ML-BOM/AI-BOM
             (components and services) or a CSV/JSON register read through --map
             (a JSON object: {"agent": "<column>", "owner": …, "purpose": …, "capabilities": …,
             "prohibited", "data", "risk_level", "high_risk", "eu_ai_act_role", "retention",
             "separator"})
  migrate    move the policy's free-text \`documented:\` strings (and owner, purpose, risk) into a
             declaration; remove them from the policy afterwards

Imported free text becomes capabilities without tools: the gap report shows them as unverifiable until
their \`tools\` and \`when\` are written. The output is checked by the loader before it is written.

options:
  --out <file>   write the declaration there (default: standard output)
  --json         results as JSON
  -h, --help     this help

exit codes: 0 ok, 1 invalid declaration or input, 2 usage error, 3 unreadable file
`;

const PROCESS_IO: CommandIo = { stdout: process.stdout, stderr: process.stderr };

/** Entry point for `execlayer declare …`; returns the exit code. */
export async function declareCommand(argv: string[], io: CommandIo = PROCESS_IO): Promise<number> {
  try {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === '--help' || sub === '-h') {
      io.stdout.write(HELP);
      return sub === undefined ? EXIT.usage : EXIT.ok;
    }
    if (sub === 'validate') return await validate(rest, io);
    if (sub === 'import' || sub === 'migrate') return await importCmd(sub, rest, io);
    throw new UsageError(`unknown subcommand \`${sub}\`: use validate, import or migrate`);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`error: ${e.message}\n\n${HELP}`);
      return EXIT.usage;
    }
    if (e instanceof ImportError) {
      io.stderr.write(`error: ${e.message}\n`);
      return EXIT.fail;
    }
    io.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT.error;
  }
}

async function validate(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = flags(argv, { json: { type: 'boolean' } });
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT.ok;
  }
  if (positionals.length === 0) throw new UsageError('validate needs at least one declaration file');
  const r = await loadDeclarationFiles(positionals);
  if (values.json) {
    io.stdout.write(
      `${JSON.stringify(r.ok ? { ok: true, agents: [...r.declarations.agents.keys()] } : r, null, 2)}\n`,
    );
  } else if (r.ok) {
    io.stdout.write(`ok: ${r.declarations.agents.size} agent(s) declared in ${positionals.length} file(s)\n`);
  } else for (const p of r.problems) io.stderr.write(`${formatProblem(p)}\n`);
  return r.ok ? EXIT.ok : EXIT.fail;
}

async function importCmd(sub: 'import' | 'migrate', argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = flags(argv, {
    from: { type: 'string' },
    map: { type: 'string' },
    agent: { type: 'string' },
    owner: { type: 'string' },
    policy: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT.ok;
  }
  let imported: Imported;
  let source: string;
  if (sub === 'migrate') {
    if (values.policy === undefined) throw new UsageError('migrate needs --policy <policy.yaml>');
    const loaded = await loadPolicyFile(values.policy);
    if (!loaded.ok) {
      for (const p of loaded.problems) io.stderr.write(`${formatProblem(p)}\n`);
      return EXIT.fail;
    }
    imported = fromPolicyDocumented(loaded.policy.doc);
    source = values.policy;
  } else {
    const kind = values.from;
    const file = positionals[0];
    if (kind === undefined || file === undefined)
      throw new UsageError('import needs --from a2a|cyclonedx|csv|json and an input file');
    const text = await readFile(file, 'utf8');
    const opts = {
      ...(values.agent !== undefined ? { agent: values.agent } : {}),
      ...(values.owner !== undefined ? { owner: values.owner } : {}),
    };
    source = file;
    if (kind === 'a2a') imported = fromA2aCard(parseJson(text, file), opts);
    else if (kind === 'cyclonedx') imported = fromCycloneDx(parseJson(text, file), opts);
    else if (kind === 'csv' || kind === 'json') {
      if (values.map === undefined) throw new UsageError(`--from ${kind} needs --map <fields.json>`);
      const map = parseFieldMap(parseJson(await readFile(values.map, 'utf8'), values.map));
      imported = fromRegister(registerRows(text, kind), map);
    } else throw new UsageError(`--from \`${kind}\` is not one of a2a, cyclonedx, csv, json`);
  }
  const text = `# yaml-language-server: $schema=https://execlayer.dev/schema/declaration.schema.json\n# imported from ${source}\n${stringify(imported.file)}`;
  // INVARIANT: what is written loads — the importer's output goes through the same loader as a hand-written file.
  const check = loadDeclarationTexts([{ text, file: values.out ?? '<output>' }]);
  if (!check.ok) {
    for (const p of check.problems) io.stderr.write(`${formatProblem(p)}\n`);
    return EXIT.fail;
  }
  if (values.out !== undefined) await writeFile(values.out, text);
  if (values.json) {
    io.stdout.write(
      `${JSON.stringify({ ok: true, declaration: imported.file, notes: imported.notes }, null, 2)}\n`,
    );
  } else {
    if (values.out === undefined) io.stdout.write(text);
    for (const n of imported.notes) io.stderr.write(`note: ${n}\n`);
  }
  return EXIT.ok;
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ImportError(`\`${file}\` is not JSON: ${(e as Error).message}`);
  }
}
