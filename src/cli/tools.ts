/**
 * `execlayer tools`: the pinned definitions of upstream tools. A tool whose definition changed is
 * hidden and its calls denied until an operator approves the new definition here.
 */
import { openAuditLog } from '../audit/log.js';
import { diffLines } from '../enforce/console/diff.js';
import { openToolPinStore, type PinnedDefinition, type ToolPinStore } from '../enforce/mcp/pins.js';
import { loadConfigOrReport } from './mcp.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer tools list [--changed] [--config execlayer.yaml] [--json]
       execlayer tools diff <tool> [--config execlayer.yaml] [--json]
       execlayer tools approve <tool> [--hash <sha256>] [--config execlayer.yaml] [--by <name>] [--json]

list      every pinned tool (<upstream>.<tool>), its pinned sha256, and a pending changed definition;
          --changed: only tools with a changed definition waiting for review
diff      the pinned and the changed definition of <tool> (description and input schema) as a line
          diff, so what is approved is read, not only its hash
approve   accept the changed definition of <tool>: it becomes the pin, and the tool is visible and
          callable again (subject to policy). It names the exact hash it approves; with --hash it
          approves only that hash (the one \`tools diff\` showed), so a definition that changed again
          since is not approved unread. Recorded in the audit trail as a tool event.

Pins set in the config (\`pins:\`) are not changed here: edit the config instead.

exit codes: 0 ok, 1 invalid config, 2 usage error, 3 store error, 4 tool not found or nothing to approve
`;

/** Runs `execlayer tools …`. */
export async function toolsCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values, positionals } = flags(argv, {
      config: { type: 'string', short: 'c' },
      by: { type: 'string' },
      hash: { type: 'string' },
      changed: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const [sub, tool] = positionals;
    if (values.help || sub === undefined) {
      process.stdout.write(HELP);
      return values.help ? EXIT.ok : EXIT.usage;
    }
    if (sub !== 'list' && sub !== 'approve' && sub !== 'diff')
      throw new UsageError(`unknown subcommand \`${sub}\`: use \`list\`, \`diff\` or \`approve\``);
    if (sub !== 'list' && !tool)
      throw new UsageError(`\`tools ${sub}\` needs the tool name, e.g. \`files.read_file\``);
    const config = loadConfigOrReport(values.config, values.json === true);
    if (typeof config === 'number') return config;
    const pins = openToolPinStore(
      config.store.pins,
      config.store.timeoutMs === undefined ? {} : { timeoutMs: config.store.timeoutMs },
    );
    try {
      if (sub === 'list') {
        const all = (await pins.list()).filter((p) => !values.changed || p.pendingHash !== undefined);
        const rows = all.map((p) => ({
          tool: p.tool,
          status: config.pins[p.tool] !== undefined ? 'config' : p.pendingHash ? 'changed' : 'pinned',
          hash: config.pins[p.tool] ?? p.hash,
          ...(p.pendingHash ? { pendingHash: p.pendingHash } : {}),
          pinnedAt: p.pinnedAt,
          ...(p.approvedBy ? { approvedBy: p.approvedBy } : {}),
        }));
        if (values.json) printJson({ tools: rows });
        else if (rows.length === 0)
          out('no pinned tools yet (pins are recorded when the gateway first lists a tool)');
        else {
          for (const r of rows) {
            out(
              `${r.status.padEnd(8)} ${r.tool}  ${r.hash.slice(0, 16)}…${r.pendingHash ? `  → ${r.pendingHash.slice(0, 16)}… (run \`execlayer tools approve ${r.tool}\`)` : ''}`,
            );
          }
        }
        return EXIT.ok;
      }
      const name = tool!;
      if (sub === 'diff') return await diffCommand(pins, name, values.json === true);
      if (config.pins[name] !== undefined) {
        process.stderr.write(
          `error: \`${name}\` is pinned in the config (${config.file}); change \`pins:\` there\n`,
        );
        return EXIT.fail;
      }
      const before = await pins.get(name);
      if (!before) {
        process.stderr.write(`error: no pinned tool \`${name}\`; see \`execlayer tools list\`\n`);
        return EXIT.ask;
      }
      if (!before.pendingHash) {
        process.stderr.write(`error: \`${name}\` has no changed definition to approve\n`);
        return EXIT.ask;
      }
      if (values.hash !== undefined && values.hash.toLowerCase() !== before.pendingHash) {
        process.stderr.write(
          `error: the changed definition of \`${name}\` is now ${before.pendingHash}, not ${values.hash}: run \`execlayer tools diff ${name}\` again\n`,
        );
        return EXIT.fail;
      }
      const by = values.by ?? process.env.USER ?? 'operator';
      if (config.store.audit !== 'memory:') {
        // INVARIANT: the approval is recorded before it takes effect.
        const log = await openAuditLog(
          config.store.audit,
          config.store.auditKey === undefined ? {} : { keyPath: config.store.auditKey },
        );
        try {
          await log.record({
            type: 'tool',
            status: 'approved',
            tool: name,
            hash: before.pendingHash,
            previousHash: before.hash,
            by,
          });
        } finally {
          await log.close();
        }
      }
      const after = await pins.approve(name, by, before.pendingHash);
      if (!after) {
        process.stderr.write(`error: \`${name}\` changed while approving; run the command again\n`);
        return EXIT.error;
      }
      if (values.json) printJson({ tool: name, hash: after.hash, previousHash: before.hash, approvedBy: by });
      else out(`approved ${name}: ${before.hash} → ${after.hash}`);
      return EXIT.ok;
    } finally {
      await pins.close();
    }
  });
}

/** `tools diff <tool>`: the pinned and the changed definition, line by line. */
async function diffCommand(pins: ToolPinStore, name: string, json: boolean): Promise<number> {
  const pin = await pins.get(name);
  if (!pin) {
    process.stderr.write(`error: no pinned tool \`${name}\`; see \`execlayer tools list\`\n`);
    return EXIT.ask;
  }
  if (!pin.pendingHash) {
    if (json) printJson({ tool: name, hash: pin.hash, changed: false });
    else out(`${name}: no changed definition (pinned ${pin.hash})`);
    return EXIT.ok;
  }
  const before = await pins.definition?.(pin.hash);
  const after = await pins.definition?.(pin.pendingHash);
  const text = (d: PinnedDefinition | undefined) => (d === undefined ? '' : JSON.stringify(d, null, 2));
  if (json) {
    printJson({
      tool: name,
      hash: pin.hash,
      pendingHash: pin.pendingHash,
      before: before ?? null,
      after: after ?? null,
    });
    return EXIT.ok;
  }
  out(`--- ${name} pinned   ${pin.hash}`);
  out(`+++ ${name} changed  ${pin.pendingHash}`);
  if (before === undefined || after === undefined) {
    out(
      '(a definition was not kept — it was pinned before definitions were stored, or is too large; only its hash is known)',
    );
  }
  for (const l of diffLines(text(before), text(after))) out(`${l.op}${l.text}`);
  out(`\napprove exactly this definition: execlayer tools approve ${name} --hash ${pin.pendingHash}`);
  return EXIT.ok;
}
