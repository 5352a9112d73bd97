/**
 * Governance benchmark: the gap report and the evidence bundle over a large audit log (1 M records by
 * default), each beside its FLOOR measured in the same run — reading every record of the window and
 * parsing its decisions (the gap report cannot do less), and reading and copying the window's records to disk (the
 * bundle cannot do less). Each measurement runs in a process of its own, so its peak memory (max RSS) is
 * its own.
 *
 * Targets: gap report over 1 M records ≤ 10 s; the bundle for 1 M records within 512 MB.
 *
 *   npm run bench:report
 *   BENCH_RECORDS=200000 npm run bench:report
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openAuditLog } from '../src/audit/log.js';
import { jsonDigest } from '../src/canonical-json.js';
import { loadPolicyText } from '../src/policy/load.js';
import type { AuditEvent, DecisionEvent, Effect } from '../src/types.js';
import { declarationText, policyText } from '../test/governance-fixture.js';
import { formatCount, formatRatio, markdownTable } from './lib/format.js';
import { seededRng } from './lib/rng.js';

const N = Number(process.env.BENCH_RECORDS ?? 1_000_000);
const KB = '/srv/kb';
/** The measurements run the built package (npm run build first), as users run the commands. */
const CHILD = fileURLToPath(new URL('./report-child.mjs', import.meta.url));

interface Measured {
  ms: number;
  maxRssMb: number;
  detail: string;
}

