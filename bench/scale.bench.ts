/**
 * Scale of policy and agents: a generated bundle of 10,000 agents and 100,000 rules in 500 files (one
 * root, one base file of shared roles, 498 team files), deterministic (seeded). Measures, in one run:
 * read + load + check time and compile time, memory after a full GC with the engine held (RSS and heap,
 * beside the process before loading), the reload of a one-file change (the work a settled change costs,
 * and the watch's write-to-enforcement time), the cost of one watch poll over 500 files, and `decide()`
 * p50/p99 beside a 10-rule policy built from the same rule generator.
 *
 * Targets: load + compile ≤ 5 s, memory ≤ 1 GB, decision p50 within 3x of the 10-rule case.
 * Run: npm run bench:scale [-- --agents=N --files=N --samples=N --keep] (`--keep` leaves the bundle on disk)
 */
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parse as parseYamlText } from 'yaml';
import { compile, type Engine } from '../src/engine/compile.js';
import { initFacts } from '../src/facts/index.js';
import { type PolicyRead, readPolicy } from '../src/policy/bundle-read.js';
import { loadPolicyRead, loadPolicyText } from '../src/policy/load.js';
import { createExecLayer } from '../src/runtime/exec-layer.js';
import { probe } from '../src/runtime/policy-watch.js';
import type { Action } from '../src/types.js';
import { formatRatio, formatUs, markdownTable } from './lib/format.js';
import { type Rng, seededRng } from './lib/rng.js';
import { summarize } from './lib/stats.js';
import { sampleSingle } from './lib/timer.js';

const arg = (name: string, dflt: number) =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt);
const AGENTS = arg('agents', 10_000);
const FILES = arg('files', 500);
const SAMPLES = arg('samples', 100_000);
/** Rules per agent of its own; with the shared and team roles below, 100,000 rules for 10,000 agents. */
const AGENT_RULES = 9;
const ROLE_RULES = 10;
const SHARED_ROLES = 4;
const TEAM_ROLES = 2;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc (npm run bench:scale does)');

/** One generated rule as YAML (flow style, one line), and an action it decides, with its expected effect. */
interface GenRule {
  yaml: string;
  action: (agent: string) => Action;
}

/** A mix of the conditions real policies use: plain, typed args, path, url, CEL, SQL, email, deny, ask. */
function genRule(rng: Rng, scope: string, i: number): GenRule {
  const tool = `${scope}.op${i}`;
  const n = 10 + rng.int(990);
  switch (i % 9) {
    case 0:
      return { yaml: `{ allow: ${tool} }`, action: (agent) => ({ agent, tool, args: {} }) };
    case 1:
      return {
        yaml: `{ allow: ${tool}, when: { args: { limit: { type: integer, max: ${n} } } } }`,
        action: (agent) => ({ agent, tool, args: { limit: n - 1 } }),
      };
    case 2:
      return {
        yaml: `{ allow: ${tool}, when: { path: { under: [/srv/${scope}/d${n}] } } }`,
        action: (agent) => ({ agent, tool, args: { path: `/srv/${scope}/d${n}/f.txt` } }),
      };
    case 3:
      return {
        yaml: `{ allow: ${tool}, when: { url: { hosts: [api${n}.${scope}.example.com] } } }`,
        action: (agent) => ({ agent, tool, args: { url: `https://api${n}.${scope}.example.com/v1/x` } }),
      };
    case 4:
      return {
        yaml: `{ allow: ${tool}, when: { cel: "args.amount > 0 && args.amount <= ${n}" } }`,
        action: (agent) => ({ agent, tool, args: { amount: n + 1 } }),
      };
    case 5:
      return {
        yaml: `{ allow: ${tool}, when: { sql: { statements: [select], tables: [t${n}] } } }`,
        action: (agent) => ({ agent, tool, args: { sql: `select a from t${n} where id = 1` } }),
      };
    case 6:
      return {
        yaml: `{ allow: ${tool}, when: { email: { to_domains: [${scope}.example.com] } } }`,
        action: (agent) => ({ agent, tool, args: { to: `x@${scope}.example.com` } }),
      };
    case 7:
      return {
        yaml: `{ deny: ${tool}, when: { args: { force: { equals: true } } } }`,
        action: (agent) => ({ agent, tool, args: { force: true } }),
      };
    default:
      return { yaml: `{ ask: ${tool} }`, action: (agent) => ({ agent, tool, args: {} }) };
  }
}

interface Generated {
  dir: string;
  rules: number;
  agents: number;
  /** An action per agent-rule, to sample decisions from. */
  actions: Action[];
}

