/**
 * What the console and metrics cost: the same `execlayer serve` (compiled package, SQLite store) started
 * twice, side by side in one run — once with the console, metrics and tracing on and 10 live viewers
 * connected to `/console/events` (plus a Prometheus scrape every 2 s), once with `--no-console
 * --no-metrics`. Measured on each, in interleaved rounds: decision API throughput (autocannon, 16
 * connections, `POST /v1/decide`) and gateway latency (sequential `tools/call` of server-everything's
 * `echo` over Streamable HTTP). Prints medians and the on/off ratios; the target is within 5 %.
 *
 *   npm run bench:console
 *   BENCH_DURATION=5 BENCH_CALLS=1000 BENCH_ROUNDS=3 npm run bench:console
 *   BENCH_OBSERVER_ONLY=1 npx tsx bench/console.bench.ts   # only the in-process observer cost
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { hashApiKey, newApiKey } from '../src/enforce/auth.js';
import { settleDisk } from './lib/disk.js';
import { median, percentile } from './lib/stats.js';

const REPO = resolve(import.meta.dirname, '..');
const EVERYTHING = join(REPO, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 16;
const VIEWERS = 10;
const AGENT = newApiKey();
const OPS = newApiKey();

const POLICY = `version: 1
agents:
  bench-bot:
    roles: [bench]
roles:
  bench:
    - id: echo
      allow: everything.echo
      when: { cel: "size(args.message) < 200" }
    - id: reports
      allow: reports.read
    - id: no-deletes
      deny: reports.delete
`;

interface Server {
  name: string;
  proc: ChildProcess;
  base: string;
  close(): Promise<void>;
}

async function startServer(dir: string, name: string, on: boolean): Promise<Server> {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'policy.yaml'), POLICY);
  writeFileSync(
    join(d, 'execlayer.yaml'),
    `policy: ./policy.yaml
store: sqlite:./state/execlayer.db
upstreams:
  everything: { command: ${JSON.stringify(process.execPath)}, args: [${JSON.stringify(EVERYTHING)}, stdio] }
auth:
  apiKeys:
    - { sha256: ${hashApiKey(AGENT)}, agent: bench-bot }
    - { sha256: ${hashApiKey(OPS)}, agent: ops, roles: [operator] }
http: { maxSessions: 64 }
`,
  );
  const args = [
    join(REPO, 'bin/execlayer.js'),
    'serve',
    '-c',
    join(d, 'execlayer.yaml'),
    '--port',
    '0',
    '--json',
  ];
  if (!on) args.push('--no-console', '--no-metrics');
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise<string>((res, rej) => {
    let buf = '';
    proc.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      const line = buf.split('\n')[0];
      if (buf.includes('\n') && line) res(JSON.parse(line).url as string);
    });
    proc.once('exit', (code) => rej(new Error(`${name} exited with ${code}`)));
  });
  return {
    name,
    proc,
    base: url.replace(/\/mcp$/, ''),
    close: () =>
      new Promise<void>((r) => {
        proc.once('exit', () => r());
        proc.kill('SIGTERM');
      }),
  };
}

/** Logs in to the console and keeps `n` SSE viewers reading the live feed; returns events seen and a stop. */
async function viewers(base: string, n: number): Promise<{ seen: () => number; stop: () => void }> {
  const page = await fetch(`${base}/console/login`);
  const loginCookie = (page.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? '';
  const login = await fetch(`${base}/console/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: loginCookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ _csrf: csrf, key: OPS }).toString(),
  });
  const session = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  if (!session.startsWith('exl_console=')) throw new Error('console login failed');
  let events = 0;
  const reqs = Array.from({ length: n }, () => {
    const req = request(`${base}/console/events`, { headers: { cookie: session } }, (res) => {
      res.on('data', (c: Buffer) => {
        events += c.toString().split('event: decision').length - 1;
      });
    });
    req.on('error', () => {});
    req.end();
    return req;
  });
  const scrape = setInterval(() => {
    void fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${OPS}` } }).then((r) => r.text());
  }, 2000);
  return {
    seen: () => events,
    stop: () => {
      clearInterval(scrape);
      for (const r of reqs) r.destroy();
    },
  };
}

type Autocannon = (
  o: Record<string, unknown>,
) => Promise<{ requests: { average: number }; errors: number; non2xx: number }>;

async function decisionThroughput(base: string): Promise<number> {
  const autocannon = ((await import('autocannon' as string)) as { default: Autocannon }).default;
  const bodies = ['reports.read', 'reports.delete', 'reports.unknown'].map((tool) =>
    JSON.stringify({ tool, args: { id: 1 } }),
  );
  const requests = bodies.map((body) => ({
    method: 'POST',
    path: '/v1/decide',
    headers: { authorization: `Bearer ${AGENT}`, 'content-type': 'application/json' },
    body,
  }));
  const r = await autocannon({ url: base, connections: CONNECTIONS, duration: DURATION_S, requests });
  if (r.errors > 0 || r.non2xx > 0) throw new Error(`decision API: ${r.errors} errors, ${r.non2xx} non-2xx`);
  return r.requests.average;
}