/** Runs one measurement in a child process and returns what it printed. */
function child(mode: string, dir: string): Measured {
  const out = execFileSync(process.execPath, [CHILD, mode, dir], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(out.trim().split('\n').at(-1) as string) as Measured;
}

function decision(
  i: number,
  agent: string,
  tool: string,
  args: DecisionEvent['action']['args'],
  effect: Effect,
  rule: string | null,
  policy: string,
): DecisionEvent {
  return {
    type: 'decision',
    decision: {
      id: `dec_${i.toString(36).padStart(8, '0')}`,
      effect,
      rule,
      reason:
        effect === 'allow'
          ? `allowed by rule \`${rule}\``
          : effect === 'ask'
            ? 'needs approval'
            : 'no rule allows this action',
      policy,
      mode: 'enforce',
      code:
        effect === 'allow'
          ? 'allowed'
          : effect === 'ask'
            ? 'asked'
            : rule === null
              ? 'no_matching_rule'
              : 'denied_by_rule',
    },
    action: { agent, tool, session: `sess_${i % 97}`, args, argsDigest: jsonDigest(args) },
    point: 'mcp',
    latencyUs: 40 + (i % 50),
  };
}

/** The scenario's agents at scale: mostly declared work, some over-permitted and undeclared calls. */
async function generate(dir: string): Promise<void> {
  const p = loadPolicyText(policyText(KB), 'policy.yaml');
  if (!p.ok) throw new Error('bench policy does not load');
  const hash = p.policy.hash;
  writeFileSync(join(dir, 'policy.yaml'), policyText(KB));
  writeFileSync(join(dir, 'declarations.yaml'), declarationText(KB));
  const log = await openAuditLog(`sqlite:${join(dir, 'audit.db')}`, {
    checkpointEvery: 50_000,
    maxBatch: 10_000,
  });
  const rng = seededRng(19);
  let pending: Promise<void>[] = [];
  let records = 0;
  const put = (e: AuditEvent) => {
    pending.push(log.record(e));
    records++;
  };
  await log.record({ type: 'policy', status: 'loaded', policy: hash, source: 'policy.yaml' });
  records++;
  for (let i = 0; records < N; i++) {
    const k = rng.int(100);
    let e: DecisionEvent;
    if (k < 40)
      e = decision(
        i,
        'kb-reader',
        'files.read_text_file',
        { path: `${KB}/doc-${rng.int(2000)}.md` },
        'allow',
        'kb-read',
        hash,
      );
    else if (k < 60) {
      const a = rng.int(1000);
      e = decision(i, 'calc-bot', 'everything.get-sum', { a, b: rng.int(200) }, 'allow', 'sums', hash);
    } else if (k < 72) e = decision(i, 'mem-bot', 'memory.read_graph', {}, 'allow', 'mem-read', hash);
    else if (k < 78)
      e = decision(
        i,
        'mem-bot',
        'memory.create_entities',
        { entities: [{ name: `n${rng.int(5000)}`, entityType: 'note', observations: [] }] },
        'deny',
        null,
        hash,
      );
    else if (k < 92)
      e = decision(i, 'idle-bot', 'files.list_directory', { path: KB }, 'allow', 'idle-files', hash);
    else
      e = decision(
        i,
        'ops-bot',
        'everything.echo',
        { message: `m${rng.int(100)}` },
        'ask',
        'echo-approval',
        hash,
      );
    put(e);
    if (e.decision.effect === 'allow' && records < N) {
      put({
        type: 'outcome',
        decisionId: e.decision.id,
        agent: e.action.agent,
        tool: e.action.tool,
        ok: true,
        durationMs: 3,
      });
    }
    if (e.decision.effect === 'ask' && records + 2 < N) {
      const id = `apr_${i.toString(36)}`;
      const base = {
        approvalId: id,
        decisionId: e.decision.id,
        agent: e.action.agent,
        tool: e.action.tool,
        argsDigest: e.action.argsDigest,
      };
      put({ type: 'approval', status: 'requested', ...base });
      put({ type: 'approval', status: 'granted', ...base, approver: 'lead@acme.com' });
    }
    if (i % 200_000 === 199_999)
      put({ type: 'agent', status: 'suspended', agent: 'ops-bot', by: 'oncall@acme.com', reason: 'drill' });
    if (i % 200_000 === 200)
      put({ type: 'agent', status: 'resumed', agent: 'ops-bot', by: 'oncall@acme.com' });
    if (pending.length >= 4096) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await Promise.all(pending);
  await log.close();
  writeFileSync(join(dir, 'window.json'), JSON.stringify({ from: 0, to: Date.now() + 1 }));
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'execlayer-bench-report-'));
  if (process.env.BENCH_KEEP) process.stderr.write(`keeping ${work}\n`);
  try {
    process.stderr.write(`generating ${formatCount(N)} audit records …\n`);
    const g0 = Date.now();
    await generate(work);
    process.stderr.write(
      `generated in ${((Date.now() - g0) / 1000).toFixed(1)} s; measuring (one process each)\n`,
    );
    const floorRead = child('floor-read', work);
    const gap = child('gap', work);
    const floorCopy = child('floor-copy', work);
    const bundle = child('bundle', work);
    const s = (m: Measured) => `${(m.ms / 1000).toFixed(2)} s`;
    const mb = (m: Measured) => `${Math.round(m.maxRssMb)} MB`;
    process.stdout.write(
      `\n${formatCount(N)} records, ${cpus().length} cores, node ${process.version}\n\n${markdownTable(
        ['run', 'time', 'max RSS', 'vs floor', 'what'],
        [
          [
            'floor: read every record, parse the decisions',
            s(floorRead),
            mb(floorRead),
            '1.00x',
            floorRead.detail,
          ],
          ['`execlayer gap`', s(gap), mb(gap), formatRatio(gap.ms / floorRead.ms), gap.detail],
          ['floor: read + copy records to disk', s(floorCopy), mb(floorCopy), '1.00x', floorCopy.detail],
          [
            '`execlayer report` (bundle)',
            s(bundle),
            mb(bundle),
            formatRatio(bundle.ms / floorCopy.ms),
            bundle.detail,
          ],
        ],
      )}\n`,
    );
    const gapOk = N < 1_000_000 || gap.ms <= 10_000;
    const memOk = bundle.maxRssMb <= 512;
    process.stdout.write(
      `\ntargets: gap ≤ 10 s over 1 M records: ${N >= 1_000_000 ? (gapOk ? 'met' : 'MISSED') : 'n/a (fewer records)'}; bundle ≤ 512 MB: ${memOk ? 'met' : 'MISSED'}\n`,
    );
  } finally {
    if (!process.env.BENCH_KEEP) rmSync(work, { recursive: true, force: true });
  }
}

await main();
