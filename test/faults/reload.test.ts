/**
 * Policy reload under file-system races, with the real runtime and a real SQLite audit trail: atomic
 * replaces in a row, `sed -i`, a Kubernetes ConfigMap-style symlink swap, a file written in two chunks
 * 200 ms apart (decisions taken all along: nothing both policies deny is ever allowed), a broken or
 * missing candidate (the old policy stays, the rejection is in the audit trail), SIGHUP on a real
 * `execlayer serve` and `execlayer mcp` process, and the operator API's reload.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openAuditLog } from '../../src/audit/log.js';
import { type RunningServer, startServe } from '../../src/cli/serve.js';
import { loadConfigFile } from '../../src/config/load.js';
import { hashApiKey, newApiKey } from '../../src/enforce/auth.js';
import { loadPolicyText } from '../../src/policy/load.js';
import { createExecLayer, type ExecLayer, type RuntimeEvent } from '../../src/runtime/exec-layer.js';
import type { PolicyEvent } from '../../src/types.js';

const REPO = resolve(import.meta.dirname, '../..');
/** The guarantee documented in docs/policy.md: a change applies within 1 s of the last write. */
const BOUND_MS = 1000;

/** A policy where agent `bot` may call exactly the tools named (YAML, one rule per line). */
function allowing(...tools: string[]): string {
  return `version: 1\nagents:\n  bot:\n    rules:\n${tools.map((t) => `      - allow: ${t}\n`).join('')}`;
}

function hashOf(text: string): string {
  const r = loadPolicyText(text);
  assert.ok(r.ok, 'the test policy is valid');
  return r.policy.hash;
}

/** Writes a new file beside `file` and renames it over `file`, as `mv`, `kubectl` and editors do. */
function atomicWrite(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 5 ms; resolves with the elapsed ms, or fails after `timeoutMs`. */
async function until(
  cond: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 3000,
): Promise<number> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > timeoutMs)
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
  return performance.now() - t0;
}

interface Watched {
  layer: ExecLayer;
  events: RuntimeEvent[];
  allowed(tool: string): Promise<boolean>;
  /** Ms from now until `tool` is allowed (fails past 3 s). */
  enforced(tool: string): Promise<number>;
  /** The policy records of the audit trail (closes the runtime first). */
  policyRecords(): Promise<PolicyEvent[]>;
}

async function watching(dir: string, file: string): Promise<Watched> {
  const url = `sqlite:${join(dir, 'state.db')}`;
  const events: RuntimeEvent[] = [];
  const layer = await createExecLayer({
    policy: file,
    store: url,
    watch: true,
    onEvent: (e) => events.push(e),
  });
  const allowed = async (tool: string) =>
    (await layer.authorize({ agent: 'bot', tool, args: {} })).effect === 'allow';
  return {
    layer,
    events,
    allowed,
    enforced: (tool) => until(() => allowed(tool), `\`${tool}\` to be allowed`),
    async policyRecords() {
      await layer.close();
      const log = await openAuditLog(url);
      try {
        return (await log.tail(1000)).flatMap((r) => (r.event?.type === 'policy' ? [r.event] : []));
      } finally {
        await log.close();
      }
    },
  };
}