async function gatewayLatency(base: string): Promise<{ p50: number; p99: number }> {
  const client = new Client({ name: 'bench', version: '1.0.0' }, { capabilities: {} });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${AGENT}` } },
    }),
  );
  try {
    const call = () => client.callTool({ name: 'everything.echo', arguments: { message: 'hello' } });
    for (let i = 0; i < 100; i++) await call();
    const samples: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const t = performance.now();
      const r = await call();
      samples.push(performance.now() - t);
      if (r.isError) throw new Error('echo was refused');
    }
    samples.sort((a, b) => a - b);
    return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
  } finally {
    await client.close();
  }
}

/**
 * The same work measured in process, where a loaded machine skews it least: CPU time per decision event of
 * the subscribers `serve` adds (metrics, span, live feed with 10 viewers writing to sockets that discard),
 * per decision. Compare with the decision API's cost per request (1 / decisions per second per core).
 */
async function observerCost(): Promise<number> {
  const { ExecLayerMetrics } = await import('../src/observe/metrics.js');
  const { spanForEvent } = await import('../src/observe/tracing.js');
  const { LiveHub } = await import('../src/enforce/console/live.js');
  const { Writable } = await import('node:stream');
  const metrics = new ExecLayerMetrics();
  const hub = new LiveHub({ flushMs: 100 });
  for (let i = 0; i < VIEWERS; i++) {
    const sink = new Writable({
      write: (_c, _e, cb) => cb(),
    }) as unknown as import('node:http').ServerResponse;
    Object.assign(sink, { writeHead: () => sink });
    hub.attach(sink, {});
  }
  const event = (i: number) =>
    ({
      type: 'decision',
      decision: {
        id: `d-${i}`,
        effect: i % 3 ? 'allow' : 'deny',
        rule: i % 3 ? 'reports' : 'no-deletes',
        reason: 'allowed by rule `reports`',
        policy: 'p'.repeat(64),
        mode: 'enforce',
        code: 'allowed',
      },
      action: { agent: 'bench-bot', tool: 'reports.read', args: { id: 1 }, argsDigest: 'a'.repeat(64) },
      point: 'http',
      latencyUs: 80,
    }) as const;
  const n = 200_000;
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const e = event(i);
    const at = Date.now();
    metrics.observe(e);
    spanForEvent(e, at);
    hub.observe(e, at);
    if (i % 500 === 499) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 150));
  const used = process.cpuUsage(t0);
  hub.close();
  return (used.user + used.system) / n;
}

async function main(): Promise<void> {
  const perEvent = await observerCost();
  process.stderr.write(`observer CPU per decision (in process): ${perEvent.toFixed(2)} µs\n`);
  if (process.env.BENCH_OBSERVER_ONLY) return;
  const dir = mkdtempSync(join(tmpdir(), 'console-bench-'));
  const on = await startServer(dir, 'on', true);
  const off = await startServer(dir, 'off', false);
  const live = await viewers(on.base, VIEWERS);
  const results: Record<string, { rps: number[]; p50: number[]; p99: number[] }> = {
    on: { rps: [], p50: [], p99: [] },
    off: { rps: [], p50: [], p99: [] },
  };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which server goes first, so drift on a shared machine hits both alike.
      const order = round % 2 === 0 ? [on, off] : [off, on];
      for (const s of order) {
        settleDisk();
        results[s.name]!.rps.push(await decisionThroughput(s.base));
        const g = await gatewayLatency(s.base);
        results[s.name]!.p50.push(g.p50);
        results[s.name]!.p99.push(g.p99);
        process.stderr.write(
          `round ${round + 1} ${s.name}: ${results[s.name]!.rps.at(-1)?.toFixed(0)} decisions/s, echo p50 ${g.p50.toFixed(2)} ms\n`,
        );
      }
    }
  } finally {
    live.stop();
    await on.close();
    await off.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const m = (k: 'on' | 'off', f: 'rps' | 'p50' | 'p99') => median(results[k]![f]);
  const ratio = (a: number, b: number) => `${((a / b - 1) * 100).toFixed(1)} %`;
  const machine = `${cpus().length} vCPUs, Node ${process.versions.node}, load average ${loadavg()[0]?.toFixed(1)}`;
  process.stdout.write(
    [
      `machine: ${machine}; ${ROUNDS} rounds, median shown; live viewers on the "on" server received ${live.seen()} decision events`,
      '',
      '| server | decision API (decisions/s) | gateway echo p50 | gateway echo p99 |',
      '| ------ | -------------------------: | ---------------: | ---------------: |',
      `| console, metrics, traces on, ${VIEWERS} viewers | ${m('on', 'rps').toFixed(0)} | ${m('on', 'p50').toFixed(2)} ms | ${m('on', 'p99').toFixed(2)} ms |`,
      `| console and metrics off | ${m('off', 'rps').toFixed(0)} | ${m('off', 'p50').toFixed(2)} ms | ${m('off', 'p99').toFixed(2)} ms |`,
      `| on vs off | ${ratio(m('on', 'rps'), m('off', 'rps'))} | ${ratio(m('on', 'p50'), m('off', 'p50'))} | ${ratio(m('on', 'p99'), m('off', 'p99'))} |`,
      '',
      `observer CPU per decision, in process (metrics, span, live feed to ${VIEWERS} viewers): ${perEvent.toFixed(2)} µs`,
      '',
    ].join('\n'),
  );
}

await main();
