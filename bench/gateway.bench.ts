/**
 * MCP gateway overhead: `tools/call` round trips to server-everything's `echo`, direct and through the
 * gateway, in the same run, over stdio and Streamable HTTP on loopback. The SDK client is the agent at
 * both ends. The policy allows `everything.echo` under a CEL condition, so each call does a real decision
 * (and, with the default SQLite store, a durable audit record before forwarding).
 *
 * Prints p50/p99 per call for one sequential client, sustained calls/s for 1 and 16 concurrent clients,
 * the gateway process's CPU time per forwarded call (user + system, from /proc/<pid>/stat), and ratios.
 * The floor, in the same run: a relay process (bench/lib/relay.mjs) that copies bytes between client and
 * upstream and does nothing else — what the extra process hop alone costs on this machine.
 * Each target is measured BENCH_ROUNDS times, interleaved, and the median of each figure is shown, so a
 * busy machine skews every target alike.
 *
 * 16 clients: over HTTP, 16 sessions on ONE gateway process vs 16 sessions on the one upstream process.
 * Over stdio a gateway serves exactly one client, so 16 clients means 16 gateway processes (each with its
 * own upstream process) vs 16 upstream processes direct: twice the processes on the same cores.
 *
 *   npm run bench:gateway                      # defaults
 *   BENCH_CALLS=3000 BENCH_SECONDS=5 BENCH_STORE=memory: npm run bench:gateway
 *   BENCH_ROUNDS=3                             # more rounds on a noisy machine
 *   BENCH_ONLY=http                            # only targets whose name contains one of these (comma-separated)
 *   BENCH_BASELINE=/path/to/other/checkout     # also run that checkout's gateway ("… gateway@base")
 *   BENCH_PROFILE=/tmp/prof                    # gateway processes write V8 CPU profiles there
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { hashApiKey, newApiKey } from '../src/enforce/auth.js';
import { freePort, waitForHttp } from '../src/testing/net.js';
import { settleDisk } from './lib/disk.js';

const REPO = resolve(import.meta.dirname, '..');
const EVERYTHING = join(REPO, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
/** The floor: a process that copies bytes between client and upstream and does nothing else. */
const RELAY = join(REPO, 'bench/lib/relay.mjs');
const PROFILE = process.env.BENCH_PROFILE;
/**
 * The gateway as users run it: the `execlayer` command from the compiled package (`npm run bench:gateway`
 * builds it first; a BENCH_BASELINE checkout must be built too). Gateway processes write a V8 CPU profile
 * into BENCH_PROFILE (a directory) when it is set.
 */
