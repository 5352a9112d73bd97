/**
 * Decision API throughput and latency over loopback HTTP: ExecLayer (AuthZEN endpoints, decision
 * recording on) against Cerbos (its native check API) and a bare node:http floor, in one run, with the
 * same load generator (autocannon) and 32 connections. Servers run in their own processes so the load
 * generator never shares their event loop. Both engines get the AuthZEN Todo policy (examples/authzen-todo)
 * and must agree on every request in the set before anything is timed.
 *
 * Then AuthZEN search over a generated 1,000-agent policy: subject search ("which agents may call this
 * tool with these arguments?", 1,000 decisions per request) and action search (one agent's tools), their
 * latency from one client (p50/p99 of sequential requests) and under the same 32-connection load.
 *
 *   npm run bench:api                 # 10 s per run
 *   BENCH_DURATION=5 npm run bench:api
 *   BENCH_PROFILE=/tmp/prof           # the ExecLayer servers write V8 CPU profiles there
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { hashApiKey } from '../src/enforce/auth.js';
import { freePort } from '../src/testing/net.js';
import { settleDisk } from './lib/disk.js';
import { summarize } from './lib/stats.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const POLICY = join(ROOT, 'examples/authzen-todo/policy.yaml');
const CERBOS_BIN = join(ROOT, 'node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64');
const API_KEY = 'bench-pep-key';
const CONNECTIONS = 32;
const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const PROFILE = process.env.BENCH_PROFILE;
const BATCH = 10;

// ---------------------------------------------------------------------------------------------------
// The scenario: five users, their roles and e-mails (the same facts the ExecLayer policy holds).
const USERS = [
  {
    pid: 'CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs',
    email: 'rick@the-citadel.com',
    roles: ['viewer', 'editor', 'admin', 'evil_genius'],
  },
  {
    pid: 'CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs',
    email: 'morty@the-citadel.com',
    roles: ['viewer', 'editor'],
  },
  {
    pid: 'CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs',
    email: 'summer@the-smiths.com',
    roles: ['viewer', 'editor'],
  },
  {
    pid: 'CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs',
    email: 'beth@the-smiths.com',
    roles: ['viewer'],
  },
  {
    pid: 'CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs',
    email: 'jerry@the-smiths.com',
    roles: ['viewer'],
  },
];
type User = (typeof USERS)[number];

interface Check {
  user: User;
  action: string;
  kind: 'todo' | 'user';
  id: string;
  ownerID?: string;
}

function checks(): Check[] {
  const out: Check[] = [];
  for (const user of USERS) {
    out.push({ user, action: 'can_read_user', kind: 'user', id: 'beth@the-smiths.com' });
    out.push({ user, action: 'can_read_todos', kind: 'todo', id: 'todo-1' });
    out.push({ user, action: 'can_create_todo', kind: 'todo', id: 'todo-1' });
    for (const [i, owner] of USERS.entries()) {
      out.push({ user, action: 'can_update_todo', kind: 'todo', id: `t-${i}`, ownerID: owner.email });
      out.push({ user, action: 'can_delete_todo', kind: 'todo', id: `t-${i}`, ownerID: owner.email });
    }
  }
  return out;
}

function authzenBody(c: Check): string {
  return JSON.stringify({
    subject: { type: 'user', id: c.user.pid },
    action: { name: c.action },
    resource: { type: c.kind, id: c.id, ...(c.ownerID ? { properties: { ownerID: c.ownerID } } : {}) },
  });
}

function cerbosResource(c: Check) {
  return {
    actions: [c.action],
    resource: { kind: c.kind, id: c.id, attr: c.ownerID ? { ownerID: c.ownerID } : {} },
  };
}

function cerbosBody(principal: User, items: Check[]): string {
  return JSON.stringify({
    requestId: 'bench',
    principal: { id: principal.pid, roles: principal.roles, attr: { email: principal.email } },
    resources: items.map(cerbosResource),
  });
}

/** Batches: each user asks which of ten todos (varied owners) they may update. */
function batches(): { user: User; items: Check[] }[] {
  return USERS.map((user) => ({
    user,
    items: Array.from({ length: BATCH }, (_, i) => ({
      user,
      action: 'can_update_todo',
      kind: 'todo' as const,
      id: `t-${i}`,
      ownerID: (USERS[i % USERS.length] as User).email,
    })),
  }));
}