/** Writes the bundle: bundle.yaml, base/shared.yaml, and FILES - 2 team files. */
function generate(root: string): Generated {
  const rng = seededRng(21);
  const dir = join(root, 'policy');
  mkdirSync(join(dir, 'base'), { recursive: true });
  mkdirSync(join(dir, 'teams'), { recursive: true });
  writeFileSync(
    join(dir, 'bundle.yaml'),
    'version: 1\nteam: platform\nbase: [base/*.yaml]\nredact: [password]\n',
  );
  let rules = 0;
  const actions: Action[] = [];
  const shared: string[] = ['version: 1', 'roles:'];
  for (let r = 0; r < SHARED_ROLES; r++) {
    shared.push(`  shared.r${r}:`);
    for (let i = 0; i < ROLE_RULES; i++) shared.push(`    - ${genRule(rng, `shared${r}`, i).yaml}`);
    rules += ROLE_RULES;
  }
  writeFileSync(join(dir, 'base/shared.yaml'), `${shared.join('\n')}\n`);
  const teams = FILES - 2;
  let agentNo = 0;
  for (let t = 0; t < teams; t++) {
    const team = `t${String(t).padStart(3, '0')}`;
    const lines = [
      `version: 1`,
      `team: ${team}`,
      `owns: { agents: [${team}.*], roles: [${team}.*] }`,
      'roles:',
    ];
    for (let r = 0; r < TEAM_ROLES; r++) {
      lines.push(`  ${team}.r${r}:`);
      for (let i = 0; i < ROLE_RULES; i++) lines.push(`    - ${genRule(rng, `${team}r${r}`, i).yaml}`);
      rules += ROLE_RULES;
    }
    lines.push('agents:');
    // Agents spread evenly: the first AGENTS % teams teams get one more.
    const count = Math.floor(AGENTS / teams) + (t < AGENTS % teams ? 1 : 0);
    for (let a = 0; a < count; a++, agentNo++) {
      const id = `${team}.agent${a}`;
      lines.push(`  ${id}:`, `    owner: ${team}@example.com`);
      lines.push(`    roles: [shared.r${agentNo % SHARED_ROLES}, ${team}.r${a % TEAM_ROLES}]`, '    rules:');
      for (let i = 0; i < AGENT_RULES; i++) {
        const g = genRule(rng, `${team}a${a}`, i);
        lines.push(`      - ${g.yaml}`);
        actions.push(g.action(id));
      }
      rules += AGENT_RULES;
    }
    writeFileSync(join(dir, 'teams', `${team}.yaml`), `${lines.join('\n')}\n`);
  }
  return { dir, rules, agents: agentNo, actions };
}

/** The 10-rule case: one agent with 10 rules from the same generator, as one plain file. */
function smallPolicy(): { engine: Engine; actions: Action[] } {
  const rng = seededRng(21);
  const gens = Array.from({ length: 10 }, (_, i) => genRule(rng, 'small', i));
  const text = `version: 1\nagents:\n  bot:\n    rules:\n${gens.map((g) => `      - ${g.yaml}\n`).join('')}`;
  const r = loadPolicyText(text);
  if (!r.ok) throw new Error(`small policy: ${r.problems.map((p) => p.message).join('; ')}`);
  return { engine: compile(r.policy), actions: gens.map((g) => g.action('bot')) };
}

/** A line on stderr as each measure is taken, so a long run shows where it is. */
const progress = (line: string) => process.stderr.write(`${line}\n`);
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const ms = (v: number) => `${v.toFixed(0)} ms`;

