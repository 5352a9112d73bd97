/**
 * `execlayer tools`: the pinned definitions of upstream tools. A tool whose definition changed is
 * hidden and its calls denied until an operator approves the new definition here.
 */
import { openAuditLog } from '../audit/log.js';
import { openToolPinStore } from '../enforce/mcp/pins.js';
import { loadConfigOrReport } from './mcp.js';
import { EXIT, flags, out, printJson, runCommand, UsageError } from './util.js';

const HELP = `usage: execlayer tools list [--config execlayer.yaml] [--json]
       execlayer tools approve <tool> [--config execlayer.yaml] [--by <name>] [--json]

list      every pinned tool (<upstream>.<tool>), its pinned sha256, and a pending changed definition
approve   accept the changed definition of <tool>: it becomes the pin, and the tool is visible and
          callable again (subject to policy). Recorded in the audit trail as a tool event.

Pins set in the config (\`pins:\`) are not changed here: edit the config instead.

exit codes: 0 ok, 1 invalid config, 2 usage error, 3 store error, 4 tool not found or nothing to approve
`;

/** Runs `execlayer tools …`. */
export async function toolsCommand(argv: string[]): Promise<number> {
  return runCommand(HELP, async () => {
    const { values, positionals } = flags(argv, {
      config: { type: 'string', short: 'c' },
      by: { type: 'string' },
      json: { type: 'boolean' },
    });
    const [sub, tool] = positionals;
    if (values.help || sub === undefined) {
      process.stdout.write(HELP);
      return values.help ? EXIT.ok : EXIT.usage;
    }
    if (sub !== 'list' && sub !== 'approve')
      throw new UsageError(`unknown subcommand \`${sub}\`: use \`list\` or \`approve\``);
    if (sub === 'approve' && !tool)
      throw new UsageError('`tools approve` needs the tool name, e.g. `files.read_file`');
    const config = loadConfigOrReport(values.config, values.json === true);
    if (typeof config === 'number') return config;
    const pins = openToolPinStore(
      config.store.pins,
      config.store.timeoutMs === undefined ? {} : { timeoutMs: config.store.timeoutMs },
    );
    try {
      if (sub === 'list') {
        const all = await pins.list();
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
      else out(`approved ${name}: ${before.hash.slice(0, 16)}… → ${after.hash.slice(0, 16)}…`);
      return EXIT.ok;
    } finally {
      await pins.close();
    }
  });
}