describe('policy reload: the path is followed, not the inode', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'execlayer-reload-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('atomic replace twice in a row: both changes are enforced, each within 1 s', async (t) => {
    const sub = mkdtempSync(join(dir, 'mv-'));
    const file = join(sub, 'policy.yaml');
    writeFileSync(file, allowing('a.x'));
    const w = await watching(sub, file);
    assert.equal(await w.allowed('a.x'), true);

    atomicWrite(file, allowing('b.x'));
    const first = await w.enforced('b.x');
    assert.equal(await w.allowed('a.x'), false, 'the first replacement is in force');
    atomicWrite(file, allowing('c.x'));
    const second = await w.enforced('c.x');
    assert.equal(await w.allowed('b.x'), false, 'the second replacement is in force');
    t.diagnostic(`write → enforced: ${first.toFixed(0)} ms, then ${second.toFixed(0)} ms`);
    assert.ok(first < BOUND_MS && second < BOUND_MS, `${first} / ${second} ms`);

    const loaded = (await w.policyRecords()).filter((e) => e.trigger === 'watch');
    assert.deepEqual(
      loaded.map((e) => [e.status, e.previous, e.policy]),
      [
        ['loaded', hashOf(allowing('a.x')), hashOf(allowing('b.x'))],
        ['loaded', hashOf(allowing('b.x')), hashOf(allowing('c.x'))],
      ],
    );
  });

  test('sed -i twice: each in-place edit (a new inode every time) is enforced', async () => {
    const sub = mkdtempSync(join(dir, 'sed-'));
    const file = join(sub, 'policy.yaml');
    writeFileSync(file, allowing('a.x'));
    const w = await watching(sub, file);
    for (const [from, to] of [
      ['a', 'b'],
      ['b', 'c'],
    ] as const) {
      const r = spawnSync('sed', ['-i', `s/${from}\\.x/${to}.x/`, file], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const ms = await w.enforced(`${to}.x`);
      assert.ok(ms < BOUND_MS, `${ms} ms`);
      assert.equal(await w.allowed(`${from}.x`), false);
    }
    await w.layer.close();
  });

  test('ConfigMap-style symlink swap: policy.yaml → ..data/policy.yaml, ..data swapped twice', async () => {
    const sub = mkdtempSync(join(dir, 'configmap-'));
    const version = (n: number, text: string) => {
      const d = join(sub, `..2026_12_04_0${n}`);
      mkdirSync(d);
      writeFileSync(join(d, 'policy.yaml'), text);
      return d;
    };
    // What the kubelet does: a timestamped directory, `..data` pointing at it, the file a link through it.
    symlinkSync(`..2026_12_04_01`, join(sub, '..data'));
    version(1, allowing('a.x'));
    symlinkSync('..data/policy.yaml', join(sub, 'policy.yaml'));
    const w = await watching(sub, join(sub, 'policy.yaml'));
    assert.equal(await w.allowed('a.x'), true);
    for (const [n, tool] of [
      [2, 'b.x'],
      [3, 'c.x'],
    ] as const) {
      version(n, allowing(tool));
      symlinkSync(`..2026_12_04_0${n}`, join(sub, '..data_tmp'));
      renameSync(join(sub, '..data_tmp'), join(sub, '..data'));
      const ms = await w.enforced(tool);
      assert.ok(ms < BOUND_MS, `${ms} ms`);
      assert.equal(await w.allowed('a.x'), false);
    }
    await w.layer.close();
  });

  test('a write in two chunks 200 ms apart: the half-written policy is never applied', async () => {
    const sub = mkdtempSync(join(dir, 'chunks-'));
    const file = join(sub, 'policy.yaml');
    writeFileSync(file, allowing('a.x'));
    const w = await watching(sub, file);
    // The first chunk alone is a valid policy that allows `c.y`; the old and the new policy both deny it.
    const chunk1 = allowing('c.*');
    const chunk2 = '      - deny: c.y\n      - allow: b.x\n';
    const full = chunk1 + chunk2;
    assert.equal(hashOf(chunk1) !== hashOf(full), true);

    let writing = true;
    let decisions = 0;
    const leaks: string[] = [];
    // Decisions taken continuously, from before the first byte until after the new policy is in force.
    const probe = (async () => {
      while (writing) {
        const d = await w.layer.authorize({ agent: 'bot', tool: 'c.y', args: {} });
        decisions++;
        if (d.effect !== 'deny') leaks.push(`${d.effect} by ${d.rule} under ${d.policy}`);
        await sleep(2);
      }
    })();
    await sleep(50);
    const fd = openSync(file, 'w');
    writeSync(fd, chunk1);
    await sleep(200);
    writeSync(fd, chunk2);
    closeSync(fd);
    const ms = await w.enforced('b.x');
    await sleep(300);
    writing = false;
    await probe;

    assert.deepEqual(leaks, [], 'a call both policies deny was allowed while the file was being written');
    assert.ok(decisions > 50, `only ${decisions} decisions were taken during the write`);
    assert.ok(ms < BOUND_MS, `${ms} ms`);
    const hashes = w.events.flatMap((e) => (e.type === 'policy_loaded' ? [e.hash] : []));
    assert.deepEqual(hashes, [hashOf(full)], 'only the whole file was loaded');
    const records = await w.policyRecords();
    assert.equal(
      records.some((e) => e.policy === hashOf(chunk1)),
      false,
      'the half-written policy is nowhere in the audit trail',
    );
  });

  test('a broken candidate never replaces the working policy, and its rejection is recorded', async () => {
    const sub = mkdtempSync(join(dir, 'broken-'));
    const file = join(sub, 'policy.yaml');
    writeFileSync(file, allowing('a.x'));
    const w = await watching(sub, file);
    const old = w.layer.policyHash;

    atomicWrite(file, allowing('b.x').replace('allow:', 'allw:'));
    await until(() => w.events.some((e) => e.type === 'policy_rejected'), 'the rejection');
    assert.equal(w.layer.policyHash, old);
    assert.equal(await w.allowed('a.x'), true, 'the old policy stays in force');
    assert.equal(await w.allowed('b.x'), false);

    unlinkSync(file);
    await until(() => w.events.filter((e) => e.type === 'policy_rejected').length === 2, 'the deletion');
    assert.equal(await w.allowed('a.x'), true, 'a deleted file does not unload the policy');

    atomicWrite(file, allowing('b.x'));
    await w.enforced('b.x');
    const records = (await w.policyRecords()).filter((e) => e.trigger === 'watch');
    assert.deepEqual(
      records.map((e) => [e.status, e.previous]),
      [
        ['rejected', old],
        ['rejected', old],
        ['loaded', old],
      ],
    );
    assert.match(records[0]?.problems?.join('\n') ?? '', /allw/);
    assert.match(records[1]?.problems?.join('\n') ?? '', /does not exist/);
  });
});