function memory() {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

/** Decision latency over a fixed sequence of actions, one call per sample (tails included). */
function decisions(engine: Engine, actions: readonly Action[], count: number, seed: number) {
  const rng = seededRng(seed);
  const order = Array.from({ length: count }, () => actions[rng.int(actions.length)] as Action);
  const now = Date.parse('2026-12-04T10:00:00Z');
  // Warm-up (JIT), untimed.
  for (let i = 0; i < Math.min(count, 20_000); i++) engine.decide(order[i] as Action, now);
  const samples = sampleSingle(
    (from) => (engine.decide(order[from] as Action, now).effect === 'allow' ? 1 : 0),
    count,
  );
  return summarize(samples);
}

interface Loaded {
  engine: Engine;
  policy: Extract<ReturnType<typeof loadPolicyRead>, { ok: true }>['policy'];
  files: number;
  bytes: number;
  warnings: number;
  watched: Pick<PolicyRead, 'kind' | 'deps'>;
  readMs: number;
  loadMs: number;
  compileMs: number;
  totalMs: number;
  /** CPU time of the three steps (the machine may be shared: wall time includes waiting for a core). */
  cpuMs: number;
}

/** Reads, loads and compiles a bundle, timing each step; only the engine and policy stay referenced. */
async function loadTimed(dir: string): Promise<Loaded> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const read = await readPolicy(dir);
  const t1 = performance.now();
  const loaded = loadPolicyRead(read);
  const t2 = performance.now();
  if (!loaded.ok)
    throw new Error(
      `bundle does not load: ${loaded.problems
        .slice(0, 5)
        .map((p) => `${p.file}:${p.line} ${p.message}`)
        .join('; ')}`,
    );
  const engine = compile(loaded.policy);
  const t3 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  return {
    engine,
    policy: loaded.policy,
    files: read.files.length,
    bytes: read.files.reduce((s, f) => s + f.bytes.length, 0),
    warnings: loaded.warnings.length,
    watched: { kind: read.kind, deps: read.deps },
    readMs: t1 - t0,
    loadMs: t2 - t1,
    compileMs: t3 - t2,
    totalMs: t3 - t0,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

/** Writes every file of a YAML bundle as JSON under `to`, same names with `.json`; returns `to`. */
function toJson(from: string, to: string): string {
  const walk = (rel: string) => {
    mkdirSync(join(to, rel), { recursive: true });
    for (const e of readdirSync(join(from, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(name);
      else {
        const data = parseYamlText(readFileSync(join(from, name), 'utf8')) as { base?: string[] };
        if (data.base) data.base = data.base.map((b) => b.replace(/\.yaml$/, '.json'));
        writeFileSync(join(to, name.replace(/\.yaml$/, '.json')), JSON.stringify(data, null, 1));
      }
    }
  };
  walk('');
  return to;
}

async function main() {
  await initFacts();
  const root = mkdtempSync(join(tmpdir(), 'execlayer-scale-'));
  try {
    const t0 = performance.now();
    const gen = generate(root);
    const genMs = performance.now() - t0;
    const before = memory();

    const yamlLoad = await loadTimed(gen.dir);
    progress(`YAML load: ${ms(yamlLoad.totalMs)} (CPU ${ms(yamlLoad.cpuMs)})`);
    const { engine, policy, files, bytes, warnings } = yamlLoad;
    const watchedDeps = yamlLoad.watched;
    // The same bundle written as JSON (`.json` files take the JSON parser), timed the same way.
    const jsonDir = toJson(gen.dir, join(root, 'policy-json'));
    const jsonLoad = await loadTimed(jsonDir);
    progress(`JSON load: ${ms(jsonLoad.totalMs)} (CPU ${ms(jsonLoad.cpuMs)})`);
    if (jsonLoad.policy.agents.size !== policy.agents.size) throw new Error('the JSON bundle differs');
    jsonLoad.engine = undefined as never;
    jsonLoad.policy = undefined as never;
    const after = memory();
    // What an engine holds, without the read (the runtime drops the read after the swap).
    const held = { engine, policy };

    // Watch poll: the fingerprint of every file and directory (ten times a second by default).
    const polls: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await probe(watchedDeps);
      polls.push((performance.now() - t) * 1000);
    }
    const poll = summarize(polls);
    // One agent's calls again and again (its index stays in the CPU cache), beside calls spread over all.
    const hot = gen.actions.filter((a) => a.agent === gen.actions[0]?.agent);

    // Reload: one team file changed; the work once it settled (read, load, check, compile) …
    const reloadWork = async (dir: string, file: string, from: string, to: string) => {
      const path = join(dir, 'teams', file);
      writeFileSync(`${path}.tmp`, readFileSync(path, 'utf8').replace(from, to));
      renameSync(`${path}.tmp`, path);
      const t = performance.now();
      const reloaded = loadPolicyRead(await readPolicy(dir));
      if (!reloaded.ok) throw new Error('changed bundle does not load');
      compile(reloaded.policy);
      return performance.now() - t;
    };
    const reloadYamlMs = await reloadWork(gen.dir, 't007.yaml', 't007a0.op0 }', 't007a0.op0x }');
    progress(`YAML reload of one changed file: ${ms(reloadYamlMs)}`);
    const reloadJsonMs = await reloadWork(jsonDir, 't007.json', '"t007a0.op0"', '"t007a0.op0x"');
    const peak = process.memoryUsage().rss;

    // … and end to end through the watch (default timing), on the JSON bundle: write to enforcement.
    const layer = await createExecLayer({ policy: jsonDir, store: false, watch: true });
    const probeAction: Action = { agent: 't009.agent0', tool: 't009a0.op0y', args: {} };
    const file9 = join(jsonDir, 'teams', 't009.json');
    writeFileSync(`${file9}.tmp`, readFileSync(file9, 'utf8').replace('"t009a0.op0"', '"t009a0.op0y"'));
    renameSync(`${file9}.tmp`, file9);
    const tWatch = performance.now();
    while (layer.engine.decide(probeAction).effect !== 'allow') {
      if (performance.now() - tWatch > 120_000) throw new Error('the watch did not reload within 120 s');
      await new Promise((r) => setTimeout(r, 2));
    }
    const watchMs = performance.now() - tWatch;
    await layer.close();
    progress(`JSON reload: ${ms(reloadJsonMs)}; through the watch: ${ms(watchMs)}`);

    // Decisions: the big bundle beside the 10-rule policy, alternating, median of three rounds each.
    const small = smallPolicy();
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[1] as number;
    const big: ReturnType<typeof decisions>[] = [];
    const tiny: ReturnType<typeof decisions>[] = [];
    const one: ReturnType<typeof decisions>[] = [];
    for (let round = 0; round < 3; round++) {
      tiny.push(decisions(small.engine, small.actions, SAMPLES, 100 + round));
      big.push(decisions(held.engine, gen.actions, SAMPLES, 200 + round));
      one.push(decisions(held.engine, hot, SAMPLES, 300 + round));
    }
    const oneP50 = med(one.map((s) => s.p50));
    const oneP99 = med(one.map((s) => s.p99));
    const bigP50 = med(big.map((s) => s.p50));
    const bigP99 = med(big.map((s) => s.p99));
    const tinyP50 = med(tiny.map((s) => s.p50));
    const tinyP99 = med(tiny.map((s) => s.p99));

    const timing = (l: Loaded, what: string): string[][] => [
      [`${what}: read (every file, parsed)`, ms(l.readMs), '', ''],
      [`${what}: load + check (ownership, schema, conditions, CEL)`, ms(l.loadMs), '', ''],
      [`${what}: compile (engine index)`, ms(l.compileMs), '', ''],
      [
        `${what}: read + load + compile, wall (CPU)`,
        `${ms(l.totalMs)} (${ms(l.cpuMs)})`,
        '≤ 5 s',
        l.totalMs <= 5000 ? 'met' : l.cpuMs <= 5000 ? 'met in CPU time' : 'MISSED',
      ],
    ];
    const rows: string[][] = [
      ['bundle', `${gen.agents} agents, ${gen.rules} rules, ${files} files, ${mb(bytes)} of YAML`, '', ''],
      ...timing(yamlLoad, 'YAML'),
      ...timing(jsonLoad, 'JSON'),
      [
        'RSS after GC, engine held',
        `${mb(after.rss)} (before: ${mb(before.rss)})`,
        '≤ 1 GB',
        after.rss <= 1024 ** 3 ? 'met' : 'MISSED',
      ],
      ['heap after GC, engine held', `${mb(after.heap)} (before: ${mb(before.heap)})`, '', ''],
      ['RSS peak during reload', mb(peak), '', ''],
      ['YAML: reload of a one-file change (read, load, compile)', ms(reloadYamlMs), '', ''],
      ['JSON: reload of a one-file change (read, load, compile)', ms(reloadJsonMs), '', ''],
      ['JSON: reload through the watch, write → enforced', ms(watchMs), '', ''],
      [
        'one watch poll (stat 500 files, list dirs)',
        `${formatUs(poll.p50)} p50, ${formatUs(poll.p99)} p99`,
        '',
        '',
      ],
      ['decide() 10-rule policy', `${formatUs(tinyP50)} p50, ${formatUs(tinyP99)} p99`, '', ''],
      ['decide() bundle, one agent’s calls', `${formatUs(oneP50)} p50, ${formatUs(oneP99)} p99`, '', ''],
      [
        'decide() bundle, calls spread over every agent',
        `${formatUs(bigP50)} p50, ${formatUs(bigP99)} p99`,
        '',
        '',
      ],
      [
        'decide() p50 ratio bundle (one agent) / 10 rules',
        formatRatio(oneP50 / tinyP50),
        '≤ 3x',
        oneP50 / tinyP50 <= 3 ? 'met' : 'MISSED',
      ],
      [
        'decide() p50 ratio bundle (every agent) / 10 rules',
        formatRatio(bigP50 / tinyP50),
        '≤ 3x',
        bigP50 / tinyP50 <= 3 ? 'met' : 'MISSED',
      ],
    ];
    process.stdout.write(
      `generated in ${ms(genMs)}; ${warnings} warnings; ${SAMPLES} decisions × 3 rounds each\n\n`,
    );
    process.stdout.write(`${markdownTable(['measure', 'value', 'target', ''], rows)}\n`);
    void held;
  } finally {
    if (process.argv.includes('--keep')) process.stdout.write(`bundle kept in ${root}/policy\n`);
    else rmSync(root, { recursive: true, force: true });
  }
}

await main();
