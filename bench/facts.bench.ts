/**
 * Cost of one `facts()` call per canonicaliser, each beside the bare parser it builds on, in one run:
 * libpg-query `parseSync` for sql, a tree-sitter-bash parse for shell, WHATWG `new URL` for url,
 * `path.posix.normalize` for path. Every call is timed on its own (clock overhead included and
 * printed), cycling through a fixed set of realistic inputs; the reported p50/p99 are medians over
 * several runs. The ratio is facts() over the bare parser: what the analysis adds.
 *
 *   npm run bench:facts
 *   BENCH_RUNS=3 BENCH_SAMPLES=5000 npm run bench:facts
 */
import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import { posix } from 'node:path';
import { loadModule, parseSync } from 'libpg-query';
import { Language, Parser } from 'web-tree-sitter';
import { canonicalisers, factsReady, initFacts } from '../src/facts/index.js';
import { formatRatio, formatUs, markdownTable } from './lib/format.js';
import { type MedianOfRuns, medianOfRuns, summarize } from './lib/stats.js';
import { type BatchFn, clockOverheadUs, consume, sampleSingle, warmUp } from './lib/timer.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 20_000);
const WARM_MS = 300;

const INPUTS = {
  sql: [
    'SELECT id, name, email FROM customers WHERE id = $1',
    'SELECT c.id, t.subject FROM customers c JOIN tickets t ON t.customer_id = c.id WHERE t.status = $1 ORDER BY t.created_at DESC LIMIT 20',
    'WITH recent AS (SELECT * FROM tickets WHERE created_at > now() - interval $$7 days$$) SELECT count(*) FROM recent',
    'UPDATE tickets SET status = $1 WHERE id = $2 AND customer_id IN (SELECT id FROM customers WHERE region = $3)',
    'SELECT 1; DELETE FROM customers -- hidden',
  ],
  shell: [
    'ls -la /srv/kb',
    "grep -rn 'TODO' src/ | head -20",
    'cat /srv/kb/readme.md',
    'git log --oneline -n 10 && git status',
    'find . -name "*.ts" -newer package.json',
  ],
  url: [
    'https://api.acme.com/v1/customers/42?expand=tickets',
    'http://2130706433/admin',
    'https://user:pw@api.acme.com.evil.com:8443/x#frag',
    'https://xn--pi-6kc.acme.com/',
    'http://[::ffff:127.0.0.1]/',
  ],
  path: [
    '/srv/kb/docs/guide.md',
    '/srv/kb/./a/../b/c.txt',
    '/srv//kb/deep/er/still/file.json',
    '/etc/passwd',
    '/srv/kb',
  ],
  email: [
    'alice@acme.com',
    'Alice Doe <alice@acme.com>, bob@support.acme.com',
    '"Doe, Jane" <jane@acme.com>, x@evil.com',
    'ops@ACME.com',
    'a@acme.com, b@acme.com, c@acme.com, d@acme.com',
  ],
} as const;

type Name = keyof typeof INPUTS;

async function bareParsers(): Promise<Record<Name, ((s: string) => unknown) | null>> {
  await loadModule();
  await Parser.init();
  const lang = await Language.load(
    createRequire(import.meta.url).resolve('tree-sitter-bash/tree-sitter-bash.wasm'),
  );
  const ts = new Parser();
  ts.setLanguage(lang);
  return {
    sql: (s) => {
      try {
        return parseSync(s);
      } catch {
        return null;
      }
    },
    shell: (s) => {
      const t = ts.parse(s);
      const n = t?.rootNode.childCount ?? 0;
      t?.delete();
      return n;
    },
    url: (s) => new URL(s).hostname,
    path: (s) => posix.normalize(s),
    email: null,
  };
}

function measure(fn: (s: string) => unknown, inputs: readonly string[]): MedianOfRuns {
  const batch: BatchFn = (from, n) => {
    let acc = 0;
    for (let i = from; i < from + n; i++)
      acc += fn(inputs[i % inputs.length] as string) === undefined ? 0 : 1 + (i & 7);
    return acc;
  };
  const runs = [];
  for (let r = 0; r < RUNS; r++) {
    warmUp(batch, WARM_MS);
    runs.push(summarize(sampleSingle(batch, SAMPLES)));
  }
  return medianOfRuns(runs);
}

async function main(): Promise<void> {
  await initFacts();
  if (!factsReady()) throw new Error('parsers did not load');
  const bare = await bareParsers();
  // Every input must give an answer (facts or a refusal) before anything is timed.
  for (const [name, inputs] of Object.entries(INPUTS) as [Name, readonly string[]][]) {
    for (const s of inputs) {
      const r = canonicalisers[name].facts(s);
      if (!r.ok && r.error.includes('not initialised')) throw new Error(`${name} parser not ready`);
    }
  }
  const overhead = clockOverheadUs();
  const rows: string[][] = [];
  for (const name of Object.keys(INPUTS) as Name[]) {
    const inputs = INPUTS[name];
    const c = canonicalisers[name];
    const f = measure((s) => c.facts(s), inputs);
    const b = bare[name];
    const p = b === null ? null : measure(b, inputs);
    rows.push([
      name,
      formatUs(f.p50),
      formatUs(f.p99),
      p === null ? '-' : formatUs(p.p50),
      p === null ? '-' : formatUs(p.p99),
      p === null ? '-' : formatRatio(f.p50 / p.p50),
    ]);
  }
  console.log(`facts() per call, ${RUNS} runs x ${SAMPLES} calls each, median of per-run percentiles`);
  console.log(`clock overhead per sample: ${formatUs(overhead)} (included)\n`);
  console.log(
    markdownTable(
      ['canonicaliser', 'facts p50', 'facts p99', 'bare parser p50', 'bare parser p99', 'ratio p50'],
      rows,
    ),
  );
  // Tails on a shared machine are mostly scheduling: the bare parsers show the same spikes.
  console.log(
    `\nload average at end: ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} cpus (checksum ${consume()})`,
  );
}

await main();
