/**
 * What one more Streamable HTTP session costs the gateway: memory (the resident set of the gateway and
 * every process under it, so upstream processes count) and the latency of its first `tools/call`.
 *
 * `execlayer serve` (the compiled package, as users run it) fronts four stdio upstreams from node_modules
 * (server-everything twice, server-filesystem, server-memory). One session warms the pool; then
 * BENCH_SESSIONS more sessions open one after another, each timed from `initialize` to its handshake and
 * then for its first call (`everything.echo`, a real decision and audit record). Sessions stay open, so the
 * memory figure is what the open sessions hold: (tree RSS after − tree RSS before) / sessions.
 *
 *   npm run bench:sessions
 *   BENCH_SESSIONS=50 npm run bench:sessions
 *   BENCH_BASELINE=/path/to/other/checkout BENCH_BASELINE_SESSIONS=3 npm run bench:sessions
 *     # also that (built) checkout's gateway, with fewer sessions: one that starts upstreams per session
 *     # starts 4 processes for each
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { hashApiKey, newApiKey } from '../src/enforce/auth.js';
import { freePort, waitForHttp } from '../src/testing/net.js';
import { median, percentile } from './lib/stats.js';

const REPO = resolve(import.meta.dirname, '..');
const NM = join(REPO, 'node_modules/@modelcontextprotocol');
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 20);
const BASELINE = process.env.BENCH_BASELINE ? resolve(process.env.BENCH_BASELINE) : undefined;
const BASELINE_SESSIONS = Number(process.env.BENCH_BASELINE_SESSIONS ?? 3);
const PAGE_KB = 4;

const dir = mkdtempSync(join(tmpdir(), 'gw-sessions-'));
const key = newApiKey();

/** The pids of `pid` and every process below it. */
function tree(pid: number): number[] {
  const out = [pid];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let children = '';
    try {
      children = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of children.split(' ').filter(Boolean)) out.push(...tree(Number(c)));
  }
  return out;
}

/** Resident set size of one process in MB (0 once it is gone). */
function rssMb(pid: number): number {
  try {
    const resident = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return (resident * PAGE_KB) / 1024;
  } catch {
    return 0;
  }
}

function treeRss(pid: number): { mb: number; processes: number } {
  const pids = tree(pid);
  return { mb: pids.reduce((sum, p) => sum + rssMb(p), 0), processes: pids.length };
}

async function connect(url: string): Promise<Client> {
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

async function firstCall(client: Client): Promise<void> {
  const r = await client.callTool({ name: 'everything.echo', arguments: { message: 'first' } });
  if (r.isError) throw new Error(`first call refused: ${JSON.stringify(r)}`);
}

interface Result {
  name: string;
  sessions: number;
  perSessionMb: number;
  processesBefore: number;
  processesAfter: number;
  handshakeMs: number[];
  firstCallMs: number[];
  warmFirstCallMs: number;
}

async function measure(name: string, repo: string, sessions: number): Promise<Result> {
  const home = join(dir, name.replace(/\W+/g, '-'));
  mkdirSync(join(home, 'files'), { recursive: true });
  writeFileSync(
    join(home, 'policy.yaml'),
    `version: 1
agents:
  bench: { owner: bench@example.com, purpose: benchmark, roles: [echo] }
roles:
  echo:
    - { id: echo, allow: everything.echo, when: { cel: "size(args.message) < 1000" } }
`,
  );
  const node = JSON.stringify(process.execPath);
  writeFileSync(
    join(home, 'execlayer.yaml'),
    `policy: ./policy.yaml
store: "sqlite:./bench.db"
upstreams:
  everything: { command: ${node}, args: [${JSON.stringify(join(NM, 'server-everything/dist/index.js'))}] }
  more: { command: ${node}, args: [${JSON.stringify(join(NM, 'server-everything/dist/index.js'))}] }
  files: { command: ${node}, args: [${JSON.stringify(join(NM, 'server-filesystem/dist/index.js'))}, ${JSON.stringify(join(home, 'files'))}] }
  memory:
    command: ${node}
    args: [${JSON.stringify(join(NM, 'server-memory/dist/index.js'))}]
    env: { MEMORY_FILE_PATH: ${JSON.stringify(join(home, 'memory.jsonl'))} }
auth:
  apiKeys:
    - { sha256: ${hashApiKey(key)}, agent: bench }
limits: { callTimeoutMs: 30000 }
http: { maxSessions: 1000, maxSessionsPerAgent: 1000 }
`,
  );
  const port = await freePort();
  const gw: ChildProcess = spawn(
    process.execPath,
    [
      join(repo, 'bin/execlayer.js'),
      'serve',
      '--config',
      join(home, 'execlayer.yaml'),
      '--port',
      String(port),
    ],
    { cwd: home, stdio: ['ignore', 'ignore', process.env.BENCH_VERBOSE ? 'inherit' : 'ignore'] },
  );
  const exited = new Promise((r) => gw.once('exit', r));
  const clients: Client[] = [];
  try {
    const url = `http://127.0.0.1:${port}/mcp`;
    await waitForHttp(url);
    const pid = gw.pid!;
    // The first session starts the pool (or, per session, its own upstreams) and waits for them.
    const t0 = performance.now();
    const first = await connect(url);
    clients.push(first);
    await firstCall(first);
    const warmFirstCallMs = performance.now() - t0;
    for (let i = 0; i < 20; i++) await firstCall(first);
    await new Promise((r) => setTimeout(r, 500));
    const before = treeRss(pid);
    const handshakeMs: number[] = [];
    const firstCallMs: number[] = [];
    for (let i = 0; i < sessions; i++) {
      const s0 = performance.now();
      const c = await connect(url);
      const s1 = performance.now();
      await firstCall(c);
      handshakeMs.push(s1 - s0);
      firstCallMs.push(performance.now() - s1);
      clients.push(c);
    }
    await new Promise((r) => setTimeout(r, 1000));
    const after = treeRss(pid);
    return {
      name,
      sessions,
      perSessionMb: (after.mb - before.mb) / sessions,
      processesBefore: before.processes,
      processesAfter: after.processes,
      handshakeMs,
      firstCallMs,
      warmFirstCallMs,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    gw.kill('SIGTERM');
    await exited;
  }
}

async function main() {
  try {
    const runs = [await measure('gateway', REPO, SESSIONS)];
    if (BASELINE) runs.push(await measure('gateway@base', BASELINE, BASELINE_SESSIONS));
    console.log(
      `\nsessions benchmark: 4 stdio upstreams, sessions opened one after another over HTTP, node ${process.version}`,
    );
    console.log(
      'target    sessions  MB/session  processes (before → after)  handshake p50 ms  first call p50 / p99 / max ms  first session ms',
    );
    for (const r of runs) {
      const fc = [...r.firstCallMs].sort((a, b) => a - b);
      const f = (n: number, w = 8) => n.toFixed(1).padStart(w);
      console.log(
        `${r.name.padEnd(12)}${String(r.sessions).padStart(6)}${f(r.perSessionMb, 12)}${`${r.processesBefore} → ${r.processesAfter}`.padStart(22)}      ${f(median(r.handshakeMs), 12)}        ${f(percentile(fc, 50), 6)} /${f(percentile(fc, 99), 6)} /${f(fc[fc.length - 1] ?? 0, 6)}   ${f(r.warmFirstCallMs, 14)}`,
      );
    }
    console.log('\ntargets: each further session <= 5 MB, its first call <= 20 ms over a warm pool');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
