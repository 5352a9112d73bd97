/**
 * The upstream pool over Streamable HTTP with the official SDK client as two agents: their sessions share
 * one upstream process (the pid the fixture records for every call), each sees and may call only its own
 * tools, progress and cancellation reach the session whose call caused them, a sampling request reaches
 * only the calling agent, and an upstream marked `stateful` gets one process per session.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, type Progress } from '@modelcontextprotocol/sdk/types.js';
import type { AuthResult } from '../src/enforce/auth.js';
import { McpGateway } from '../src/enforce/mcp/gateway.js';
import { type GatewayHttpServer, startGatewayHttp } from '../src/enforce/mcp/http.js';
import { MemoryToolPinStore } from '../src/enforce/mcp/pins.js';
import { EVERYTHING, FIXTURES, makeConfig, makeLayer, text } from './gateway-helpers.js';

const FLAKY = join(FIXTURES, 'flaky-server.mjs');
const dir = mkdtempSync(join(tmpdir(), 'gw-pool-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const policy = {
  version: 1,
  agents: {
    alpha: { owner: 'o@x.io', purpose: 'greets', roles: ['alpha'] },
    beta: { owner: 'o@x.io', purpose: 'counts', roles: ['beta'] },
  },
  roles: {
    alpha: [
      {
        id: 'a',
        allow: ['flaky.greet', 'flaky.pid', 'flaky.sleep', 'everything.trigger-long-running-operation'],
      },
      { id: 'a-sampling', allow: 'everything.trigger-sampling-request' },
    ],
    beta: [
      { id: 'b', allow: ['flaky.pid', 'everything.trigger-long-running-operation'] },
      { id: 'b-sampling', allow: 'everything.trigger-sampling-request' },
    ],
  },
};

interface Call {
  pid: number;
  tool: string;
  args: Record<string, unknown>;
}

/** A gateway over HTTP in front of the flaky fixture (stateful or not) and server-everything. */
async function start(name: string, stateful: boolean) {
  const calls = join(dir, `${name}.calls`);
  appendFileSync(calls, '');
  const l = await makeLayer(policy);
  const config = makeConfig({
    upstreams: {
      flaky: { command: process.execPath, args: [FLAKY], env: { CALLS_FILE: calls }, stateful },
      everything: { command: process.execPath, args: [EVERYTHING] },
    },
    http: { port: 0 },
  });
  const gateway = new McpGateway(l.layer, config, { pins: new MemoryToolPinStore(), log: () => {} });
  // The bearer token names the agent: authentication is not what these tests are about.
  const http: GatewayHttpServer = await startGatewayHttp(gateway, {
    authenticate: async (req): Promise<AuthResult> => {
      const agent = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
      return agent in policy.agents
        ? { ok: true, agent, method: 'api_key' }
        : { ok: false, status: 401, reason: 'unknown agent' };
    },
  });
  const clients: Client[] = [];
  const transports = new Map<Client, StreamableHTTPClientTransport>();
  return {
    gateway,
    recorder: l.recorder,
    calls: (): Call[] =>
      readFileSync(calls, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Call),
    async connect(agent: string, setup?: (c: Client) => void, capabilities: Record<string, unknown> = {}) {
      const client = new Client({ name: agent, version: '1.0.0' }, { capabilities });
      setup?.(client);
      const transport = new StreamableHTTPClientTransport(new URL(http.url), {
        requestInit: { headers: { authorization: `Bearer ${agent}` } },
      });
      await client.connect(transport);
      clients.push(client);
      transports.set(client, transport);
      return client;
    },
    /** Ends the session of `client` (DELETE) and closes it. */
    async end(client: Client) {
      await transports.get(client)?.terminateSession();
      await client.close();
    },
    async close() {
      for (const c of clients) await c.close().catch(() => {});
      await http.close();
      await gateway.close();
    },
  };
}