// --- SIGHUP and the operator API on the real `serve` stack --------------------------------------------

const OPS = newApiKey();
const PDP = newApiKey();
const NOBODY = newApiKey();

function serveConfig(dir: string): string {
  const key = (k: string, agent: string, roles: string[]) =>
    `    - { sha256: ${hashApiKey(k)}, agent: "${agent}", roles: [${roles.join(', ')}] }`;
  const file = join(dir, 'execlayer.yaml');
  writeFileSync(
    file,
    `policy: ./policy.yaml
store: sqlite:./state/execlayer.db
agent: bot
auth:
  apiKeys:
${[key(OPS, 'ops@acme.com', ['operator']), key(PDP, 'backend', ['pdp-client']), key(NOBODY, 'nobody', ['approver'])].join('\n')}
http: { port: 0 }
`,
  );
  return file;
}

async function decide(base: string, tool: string): Promise<string> {
  const res = await fetch(`${base}/v1/decide`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PDP}`, 'content-type': 'application/json' },
    body: JSON.stringify({ agent: 'bot', tool, args: {} }),
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { effect: string }).effect;
}

async function reloadViaApi(base: string, key: string) {
  const res = await fetch(`${base}/v1/policy/reload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}` },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function policyRecordsOf(dir: string): Promise<PolicyEvent[]> {
  const log = await openAuditLog(`sqlite:${join(dir, 'state/execlayer.db')}`);
  try {
    return (await log.tail(1000)).flatMap((r) => (r.event?.type === 'policy' ? [r.event] : []));
  } finally {
    await log.close();
  }
}

describe('policy reload: the operator API', () => {
  let dir: string;
  let running: RunningServer;
  let base: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'execlayer-reload-api-'));
    writeFileSync(join(dir, 'policy.yaml'), allowing('a.x'));
    // No file watch: here only the API can bring a change in.
    running = await startServe(loadConfigFile(serveConfig(dir)), { port: 0, watch: false });
    base = running.http.url.replace(/\/mcp$/, '');
  });
  after(async () => {
    await running?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('POST /v1/policy/reload loads the file, answers with the hashes, and is recorded with its caller', async () => {
    const v1 = hashOf(allowing('a.x'));
    const v2 = hashOf(allowing('b.x'));
    assert.equal((await reloadViaApi(base, NOBODY)).status, 403, 'an approver is not an operator');
    const anonymous = await fetch(`${base}/v1/policy/reload`, { method: 'POST' });
    assert.equal(anonymous.status, 401);

    const same = await reloadViaApi(base, OPS);
    assert.equal(same.status, 200);
    assert.deepEqual([same.body.status, same.body.policy], ['unchanged', v1]);

    atomicWrite(join(dir, 'policy.yaml'), allowing('b.x'));
    assert.equal(await decide(base, 'b.x'), 'deny', 'without a watch the change waits for the reload');
    const loaded = await reloadViaApi(base, OPS);
    assert.equal(loaded.status, 200);
    assert.deepEqual(
      [
        loaded.body.status,
        loaded.body.previous,
        loaded.body.policy,
        loaded.body.trigger,
        loaded.body.recorded,
      ],
      ['loaded', v1, v2, 'api', true],
    );
    assert.equal(await decide(base, 'b.x'), 'allow');

    atomicWrite(join(dir, 'policy.yaml'), 'version: 1\nagents: [oops]\n');
    const rejected = await reloadViaApi(base, OPS);
    assert.equal(rejected.status, 422);
    assert.equal(rejected.body.code, 'policy_rejected');
    assert.match(String(rejected.body.detail), new RegExp(`\`${v2}\` stays in force`));
    assert.equal(await decide(base, 'b.x'), 'allow', 'the policy in force stayed');

    const records = (await policyRecordsOf(dir)).filter((e) => e.trigger === 'api');
    assert.deepEqual(
      records.map((e) => [e.status, e.by, e.previous ?? null, e.policy ?? null]),
      [
        ['unchanged', 'ops@acme.com', null, v1],
        ['loaded', 'ops@acme.com', v1, v2],
        ['rejected', 'ops@acme.com', v2, null],
      ],
    );
  });
});