const cli = (repo: string) => [
  ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${resolve(PROFILE)}`] : []),
  join(repo, 'bin/execlayer.js'),
];
/** Comma-separated subset of targets to run, e.g. `stdio` or `http gateway`. */
const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim());
const CALLS = Number(process.env.BENCH_CALLS ?? 2000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const STORE = process.env.BENCH_STORE ?? 'sqlite:./bench.db';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const BASELINE = process.env.BENCH_BASELINE ? resolve(process.env.BENCH_BASELINE) : undefined;
const CONCURRENCY = 16;
const CLK_TCK = 100;

const dir = mkdtempSync(join(tmpdir(), 'gw-bench-'));
const key = newApiKey();

/** User and system CPU time of a process so far, in ms. */
function cpuMs(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(fields[11]) * 1000) / CLK_TCK, sys: (Number(fields[12]) * 1000) / CLK_TCK };
}

interface Target {
  name: string;
  connect(): Promise<{ client: Client; close(): Promise<void> }>;
  tool: string;
  /** The gateway process (for CPU accounting); undefined for direct targets. */
  pid?: () => number | undefined;
}

const args = { message: 'hello from the benchmark' };

async function sequential(t: Target) {
  settleDisk();
  const { client, close } = await t.connect();
  try {
    for (let i = 0; i < 200; i++) await client.callTool({ name: t.tool, arguments: args });
    const pid = t.pid?.();
    const cpu0 = pid ? cpuMs(pid) : undefined;
    const lat: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) {
      const s = performance.now();
      const r = await client.callTool({ name: t.tool, arguments: args });
      lat.push(performance.now() - s);
      if (r.isError) throw new Error(`${t.name}: ${JSON.stringify(r)}`);
    }
    const wall = performance.now() - t0;
    const cpu1 = pid ? cpuMs(pid) : undefined;
    const cpu =
      cpu0 && cpu1
        ? { user: (cpu1.user - cpu0.user) / CALLS, sys: (cpu1.sys - cpu0.sys) / CALLS }
        : undefined;
    lat.sort((a, b) => a - b);
    return {
      p50: lat[Math.floor(lat.length * 0.5)]!,
      p99: lat[Math.floor(lat.length * 0.99)]!,
      rps: (CALLS / wall) * 1000,
      cpuMsPerCall: cpu,
    };
  } finally {
    await close();
  }
}

/** 16 clients (HTTP: 16 sessions; stdio: 16 connections, each its own process pair) for SECONDS. */
async function concurrent(t: Target) {
  settleDisk();
  const conns = await Promise.all(Array.from({ length: CONCURRENCY }, () => t.connect()));
  try {
    await Promise.all(
      conns.map(async (c) => {
        for (let i = 0; i < 50; i++) await c.client.callTool({ name: t.tool, arguments: args });
      }),
    );
    let count = 0;
    const end = performance.now() + SECONDS * 1000;
    const t0 = performance.now();
    await Promise.all(
      conns.map(async (c) => {
        while (performance.now() < end) {
          const r = await c.client.callTool({ name: t.tool, arguments: args });
          if (r.isError) throw new Error(JSON.stringify(r));
          count++;
        }
      }),
    );
    return { rps: (count / (performance.now() - t0)) * 1000 };
  } finally {
    await Promise.all(conns.map((c) => c.close()));
  }
}

function stdioTarget(name: string, command: string, argv: string[], tool: string, gateway: boolean): Target {
  let lastPid: number | undefined;
  return {
    name,
    tool,
    ...(gateway ? { pid: () => lastPid } : {}),
    async connect() {
      const transport = new StdioClientTransport({ command, args: argv, cwd: REPO, stderr: 'ignore' });
      const client = new Client({ name: 'bench', version: '1' });
      await client.connect(transport);
      lastPid = transport.pid ?? undefined;
      return { client, close: () => client.close() };
    },
  };
}

/**
 * `fetch` for the benchmark's SDK clients: each request gets its own AbortSignal, linked to the one the
 * SDK's Streamable HTTP transport passes (shared by every request of a connection) until the response body
 * ends. undici adds a listener to the signal it is given and drops it only at garbage collection, so with
 * the shared signal every call left one behind: thousands per run, each reported by a
 * MaxListenersExceededWarning, at the same cost to the direct and the gateway rows.
 */
const requestScopedFetch: typeof fetch = async (url, init) => {
  const parent = init?.signal;
  if (!parent) return fetch(url, init);
  const own = new AbortController();
  const abort = () => own.abort(parent.reason);
  if (parent.aborted) abort();
  parent.addEventListener('abort', abort, { once: true });
  const unlink = () => parent.removeEventListener('abort', abort);
  try {
    const res = await fetch(url, { ...init, signal: own.signal });
    if (!res.body) {
      unlink();
      return res;
    }
    const body = res.body.pipeThrough(new TransformStream({ flush: unlink }));
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  } catch (err) {
    unlink();
    throw err;
  }
};

function httpTarget(
  name: string,
  url: string,
  tool: string,
  headers: Record<string, string>,
  pid?: () => number | undefined,
): Target {
  return {
    name,
    tool,
    ...(pid ? { pid } : {}),
    async connect() {
      const client = new Client({ name: 'bench', version: '1' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(url), {
          requestInit: { headers },
          fetch: requestScopedFetch,
        }),
      );
      return { client, close: () => client.close() };
    },
  };
}

interface Row {
  p50: number;
  p99: number;
  rps1: number;
  rps16: number;
  cpu?: { user: number; sys: number } | undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
}

async function main() {
  const procs: ChildProcess[] = [];
  try {
    writeFileSync(
      join(dir, 'policy.yaml'),
      `version: 1
agents:
  bench:
    owner: bench@example.com
    purpose: benchmark
    roles: [echo]
roles:
  echo:
    - id: echo
      allow: everything.echo
      when: { cel: "size(args.message) < 1000 && !args.message.contains('secret')" }
`,
    );
    const upPort = await freePort();
    const up = spawn(process.execPath, [EVERYTHING, 'streamableHttp'], {
      env: { ...process.env, PORT: String(upPort) },
      stdio: 'ignore',
    });
    procs.push(up);
    const upUrl = `http://127.0.0.1:${upPort}/mcp`;
    await waitForHttp(upUrl);

    const cfg = (upstream: string) => `policy: ../policy.yaml
store: "${STORE}"
agent: bench
upstreams:
${upstream}
auth:
  apiKeys:
    - { sha256: ${hashApiKey(key)}, agent: bench }
limits: { callTimeoutMs: 30000 }
http: { maxSessions: 1000 }
`;
    const relayPort = await freePort();
    const relay = spawn(process.execPath, [RELAY, 'http', String(relayPort), upUrl], { stdio: 'ignore' });
    procs.push(relay);
    await waitForHttp(`http://127.0.0.1:${relayPort}/mcp`);
    const targets: Target[] = [
      stdioTarget('stdio direct', process.execPath, [EVERYTHING], 'echo', false),
      httpTarget('http direct', upUrl, 'echo', {}),
      stdioTarget(
        'stdio relay',
        process.execPath,
        [RELAY, 'stdio', process.execPath, EVERYTHING],
        'echo',
        true,
      ),
      httpTarget('http relay', `http://127.0.0.1:${relayPort}/mcp`, 'echo', {}, () => relay.pid),
    ];
    const trees: Array<[string, string]> = [['', REPO]];
    if (BASELINE) trees.push(['@base', BASELINE]);
    for (const [tag, repo] of trees) {
      const cdir = join(dir, `cfg${tag.replace('@', '-')}`);
      mkdirSync(cdir);
      writeFileSync(
        join(cdir, 'stdio.yaml'),
        cfg(`  everything: { command: ${process.execPath}, args: [${EVERYTHING}] }`),
      );
      writeFileSync(join(cdir, 'http.yaml'), cfg(`  everything: { url: ${upUrl} }`));
      const gwPort = await freePort();
      const gw = spawn(
        process.execPath,
        [...cli(repo), 'serve', '--config', join(cdir, 'http.yaml'), '--port', String(gwPort)],
        { cwd: repo, stdio: ['ignore', 'ignore', 'ignore'] },
      );
      procs.push(gw);
      const gwUrl = `http://127.0.0.1:${gwPort}/mcp`;
      await waitForHttp(gwUrl);
      targets.push(
        stdioTarget(
          `stdio gateway${tag}`,
          process.execPath,
          [...cli(repo), 'mcp', '--config', join(cdir, 'stdio.yaml')],
          'everything.echo',
          true,
        ),
        httpTarget(
          `http gateway${tag}`,
          gwUrl,
          'everything.echo',
          { authorization: `Bearer ${key}` },
          () => gw.pid,
        ),
      );
    }
    const selected = targets
      .filter((t) => !ONLY || ONLY.some((o) => t.name.includes(o)))
      .sort((a, b) => a.name.localeCompare(b.name));

    console.log(
      `gateway benchmark: ${CALLS} sequential calls, ${SECONDS}s with ${CONCURRENCY} clients, ${ROUNDS} round(s), store ${STORE}, node ${process.version}`,
    );
    const runs = new Map<string, Row[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of selected) {
        const s = await sequential(t);
        const c = await concurrent(t);
        const list = runs.get(t.name) ?? [];
        list.push({ p50: s.p50, p99: s.p99, rps1: s.rps, rps16: c.rps, cpu: s.cpuMsPerCall });
        runs.set(t.name, list);
        console.log(`  round ${round + 1}: ${t.name} done`);
      }
    }
    const rows: Record<string, Row> = {};
    for (const [name, list] of runs) {
      const cpus = list.map((r) => r.cpu).filter((c) => c !== undefined);
      rows[name] = {
        p50: median(list.map((r) => r.p50)),
        p99: median(list.map((r) => r.p99)),
        rps1: median(list.map((r) => r.rps1)),
        rps16: median(list.map((r) => r.rps16)),
        cpu:
          cpus.length > 0
            ? { user: median(cpus.map((c) => c.user)), sys: median(cpus.map((c) => c.sys)) }
            : undefined,
      };
    }
    const f = (n: number, d = 3) => n.toFixed(d).padStart(9);
    console.log(
      '\npath                  p50 ms    p99 ms  calls/s(1) calls/s(16)  gateway/relay CPU ms/call (user, sys)',
    );
    for (const [name, r] of Object.entries(rows)) {
      const cpu =
        r.cpu === undefined
          ? '        -'
          : `${f(r.cpu.user + r.cpu.sys)} (${r.cpu.user.toFixed(3)}, ${r.cpu.sys.toFixed(3)})`;
      console.log(`${name.padEnd(20)}${f(r.p50)} ${f(r.p99)} ${f(r.rps1, 0)}   ${f(r.rps16, 0)}   ${cpu}`);
    }
    const added = (r: Row, d: Row) => r.p50 - d.p50;
    const cpuOf = (r: Row | undefined) => (r?.cpu ? r.cpu.user + r.cpu.sys : Number.NaN);
    console.log(
      '\nagainst the floor (a relay process that copies bytes and does nothing else: the cost of the hop alone)',
    );
    for (const g of Object.keys(rows).filter((n) => n.includes('gateway'))) {
      const transport = g.split(' ')[0];
      const d = rows[`${transport} direct`];
      const f = rows[`${transport} relay`];
      const r = rows[g]!;
      if (!d || !f) continue;
      console.log(
        `${g.padEnd(20)} +p50 ${added(f, d) > 0 ? `${(added(r, d) / added(f, d)).toFixed(1)}x` : `${added(r, d).toFixed(3)} ms vs`} the relay's (${added(f, d).toFixed(3)} ms)  ` +
          `CPU ${(cpuOf(r) / cpuOf(f)).toFixed(1)}x the relay's (${cpuOf(f).toFixed(3)} ms)  ` +
          `throughput(16) ${((r.rps16 / f.rps16) * 100).toFixed(0)}% of the relay's`,
      );
    }
    console.log(
      '\nadded by the gateway (target: p50 <= 0.3 ms, p99 <= 1 ms, 16-client throughput >= 70% of direct, gateway CPU <= 0.150 ms per call)',
    );
    console.log(
      '16 clients: http = 16 sessions on one gateway vs 16 on the upstream; stdio = 16 gateway+upstream process pairs vs 16 upstreams',
    );
    for (const g of Object.keys(rows).filter((n) => !n.includes('direct'))) {
      const d = rows[`${g.split(' ')[0]} direct`];
      const r = rows[g]!;
      if (!d) continue;
      console.log(
        `${g.padEnd(20)} +p50 ${(r.p50 - d.p50).toFixed(3)} ms  +p99 ${(r.p99 - d.p99).toFixed(3)} ms  ` +
          `throughput(1) ${((r.rps1 / d.rps1) * 100).toFixed(0)}%  throughput(16) ${((r.rps16 / d.rps16) * 100).toFixed(0)}%  ` +
          `p50 ratio ${(r.p50 / d.p50).toFixed(2)}x`,
      );
    }
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