async function until<T>(what: string, probe: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('a shared upstream', () => {
  test('two agents share one process; each sees and may call only its own tools', async () => {
    const g = await start('shared', false);
    try {
      const alpha = await g.connect('alpha');
      const beta = await g.connect('beta');
      const names = async (c: Client) => (await c.listTools()).tools.map((t) => t.name).sort();
      assert.deepEqual(await names(alpha), [
        'everything.trigger-long-running-operation',
        'everything.trigger-sampling-request',
        'flaky.greet',
        'flaky.pid',
        'flaky.sleep',
      ]);
      assert.deepEqual(await names(beta), [
        'everything.trigger-long-running-operation',
        'everything.trigger-sampling-request',
        'flaky.pid',
      ]);

      const pa = Number(text(await alpha.callTool({ name: 'flaky.pid', arguments: {} })));
      const pb = Number(text(await beta.callTool({ name: 'flaky.pid', arguments: {} })));
      assert.ok(pa > 0);
      assert.equal(pb, pa, 'both sessions reached the same upstream process');
      assert.equal(
        text(await alpha.callTool({ name: 'flaky.greet', arguments: { text: 'a' } })),
        `hello a from ${pa}`,
      );
      const refused = await beta.callTool({ name: 'flaky.greet', arguments: { text: 'from-beta' } });
      assert.equal(refused.isError, true);
      const seen = g.calls();
      assert.deepEqual(
        seen.map((c) => c.tool),
        ['pid', 'pid', 'greet'],
        'the refused call never reached the upstream',
      );
      assert.ok(seen.every((c) => c.pid === pa));

      const status = g.gateway.upstreamStatus().filter((s) => s.name === 'flaky');
      assert.deepEqual(status.map((s) => [s.agent, s.shared, s.pid]).sort(), [
        ['alpha', true, pa],
        ['beta', true, pa],
      ]);

      // One session's end does not end the shared upstream: the other keeps calling the same process.
      await g.end(alpha);
      await until('the session to close', () => (g.gateway.sessions.size === 1 ? true : undefined));
      assert.equal(Number(text(await beta.callTool({ name: 'flaky.pid', arguments: {} }))), pa);
    } finally {
      await g.close();
    }
  });

  test('progress and cancellation reach the session whose call caused them', async () => {
    const g = await start('progress', false);
    try {
      const alpha = await g.connect('alpha');
      const beta = await g.connect('beta');
      const got = { alpha: [] as Progress[], beta: [] as Progress[] };
      const long = (c: Client, who: 'alpha' | 'beta', steps: number) =>
        c.callTool(
          { name: 'everything.trigger-long-running-operation', arguments: { duration: 0.6, steps } },
          undefined,
          { onprogress: (p) => got[who].push(p) },
        );
      // Both calls run at once on the one upstream process, with different step counts.
      const [ra, rb] = await Promise.all([long(alpha, 'alpha', 3), long(beta, 'beta', 5)]);
      assert.notEqual(ra.isError, true, text(ra));
      assert.notEqual(rb.isError, true, text(rb));
      // Each session sees only the progress of its own call: alpha's totals are 3, beta's 5, each in
      // order. (The SDK client on the upstream side may drop the last one, which arrives together with
      // the result, so the counts are bounds.)
      const check = (list: Progress[], total: number) => {
        assert.ok(list.length >= total - 1 && list.length <= total, JSON.stringify(list));
        list.forEach((p, i) => {
          assert.equal(p.total, total);
          assert.equal(p.progress, i + 1);
        });
      };
      check(got.alpha, 3);
      check(got.beta, 5);

      // Alpha cancels its call; beta's call on the same process is untouched.
      const ac = new AbortController();
      const sleeping = alpha.callTool({ name: 'flaky.sleep', arguments: {} }, undefined, {
        signal: ac.signal,
      });
      await until('the sleep call to arrive', () =>
        g.calls().some((c) => c.tool === 'sleep') ? true : undefined,
      );
      const pid = Number(text(await beta.callTool({ name: 'flaky.pid', arguments: {} })));
      ac.abort('changed my mind');
      await assert.rejects(sleeping);
      const cancelled = await until('the cancellation to reach the upstream', () =>
        g.calls().find((c) => c.tool === 'sleep:cancelled'),
      );
      assert.equal(cancelled.pid, pid, 'the cancellation reached the shared process');
      assert.equal(Number(text(await beta.callTool({ name: 'flaky.pid', arguments: {} }))), pid);
    } finally {
      await g.close();
    }
  });

  test('a sampling request reaches only the agent whose call asked for it, or none when unclear', async () => {
    const g = await start('sampling', false);
    try {
      const asked: string[] = [];
      const answer = (who: string) => (c: Client) =>
        c.setRequestHandler(CreateMessageRequestSchema, async () => {
          asked.push(who);
          return { role: 'assistant', content: { type: 'text', text: `answer of ${who}` }, model: 'm' };
        });
      const alpha = await g.connect('alpha', answer('alpha'), { sampling: {} });
      const beta = await g.connect('beta', answer('beta'), { sampling: {} });
      const r = await alpha.callTool({
        name: 'everything.trigger-sampling-request',
        arguments: { prompt: 'who?', maxTokens: 5 },
      });
      assert.notEqual(r.isError, true, text(r));
      assert.match(JSON.stringify(r.content), /answer of alpha/);
      assert.deepEqual(asked, ['alpha']);

      // With calls of both sessions in flight on the upstream, whose request it is cannot be told: it
      // reaches no agent, and the upstream is told why.
      const slow = beta.callTool({
        name: 'everything.trigger-long-running-operation',
        arguments: { duration: 1.5, steps: 1 },
      });
      await new Promise((r) => setTimeout(r, 200));
      const ambiguous = await alpha.callTool({
        name: 'everything.trigger-sampling-request',
        arguments: { prompt: 'who now?', maxTokens: 5 },
      });
      assert.equal(ambiguous.isError, true, JSON.stringify(ambiguous));
      assert.match(text(ambiguous), /cannot tell which agent/);
      assert.notEqual((await slow).isError, true);
      assert.deepEqual(asked, ['alpha'], 'neither agent was asked');
    } finally {
      await g.close();
    }
  });
});

test('a stateful upstream gets one process per session, ended with the session', async () => {
  const g = await start('stateful', true);
  try {
    const alpha = await g.connect('alpha');
    const beta = await g.connect('beta');
    const pa = Number(text(await alpha.callTool({ name: 'flaky.pid', arguments: {} })));
    const pb = Number(text(await beta.callTool({ name: 'flaky.pid', arguments: {} })));
    assert.ok(pa > 0 && pb > 0);
    assert.notEqual(pa, pb, 'each session has its own process');
    assert.deepEqual(
      g.calls().map((c) => c.pid),
      [pa, pb],
    );
    const status = g.gateway.upstreamStatus();
    assert.deepEqual(
      status
        .filter((s) => s.name === 'flaky')
        .map((s) => [s.agent, s.shared, s.pid])
        .sort(),
      [
        ['alpha', false, pa],
        ['beta', false, pb],
      ],
    );
    // The non-stateful upstream in the same gateway is still one process for both.
    const everything = new Set(status.filter((s) => s.name === 'everything').map((s) => s.pid));
    assert.equal(everything.size, 1);

    await g.end(alpha);
    await until('alpha’s upstream process to exit', () => (alive(pa) ? undefined : true));
    assert.ok(alive(pb), 'beta’s process is not alpha’s to end');
    assert.equal(Number(text(await beta.callTool({ name: 'flaky.pid', arguments: {} }))), pb);
  } finally {
    await g.close();
  }
});