/** A CLI process, its stderr collected as it comes. */
function startCli(
  args: string[],
  cwd: string,
): { child: ChildProcess; stderr: () => string; stdout: () => string } {
  const child = spawn(process.execPath, [join(REPO, 'bin/execlayer.js'), ...args], {
    cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  let out = '';
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  return { child, stderr: () => err, stdout: () => out };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => {
    if (child.exitCode !== null) r(child.exitCode);
    else child.once('exit', (code) => r(code));
  });
}

describe('policy reload: SIGHUP on real processes (built CLI, run `npx tsc -p tsconfig.build.json`)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'execlayer-reload-hup-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('execlayer serve: SIGHUP forces a reload, logged with the hashes and recorded', async () => {
    const sub = mkdtempSync(join(dir, 'serve-'));
    writeFileSync(join(sub, 'policy.yaml'), allowing('a.x'));
    const cli = startCli(['serve', '--config', serveConfig(sub), '--json'], sub);
    try {
      await until(() => cli.stdout().includes('"url"'), 'serve to listen', 15_000);
      const base = (JSON.parse(cli.stdout().split('\n')[0] ?? '') as { url: string }).url.replace(
        /\/mcp$/,
        '',
      );
      const v1 = hashOf(allowing('a.x'));
      const v2 = hashOf(allowing('b.x'));

      cli.child.kill('SIGHUP');
      await until(() => cli.stderr().includes('policy reload (signal)'), 'the SIGHUP reload line');
      assert.match(
        cli.stderr(),
        new RegExp(`policy reload \\(signal\\) from \\S+: unchanged, ${v1} stays in force`),
      );
      assert.equal(cli.child.exitCode, null, 'SIGHUP did not end the process');

      // The watch and the signal race for this change; either way the signal's reload names the new hash.
      atomicWrite(join(sub, 'policy.yaml'), allowing('b.x'));
      cli.child.kill('SIGHUP');
      await until(() => new RegExp(`\\(signal\\)[^\\n]*${v2}`).test(cli.stderr()), 'the second SIGHUP line');
      assert.equal(await decide(base, 'b.x'), 'allow');
      assert.equal(await decide(base, 'a.x'), 'deny');
    } finally {
      cli.child.kill('SIGTERM');
      assert.equal(await exited(cli.child), 0, cli.stderr());
    }
    const signals = (await policyRecordsOf(sub)).filter((e) => e.trigger === 'signal');
    assert.equal(signals.length, 2);
    assert.equal(signals[0]?.status, 'unchanged');
    assert.equal(signals[1]?.policy, hashOf(allowing('b.x')));
  });

  test('execlayer mcp: SIGHUP forces a reload and does not end the gateway', async () => {
    const sub = mkdtempSync(join(dir, 'mcp-'));
    writeFileSync(join(sub, 'policy.yaml'), allowing('a.x'));
    const cli = startCli(['mcp', '--config', serveConfig(sub)], sub);
    try {
      // The gateway answers `initialize` once it serves, and it listens for SIGHUP before it serves.
      const init = {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      };
      cli.child.stdin?.write(`${JSON.stringify(init)}\n`);
      await until(() => cli.stdout().includes('"id":1'), 'the gateway to answer initialize', 15_000);
      atomicWrite(join(sub, 'policy.yaml'), allowing('b.x').replace('allow:', 'allw:'));
      cli.child.kill('SIGHUP');
      await until(() => cli.stderr().includes('policy reload (signal)'), 'the SIGHUP reload line', 5000);
      assert.match(
        cli.stderr(),
        /policy reload \(signal\) from \S+ rejected, [0-9a-f]{64} stays in force: .*allw/,
      );
      assert.equal(cli.child.exitCode, null, 'SIGHUP did not end the gateway');
    } finally {
      cli.child.stdin?.end();
      cli.child.kill('SIGTERM');
      await exited(cli.child);
    }
    const signals = (await policyRecordsOf(sub)).filter((e) => e.trigger === 'signal');
    assert.deepEqual(
      signals.map((e) => e.status),
      ['rejected'],
    );
  });
});
