/**
 * `execlayer gap`: per agent and capability, what governance declared, what the policy permits and what
 * the agent attempted — aligned, over-permitted, undeclared attempt, unused permission, declared but not
 * permitted, unverifiable — as text, JSON or a self-contained HTML page; `--suggest` writes the policy
 * change that closes the gap and replays it.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { isAuditError } from '../audit/errors.js';
import { defaultStoreUrl, openStore } from '../audit/log.js';
import type { AuditRecord } from '../audit/record.js';
import { compile } from '../engine/compile.js';
import { initFacts } from '../facts/index.js';
import { loadDeclarationFiles } from '../governance/declaration.js';
import { governanceCycloneDx, governanceExport } from '../governance/export.js';
import { GAP_STATUSES, GapAnalyzer, type GapReport, type GapStatus } from '../governance/gap.js';
import { gapHtml, gapText } from '../governance/gap-render.js';
import { replaySuggestion, suggestFromGap } from '../governance/gap-suggest.js';
import { readWindow } from '../governance/records.js';
import { loadPolicyFile, loadPolicyText } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import { type CommandIo, parseTimeFlag } from './audit.js';
import { EXIT, flags, UsageError } from './util.js';

const HELP = `usage: execlayer gap --policy <policy.yaml> --declarations <file>... [--since 30d|ISO] [--until ISO]
                     [--agent A]... [--store <url>] [--json] [--html <file>] [--examples N]
                     [--suggest <candidate.yaml>] [--export <file>] [--cyclonedx <file>]
                     [--fail-on <status>]...

Compares, per agent and capability, what was declared (declaration files), what the policy permits and
what the agent attempted in the window (the audit trail). Containment is exact over typed constraints;
CEL, free-text capabilities and redacted arguments are reported as unverifiable, never as aligned.

statuses:
  aligned                  declared ⊇ permitted, and used in the window
  over-permitted           the policy permits more than was declared (the excess is named)
  undeclared attempt       the agent tried something never declared, allowed or not
  unused permission        permitted (and declared), never attempted in the window
  declared, not permitted  declared, but no rule permits the tool
  unverifiable             cannot be compared exactly

options:
  --policy <file>         the policy in force
  --declarations <file>   declaration file (repeatable, or comma-separated)
  --since, --until        the window (default: the last 30 days up to now)
  --agent <id>            only this agent (repeatable)
  --json                  the report as JSON
  --html <file>           also write the report as one self-contained HTML page
  --examples <N>          example record ids per row (default 5)
  --export <file>         write the declared + permitted + attempted view as JSON
                          (schema: schema/governance-export.schema.json)
  --cyclonedx <file>      the same as a CycloneDX 1.6 BOM: agents as components, tools as services,
                          enforced capabilities as properties (importable with \`declare import\`)
  --suggest <file>        write the candidate policy that removes unused permissions and narrows
                          over-permitted rules, print its diff, and replay it over the window
  --fail-on <status>      exit 1 when a row has this status (over-permitted, undeclared-attempt, …)
  --store <url>           sqlite:<file> or postgres://… (default: $EXECLAYER_STORE or sqlite:./execlayer.db)
  -h, --help              this help

exit codes: 0 ok, 1 a --fail-on status occurred, an invalid policy or declaration, or a suggestion
            that would deny a declared call; 2 usage error; 3 store error
`;

const PROCESS_IO: CommandIo = { stdout: process.stdout, stderr: process.stderr };

function statusFlag(s: string): GapStatus {
  const k = s.replace(/-/g, '_').replace(/,/g, '');
  if (!(GAP_STATUSES as readonly string[]).includes(k))
    throw new UsageError(
      `--fail-on \`${s}\` is not one of ${GAP_STATUSES.map((x) => x.replace(/_/g, '-')).join(', ')}`,
    );
  return k as GapStatus;
}

/** Entry point for `execlayer gap …`; returns the exit code. */
export async function gapCommand(argv: string[], io: CommandIo = PROCESS_IO): Promise<number> {
  try {
    const { values } = flags(
      argv,
      {
        policy: { type: 'string' },
        declarations: { type: 'string', multiple: true },
        since: { type: 'string' },
        until: { type: 'string' },
        agent: { type: 'string', multiple: true },
        store: { type: 'string' },
        json: { type: 'boolean' },
        html: { type: 'string' },
        examples: { type: 'string' },
        suggest: { type: 'string' },
        export: { type: 'string' },
        cyclonedx: { type: 'string' },
        'fail-on': { type: 'string', multiple: true },
      },
      false,
    );
    const v = values as typeof values & { declarations?: string[]; agent?: string[]; 'fail-on'?: string[] };
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    if (values.policy === undefined) throw new UsageError('gap needs --policy <policy.yaml>');
    const declFiles = (v.declarations ?? []).flatMap((d) => d.split(',')).filter(Boolean);
    if (declFiles.length === 0) throw new UsageError('gap needs --declarations <file>');
    const failOn = (v['fail-on'] ?? []).map(statusFlag);
    let examples = 5;
    if (values.examples !== undefined) {
      if (!/^\d{1,3}$/.test(values.examples))
        throw new UsageError(`--examples \`${values.examples}\` is not a number`);
      examples = Number(values.examples);
    }
    const now = Date.now();
    const window = {
      from: parseTimeFlag('since', values.since ?? '30d', now),
      to: values.until === undefined ? now + 1 : parseTimeFlag('until', values.until, now),
    };

    await initFacts();
    const policyText = await readFile(values.policy, 'utf8').catch(() => undefined);
    const loaded = await loadPolicyFile(values.policy);
    const decls = await loadDeclarationFiles(declFiles);
    const problems = [...(loaded.ok ? [] : loaded.problems), ...(decls.ok ? [] : decls.problems)];
    if (!loaded.ok || !decls.ok || policyText === undefined) {
      for (const p of problems) io.stderr.write(`${formatProblem(p)}\n`);
      return EXIT.fail;
    }
    const analyzer = new GapAnalyzer({
      policy: loaded.policy,
      declarations: decls.declarations,
      ...(v.agent?.length ? { agents: v.agent } : {}),
      window,
      examples,
    });
    // No memory map: the report streams, so its memory stays bounded whatever the size of the log.
    const store = await openStore(values.store ?? defaultStoreUrl(), { sqlite: { mmapBytes: 0 } });
    let report: GapReport;
    const kept: AuditRecord[] = [];
    try {
      // Only decisions matter to the gap report (and to --suggest's replay): others are not parsed.
      for await (const r of readWindow(store, window.from, window.to, { decisionsOnly: true })) {
        analyzer.observe(r);
        // Only --suggest replays; it keeps the window's decisions of the agents reported on.
        if (values.suggest !== undefined && r.event?.type === 'decision') {
          if (!v.agent?.length || v.agent.includes(r.event.action.agent)) kept.push(r);
        }
      }
      report = analyzer.finish();
    } finally {
      await store.close();
    }
    if (values.html !== undefined) await writeFile(values.html, gapHtml(report));
    if (values.export !== undefined || values.cyclonedx !== undefined) {
      const exp = governanceExport(report, loaded.policy, decls.declarations);
      if (values.export !== undefined) await writeFile(values.export, `${JSON.stringify(exp, null, 2)}\n`);
      if (values.cyclonedx !== undefined) {
        const { createRequire } = await import('node:module');
        const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
        await writeFile(
          values.cyclonedx,
          `${JSON.stringify(governanceCycloneDx(exp, pkg.version), null, 2)}\n`,
        );
      }
    }

    let suggestion: Record<string, unknown> | undefined;
    let badSuggestion = false;
    if (values.suggest !== undefined) {
      const s = suggestFromGap(report, loaded.policy, policyText, decls.declarations);
      const candidate = loadPolicyText(s.text, values.suggest);
      if (!candidate.ok) {
        for (const p of candidate.problems) io.stderr.write(`${formatProblem(p)}\n`);
        io.stderr.write('error: the suggested policy does not load; nothing was written\n');
        return EXIT.error;
      }
      await writeFile(values.suggest, s.text);
      const rep = replaySuggestion(kept, compile(candidate.policy), analyzer);
      badSuggestion = rep.newlyDeniedDeclared > 0;
      suggestion = {
        file: values.suggest,
        changes: s.changes,
        skipped: s.skipped,
        diff: s.diff,
        replay: rep,
      };
    }
    const hit = failOn.filter((s) => report.totals[s] > 0);
    if (values.json) {
      io.stdout.write(
        `${JSON.stringify({ ...report, ...(suggestion ? { suggestion } : {}), failedOn: hit }, null, 2)}\n`,
      );
    } else {
      io.stdout.write(gapText(report));
      if (suggestion) {
        const rep = suggestion.replay as ReturnType<typeof replaySuggestion>;
        io.stdout.write(`\nsuggested policy written to ${values.suggest}:\n${suggestion.diff as string}`);
        for (const k of suggestion.skipped as string[]) io.stdout.write(`  not changed: ${k}\n`);
        io.stdout.write(
          `replay over ${rep.replay.decisions} decisions: ${rep.replay.newlyDenied} newly denied (${rep.newlyDeniedUndeclared} outside the declarations, ${rep.newlyDeniedDeclared} within), ${rep.replay.newlyAllowed} newly allowed, ${rep.replay.newlyAsked} newly asked\n`,
        );
      }
      if (hit.length > 0) io.stdout.write(`\nFAILED: ${hit.join(', ')}\n`);
    }
    if (badSuggestion)
      io.stderr.write('error: the suggestion would deny calls within the declarations; review it\n');
    return hit.length > 0 || badSuggestion ? EXIT.fail : EXIT.ok;
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`error: ${e.message}\n\n${HELP}`);
      return EXIT.usage;
    }
    io.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return isAuditError(e) && e.code === 'invalid_store_url' ? EXIT.usage : EXIT.error;
  }
}