function authzenBatchBody(b: { user: User; items: Check[] }): string {
  return JSON.stringify({
    subject: { type: 'user', id: b.user.pid },
    action: { name: 'can_update_todo' },
    evaluations: b.items.map((c) => ({
      resource: { type: 'todo', id: c.id, properties: { ownerID: c.ownerID } },
    })),
  });
}

// ---------------------------------------------------------------------------------------------------
// Child processes: the ExecLayer server and the bare floor.

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The ExecLayer server under test is what users run: `execlayer serve` from the compiled package (bin/ →
 * dist/), with the Todo policy, the PEP's API key (role `pdp-client`) and the given store — `sqlite:` records
 * every decision durably before answering; `memory:` keeps records in memory (nothing durable).
 */
async function startServe(dir: string, store: string, policy = POLICY, name?: string): Promise<Child> {
  const config = join(dir, `execlayer-${name ?? (store.startsWith('sqlite:') ? 'sqlite' : 'memory')}.yaml`);
  writeFileSync(
    config,
    [
      `policy: ${JSON.stringify(policy)}`,
      `store: ${JSON.stringify(store)}`,
      'auth:',
      '  apiKeys:',
      `    - { sha256: ${hashApiKey(API_KEY)}, agent: todo-backend, roles: [pdp-client] }`,
      '',
    ].join('\n'),
  );
  const child = await startProcess(
    [
      ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${resolve(PROFILE)}`] : []),
      join(ROOT, 'bin/execlayer.js'),
      'serve',
      ...['--config', config, '--port', '0', '--json'],
    ],
    'execlayer serve',
  );
  const url = new URL(String(child.first.url));
  return { ...child, first: { ...child.first, port: Number(url.port) } };
}

/** Audit records in a SQLite store file (read after the server stopped). */
function countRecords(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM audit_records').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

function childBare(): void {
  const server = createServer((req, res) => {
    void readBody(req).then((text) => {
      JSON.parse(text);
      const body = '{"decision":true}';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  });
  process.once('SIGTERM', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------------
// Parent: start servers, check agreement, time.

interface Child {
  proc: ChildProcess;
  first: Record<string, unknown>;
  lines: Record<string, unknown>[];
}

function startChild(args: string[]): Promise<Child> {
  return startProcess(['--import', 'tsx', fileURLToPath(import.meta.url), ...args], args[0] ?? '');
}

/** Starts `node <argv>` and resolves with the first JSON line it prints on stdout. */
function startProcess(argv: string[], name: string): Promise<Child> {
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  return new Promise((resolvePromise, reject) => {
    proc.once('exit', (code) => reject(new Error(`${name} exited with ${code}: ${stderr}`)));
    proc.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl !== -1) {
        const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (lines.length === 1) resolvePromise({ proc, first: line, lines });
        nl = buf.indexOf('\n');
      }
    });
  });
}

async function stopChild(c: Child): Promise<void> {
  c.proc.removeAllListeners('exit');
  const exited = new Promise<void>((r) => c.proc.once('exit', () => r()));
  c.proc.kill('SIGTERM');
  await exited;
}

const CERBOS_POLICIES: Record<string, string> = {
  'todo.yaml': `apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: todo
  rules:
    - actions: [can_read_todos]
      effect: EFFECT_ALLOW
      roles: [viewer]
    - actions: [can_create_todo]
      effect: EFFECT_ALLOW
      roles: [editor]
    - actions: [can_update_todo, can_delete_todo]
      effect: EFFECT_ALLOW
      roles: [editor]
      condition:
        match:
          expr: has(request.resource.attr.ownerID) && request.resource.attr.ownerID == request.principal.attr.email
    - actions: [can_delete_todo]
      effect: EFFECT_ALLOW
      roles: [admin]
    - actions: [can_update_todo]
      effect: EFFECT_ALLOW
      roles: [evil_genius]
`,
  'user.yaml': `apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: user
  rules:
    - actions: [can_read_user]
      effect: EFFECT_ALLOW
      roles: [viewer]
`,
};

async function startCerbos(dir: string): Promise<{ proc: ChildProcess; url: string }> {
  const policyDir = join(dir, 'policies');
  rmSync(policyDir, { recursive: true, force: true });
  await import('node:fs/promises').then((fs) => fs.mkdir(policyDir, { recursive: true }));
  for (const [name, text] of Object.entries(CERBOS_POLICIES)) writeFileSync(join(policyDir, name), text);
  const [http, grpc] = [await freePort(), await freePort()];
  const config = join(dir, 'cerbos.yaml');
  writeFileSync(
    config,
    `server:\n  httpListenAddr: "127.0.0.1:${http}"\n  grpcListenAddr: "127.0.0.1:${grpc}"\nstorage:\n  driver: disk\n  disk:\n    directory: ${policyDir}\n    watchForChanges: false\nengine:\n  defaultPolicyVersion: default\n`,
  );
  // Cerbos logs every request cancelled when the load generator disconnects; keep only the tail for errors.
  const proc = spawn(CERBOS_BIN, ['server', `--config=${config}`, '--log-level=error'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let tail = '';
  proc.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-2000);
  });
  const url = `http://127.0.0.1:${http}`;
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`${url}/_cerbos/health`);
      if (r.ok) return { proc, url };
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill();
  throw new Error(`cerbos did not become healthy within 10 s: ${tail}`);
}

const AUTH_HEADERS = { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` };

async function execlayerDecides(url: string, c: Check): Promise<boolean> {
  const r = await fetch(`${url}/access/v1/evaluation`, {
    method: 'POST',
    headers: AUTH_HEADERS,
    body: authzenBody(c),
  });
  const body = (await r.json()) as { decision: boolean };
  return body.decision;
}

async function cerbosDecides(url: string, c: Check): Promise<boolean> {
  const r = await fetch(`${url}/api/check/resources`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: cerbosBody(c.user, [c]),
  });
  const body = (await r.json()) as { results: { actions: Record<string, string> }[] };
  return body.results[0]?.actions[c.action] === 'EFFECT_ALLOW';
}

type Autocannon = (opts: {
  url: string;
  connections: number;
  duration: number;
  requests: { method: 'POST'; path: string; body: string; headers: Record<string, string> }[];
}) => Promise<{
  requests: { average: number };
  latency: { p50: number; p99: number; average: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}>;

interface RunResult {
  name: string;
  reqPerSec: number;
  decisionsPerSec: number;
  p50: number;
  p99: number;
  mean: number;
  errors: number;
  non2xx: number;
}

async function run(
  name: string,
  url: string,
  path: string,
  bodies: string[],
  headers: Record<string, string>,
  perRequest: number,
): Promise<RunResult> {
  // autocannon ships no type declarations; this is the part of its programmatic API used here.
  const autocannon = ((await import('autocannon' as string)) as { default: Autocannon }).default;
  const requests = bodies.map((body) => ({ method: 'POST' as const, path, body, headers }));
  // Nothing left to write back from an earlier run (a durable run writes hundreds of MB); then warm-up
  // (JIT, connection set-up) and the measured run.
  settleDisk();
  await autocannon({ url, connections: CONNECTIONS, duration: 2, requests });
  const r = await autocannon({ url, connections: CONNECTIONS, duration: DURATION_S, requests });
  return {
    name,
    reqPerSec: r.requests.average,
    decisionsPerSec: r.requests.average * perRequest,
    p50: r.latency.p50,
    p99: r.latency.p99,
    mean: r.latency.average,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'execlayer-api-bench-'));
  const children: Child[] = [];
  let cerbos: { proc: ChildProcess; url: string } | undefined;
  try {
    const auditDb = join(dir, 'audit.db');
    const exec = await startServe(dir, `sqlite:${auditDb}`);
    children.push(exec);
    const execNoRec = await startServe(dir, 'memory:');
    children.push(execNoRec);
    const execNoRecUrl = `http://127.0.0.1:${execNoRec.first.port}`;
    const bare = await startChild(['--child-bare']);
    children.push(bare);
    cerbos = await startCerbos(dir);
    const execUrl = `http://127.0.0.1:${exec.first.port}`;
    const bareUrl = `http://127.0.0.1:${bare.first.port}`;

    // Agreement before timing: both engines answer every request in the set identically.
    const set = checks();
    let allows = 0;
    for (const c of set) {
      const [a, b] = [await execlayerDecides(execUrl, c), await cerbosDecides(cerbos.url, c)];
      if (a !== b) throw new Error(`engines disagree on ${JSON.stringify(c)}: execlayer ${a}, cerbos ${b}`);
      if (a) allows++;
    }
    for (const b of batches()) {
      const r = await fetch(`${execUrl}/access/v1/evaluations`, {
        method: 'POST',
        headers: AUTH_HEADERS,
        body: authzenBatchBody(b),
      });
      const ours = ((await r.json()) as { evaluations: { decision: boolean }[] }).evaluations.map(
        (e) => e.decision,
      );
      const c = await fetch(`${cerbos.url}/api/check/resources`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: cerbosBody(b.user, b.items),
      });
      const theirs = ((await c.json()) as { results: { actions: Record<string, string> }[] }).results.map(
        (x) => x.actions.can_update_todo === 'EFFECT_ALLOW',
      );
      if (JSON.stringify(ours) !== JSON.stringify(theirs))
        throw new Error(`batch disagreement for ${b.user.email}`);
    }
    console.log(
      `agreement: ${set.length} single checks (${allows} allow, ${set.length - allows} deny) and ${USERS.length} batches of ${BATCH} — identical`,
    );
    console.log(
      'execlayer: `execlayer serve` (compiled package); "execlayer" rows record to the SQLite audit log (WAL, synchronous=FULL), durable before each answer; "memory" rows keep records in memory',
    );
    console.log(
      `machine: ${cpus().length} cpus, load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')} (other work on the machine skews every row alike)`,
    );
    console.log(
      `load: autocannon, ${CONNECTIONS} connections, ${DURATION_S} s per run after a 2 s warm-up\n`,
    );

    const single = set.map(authzenBody);
    const cerbosSingle = set.map((c) => cerbosBody(c.user, [c]));
    const batchBodies = batches().map(authzenBatchBody);
    const cerbosBatch = batches().map((b) => cerbosBody(b.user, b.items));
    const cerbosHeaders = { 'content-type': 'application/json' };

    const rows: { r: RunResult; ref: 'single' | 'batch' | 'none' }[] = [];
    const add = async (
      ref: 'single' | 'batch' | 'none',
      ...args: Parameters<typeof run>
    ): Promise<RunResult> => {
      const r = await run(...args);
      rows.push({ r, ref });
      return r;
    };
    const floor = await add('none', 'bare node:http (floor)', bareUrl, '/', single, AUTH_HEADERS, 1);
    const cerbosOne = await add(
      'single',
      'cerbos, single',
      cerbos.url,
      '/api/check/resources',
      cerbosSingle,
      cerbosHeaders,
      1,
    );
    const oursOne = await add(
      'single',
      'execlayer, single',
      execUrl,
      '/access/v1/evaluation',
      single,
      AUTH_HEADERS,
      1,
    );
    await add(
      'single',
      'execlayer memory, single',
      execNoRecUrl,
      '/access/v1/evaluation',
      single,
      AUTH_HEADERS,
      1,
    );
    const cerbosMany = await add(
      'batch',
      `cerbos, batch ${BATCH}`,
      cerbos.url,
      '/api/check/resources',
      cerbosBatch,
      cerbosHeaders,
      BATCH,
    );
    const oursMany = await add(
      'batch',
      `execlayer, batch ${BATCH}`,
      execUrl,
      '/access/v1/evaluations',
      batchBodies,
      AUTH_HEADERS,
      BATCH,
    );
    await add(
      'batch',
      `execlayer memory, batch ${BATCH}`,
      execNoRecUrl,
      '/access/v1/evaluations',
      batchBodies,
      AUTH_HEADERS,
      BATCH,
    );

    const pad = (s: string, n: number) => s.padEnd(n);
    const num = (x: number, d = 0) =>
      x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
    console.log(
      `${pad('server', 30)}${pad('req/s', 10)}${pad('decisions/s', 13)}${pad('p50 ms', 8)}${pad('p99 ms', 8)}${pad('mean ms', 9)}${pad('vs cerbos', 11)}errors`,
    );
    for (const { r, ref } of rows) {
      const base = ref === 'single' ? cerbosOne : ref === 'batch' ? cerbosMany : undefined;
      const ratio = base ? `${num(r.decisionsPerSec / base.decisionsPerSec, 2)}x` : '-';
      console.log(
        `${pad(r.name, 30)}${pad(num(r.reqPerSec), 10)}${pad(num(r.decisionsPerSec), 13)}${pad(num(r.p50, 2), 8)}${pad(num(r.p99, 2), 8)}${pad(num(r.mean, 2), 9)}${pad(ratio, 11)}${r.errors + r.non2xx}`,
      );
    }
    console.log(
      `\nexeclayer (recording on) single vs cerbos single: ${num(oursOne.decisionsPerSec / cerbosOne.decisionsPerSec, 2)}x; ` +
        `execlayer batch vs cerbos single: ${num(oursMany.decisionsPerSec / cerbosOne.decisionsPerSec, 2)}x; ` +
        `execlayer single vs bare floor: ${num(oursOne.reqPerSec / floor.reqPerSec, 2)}x`,
    );
    await stopChild(exec);
    children.splice(children.indexOf(exec), 1);
    console.log(`audit records written by the execlayer server: ${num(countRecords(auditDb))}`);
    for (const c of children.splice(0)) await stopChild(c);
    cerbos?.proc.kill('SIGTERM');
    cerbos = undefined;
    await searchBench(dir, children);
  } finally {
    for (const c of children) await stopChild(c).catch(() => undefined);
    cerbos?.proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// AuthZEN search over a large policy.

const SEARCH_AGENTS = 1000;
const SEARCH_ROLES = 10;
const SEQUENTIAL = 2000;

/** 1,000 agents in 10 roles: exact allows, a CEL-conditioned allow, a deny and a wildcard allow each. */
function searchPolicy(): string {
  const lines = ['version: 1', 'agents:'];
  for (let i = 0; i < SEARCH_AGENTS; i++) {
    lines.push(
      `  agent-${String(i).padStart(4, '0')}: { owner: o@x.io, roles: [r${i % SEARCH_ROLES}, common] }`,
    );
  }
  lines.push(
    '  todo-backend: { owner: o@x.io }',
    'roles:',
    '  common:',
    '    - { id: kb, allow: kb.search }',
  );
  for (let r = 0; r < SEARCH_ROLES; r++) {
    lines.push(
      `  r${r}:`,
      `    - { id: r${r}-read, allow: svc${r}.read }`,
      `    - { id: r${r}-write, allow: svc${r}.write, when: { cel: "has(args.n) && args.n <= ${r}" } }`,
      `    - { id: r${r}-no-delete, deny: svc${r}.delete }`,
      `    - { id: r${r}-list, allow: "svc${r}.list*" }`,
    );
  }
  return `${lines.join('\n')}\n`;
}

async function post(url: string, body: string): Promise<Record<string, unknown>> {
  const r = await fetch(url, { method: 'POST', headers: AUTH_HEADERS, body });
  if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as Record<string, unknown>;
}

async function searchBench(dir: string, children: Child[]): Promise<void> {
  const policy = join(dir, 'search-policy.yaml');
  writeFileSync(policy, searchPolicy());
  const server = await startServe(dir, 'memory:', policy, 'search');
  children.push(server);
  const url = `http://127.0.0.1:${server.first.port}`;
  const subjectBody = JSON.stringify({
    subject: { type: 'agent' },
    action: { name: 'svc7.write' },
    resource: { type: 'call', id: 'c', properties: { n: 5 } },
    page: { limit: 1000 },
  });
  const actionBody = JSON.stringify({
    subject: { type: 'agent', id: 'agent-0007' },
    resource: { type: 'call', id: 'c', properties: { n: 9 } },
  });

  // Agreement before timing: the subject search answer is exactly the agents whose evaluation is true.
  const found = (
    (await post(`${url}/access/v1/search/subject`, subjectBody)).results as { id: string }[]
  ).map((x) => x.id);
  const expected: string[] = [];
  for (let i = 0; i < SEARCH_AGENTS; i++) {
    const id = `agent-${String(i).padStart(4, '0')}`;
    const d = await post(
      `${url}/access/v1/evaluation`,
      JSON.stringify({
        subject: { type: 'agent', id },
        action: { name: 'svc7.write' },
        resource: { type: 'call', id: 'c', properties: { n: 5 } },
      }),
    );
    if (d.decision === true) expected.push(id);
  }
  if (JSON.stringify(found) !== JSON.stringify(expected))
    throw new Error(`subject search disagrees with ${SEARCH_AGENTS} evaluations`);
  console.log(
    `\nsearch: ${SEARCH_AGENTS}-agent policy (${SEARCH_ROLES} roles, ${SEARCH_ROLES * 4 + 1} rules); subject search for svc7.write finds ${found.length} agents, the same as ${SEARCH_AGENTS} single evaluations`,
  );

  const sequential = async (path: string, body: string) => {
    const samples: number[] = [];
    for (let i = 0; i < SEQUENTIAL + 200; i++) {
      const t0 = performance.now();
      await post(`${url}${path}`, body);
      if (i >= 200) samples.push(performance.now() - t0);
    }
    return summarize(samples.sort((a, b) => a - b));
  };
  const num = (x: number, d = 2) =>
    x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log(`${'search'.padEnd(44)}${'p50 ms'.padEnd(9)}${'p99 ms'.padEnd(9)}req/s`);
  for (const [name, path, body] of [
    ['subject search, 1 client', '/access/v1/search/subject', subjectBody],
    ['action search, 1 client', '/access/v1/search/action', actionBody],
  ] as const) {
    const st = await sequential(path, body);
    console.log(
      `${name.padEnd(44)}${num(st.p50).padEnd(9)}${num(st.p99).padEnd(9)}${num(1000 / st.mean, 0)}`,
    );
  }
  const loaded = await run(
    'subject search',
    url,
    '/access/v1/search/subject',
    [subjectBody],
    AUTH_HEADERS,
    1,
  );
  console.log(
    `${`subject search, ${CONNECTIONS} connections`.padEnd(44)}${num(loaded.p50).padEnd(9)}${num(loaded.p99).padEnd(9)}${num(loaded.reqPerSec, 0)}${loaded.errors + loaded.non2xx > 0 ? ` (${loaded.errors + loaded.non2xx} errors)` : ''}`,
  );
}

const mode = process.argv[2];
if (mode === '--child-bare') childBare();
else await main();
