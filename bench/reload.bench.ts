/**
 * Time from the last write of a policy file to enforcement: the write returns, then decisions are taken
 * every millisecond until one reflects the new policy. Four ways of changing the file — rename over it,
 * write it in place, `sed -i`, a ConfigMap-style `..data` symlink swap — with the default watch (poll
 * every 100 ms, settle 250 ms), beside the floor the design implies (the settle interval rounded up to whole
 * polls, plus up to one poll before the change is first seen: 300–400 ms), and
 * the cost of one poll (open, stat, read and hash the file). Run: npm run bench:reload [-- --rounds=N]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createExecLayer } from '../src/runtime/exec-layer.js';
import { DEFAULT_POLL_MS, DEFAULT_SETTLE_MS, readSnapshot } from '../src/runtime/policy-watch.js';
import { markdownTable } from './lib/format.js';
import { summarize } from './lib/stats.js';

const rounds = Number(process.argv.find((a) => a.startsWith('--rounds='))?.slice(9) ?? 20);

/** A policy of realistic size (~40 rules) whose last rule allows `tool`. */
function policy(tool: string): string {
  const rules = Array.from({ length: 40 }, (_, i) => `      - allow: svc${i}.read\n`).join('');
  return `version: 1\nagents:\n  bot:\n    rules:\n${rules}      - allow: ${tool}\n`;
}

type Change = (file: string, dir: string, round: number, tool: string) => void;

const changes: Record<string, Change> = {
  'rename over (mv, editors)': (file, _dir, round, tool) => {
    writeFileSync(`${file}.tmp${round}`, policy(tool));
    renameSync(`${file}.tmp${round}`, file);
  },
  'write in place': (file, _dir, _round, tool) => writeFileSync(file, policy(tool)),
  'sed -i': (file, _dir, round, tool) => {
    const from = round % 2 === 0 ? 'tool.a' : 'tool.b';
    const r = spawnSync('sed', ['-i', `s/${from}/${tool}/`, file]);
    if (r.status !== 0) throw new Error(`sed failed: ${r.stderr}`);
  },
  'ConfigMap ..data symlink swap': (_file, dir, round, tool) => {
    const target = `..v${round + 1}`;
    mkdirSync(join(dir, target));
    writeFileSync(join(dir, target, 'policy.yaml'), policy(tool));
    symlinkSync(target, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  },
};

async function measure(name: string, change: Change): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'execlayer-reload-bench-'));
  const file = join(dir, 'policy.yaml');
  if (name.startsWith('ConfigMap')) {
    mkdirSync(join(dir, '..v0'));
    writeFileSync(join(dir, '..v0', 'policy.yaml'), policy('tool.a'));
    symlinkSync('..v0', join(dir, '..data'));
    symlinkSync('..data/policy.yaml', file);
  } else writeFileSync(file, policy('tool.a'));
  const layer = await createExecLayer({ policy: file, store: 'memory:', watch: true });
  const samples: number[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const tool = round % 2 === 0 ? 'tool.b' : 'tool.a';
      // Start each round at a random phase of the poll.
      await new Promise((r) => setTimeout(r, 50 + Math.random() * DEFAULT_POLL_MS));
      change(file, dir, round, tool);
      const t0 = performance.now();
      for (;;) {
        const d = await layer.authorize({ agent: 'bot', tool, args: {} });
        if (d.effect === 'allow') break;
        if (performance.now() - t0 > 5000) throw new Error(`${name}: round ${round} not enforced in 5 s`);
        await new Promise((r) => setTimeout(r, 1));
      }
      samples.push(performance.now() - t0);
    }
  } finally {
    await layer.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return samples;
}

async function pollCost(): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'execlayer-reload-bench-'));
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, policy('tool.a'));
  const out: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t0 = performance.now();
    await readSnapshot(file);
    out.push((performance.now() - t0) * 1000);
  }
  rmSync(dir, { recursive: true, force: true });
  return out.slice(200);
}

const rows: string[][] = [];
for (const [name, change] of Object.entries(changes)) {
  const s = summarize(await measure(name, change));
  rows.push([
    name,
    String(s.n),
    `${s.p50.toFixed(0)} ms`,
    `${s.max.toFixed(0)} ms`,
    `${s.min.toFixed(0)} ms`,
  ]);
  process.stderr.write(`${name}: done\n`);
}
const poll = summarize(await pollCost());
// Content first seen at some poll is loaded at the first poll at least `settle` later.
const settled = Math.ceil(DEFAULT_SETTLE_MS / DEFAULT_POLL_MS) * DEFAULT_POLL_MS;
process.stdout.write(
  `policy ${policy('tool.a').length} bytes; poll ${DEFAULT_POLL_MS} ms, settle ${DEFAULT_SETTLE_MS} ms; ` +
    `floor ${settled}–${settled + DEFAULT_POLL_MS} ms\n\n`,
);
process.stdout.write(`${markdownTable(['change', 'rounds', 'p50', 'max', 'min'], rows)}\n\n`);
process.stdout.write(
  `one poll (open, stat, read, sha256): p50 ${poll.p50.toFixed(1)} µs, p99 ${poll.p99.toFixed(1)} µs\n`,
);
