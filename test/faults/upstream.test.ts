/**
 * Upstream faults with real processes: an upstream (the official SDK's McpServer, test/fixtures/flaky-server.mjs)
 * that crashes mid-call, hangs, fails its first starts, changes a tool definition across a restart, and answers
 * with a result over the read limit. The agent is the official SDK client. Every test asserts what reached the
 * upstream (the fixture records each call it receives, with its pid) and what the agent and the operator saw.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { startServe } from '../../src/cli/serve.js';
import { loadConfigFile } from '../../src/config/load.js';
import { hashApiKey, newApiKey } from '../../src/enforce/auth.js';
import type { MemoryRecorder } from '../../src/enforce/mcp/open-layer.js';
import type { SessionUpstreamStatus } from '../../src/enforce/mcp/session.js';
import {
  type Connected,
  connectInProcess,
  FIXTURES,
  makeConfig,
  makeLayer,
  text,
} from '../gateway-helpers.js';

const FLAKY = join(FIXTURES, 'flaky-server.mjs');
const dir = mkdtempSync(join(tmpdir(), 'faults-upstream-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const policy = {
  version: 1,
  agents: { a: { owner: 'o@x.io', purpose: 'p', roles: ['r'] } },
  roles: { r: [{ id: 'all', allow: ['flaky.*'] }] },
};

interface Received {
  pid: number;
  start: number;
  tool: string;
  args: Record<string, unknown>;
}

/** A gateway in front of one flaky upstream; `env` is the fixture's (see its header). */
async function flaky(
  name: string,
  env: Record<string, string> = {},
  limits: Record<string, number> = {},
): Promise<
  Connected & { calls: () => Received[]; status: () => SessionUpstreamStatus; recorder: MemoryRecorder }
> {
  const calls = join(dir, `${name}.calls`);
  appendFileSync(calls, '');
  const l = await makeLayer(policy);
  const c = await connectInProcess(
    l,
    makeConfig({
      upstreams: {
        flaky: {
          command: process.execPath,
          args: [FLAKY],
          env: { CALLS_FILE: calls, STATE_FILE: join(dir, `${name}.starts`), ...env },
        },
      },
      limits,
    }),
    'a',
  );
  return Object.assign(c, {
    recorder: l.recorder,
    calls: () =>
      readFileSync(calls, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((x) => JSON.parse(x) as Received),
    status: () => {
      const s = c.gateway.upstreamStatus().find((x) => x.name === 'flaky');
      assert.ok(s, 'the session reports its upstream');
      return s;
    },
  });
}

async function until<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function pidOf(c: Connected): Promise<number> {
  const r = await c.client.callTool({ name: 'flaky.pid', arguments: {} });
  assert.notEqual(r.isError, true, text(r));
  return Number(text(r));
}

test('an upstream that crashes mid-call: a clean error, a failed outcome, a restart on a new process', async () => {
  const c = await flaky('crash');
  try {
    const before = await pidOf(c);
    const r = await c.client.callTool({ name: 'flaky.crash', arguments: {} });
    assert.equal(r.isError, true);
    assert.match(text(r), /upstream `flaky` closed the connection during `tools\/call`/);
    const outcome = c.recorder.events.findLast((e) => e.type === 'outcome');
    assert.ok(outcome?.type === 'outcome' && outcome.tool === 'flaky.crash' && outcome.ok === false);
    const s = c.status();
    assert.ok(['retrying', 'starting'].includes(s.state), s.state);
    assert.equal(s.lastError, 'connection lost');
    // A call made now waits for the restart (and the new process's tools to be checked), then runs.
    const after = await pidOf(c);
    assert.notEqual(after, before);
    assert.equal(c.status().state, 'ready');
    assert.ok(c.logs.some((x) => /\[flaky\] connection lost; retrying in 0\.[45] s/.test(x)));
    assert.deepEqual(
      c.calls().map((x) => `${x.tool}@${x.pid === before ? 'first' : 'second'}`),
      ['pid@first', 'crash@first', 'pid@second'],
    );
  } finally {
    await c.close();
  }
});

test('a hung call ends at the call timeout; the upstream keeps running (same pid)', async () => {
  const c = await flaky('hang', {}, { callTimeoutMs: 1500 });
  try {
    const pid = await pidOf(c);
    const t0 = Date.now();
    const r = await c.client.callTool({ name: 'flaky.sleep', arguments: {} });
    const took = Date.now() - t0;
    assert.equal(r.isError, true);
    assert.match(text(r), /did not answer `tools\/call` within 1500 ms/);
    assert.ok(took >= 1400 && took < 5000, `took ${took} ms`);
    assert.equal(await pidOf(c), pid);
    assert.equal(c.status().state, 'ready');
    assert.equal(c.status().failures, 0);
  } finally {
    await c.close();
  }
});

test('a failed first start is retried with back-off, visible in status and logs; calls say why', async () => {
  const c = await flaky('first-start', { FAIL_STARTS: '2' });
  try {
    // The call arrives while the first starts fail: it is refused with the reason, not "unknown tool".
    const r = await c.client.callTool({ name: 'flaky.greet', arguments: { text: 'early' } });
    assert.equal(r.isError, true);
    assert.match(text(r), /^upstream `flaky` is not available \(cannot start: .+\); next start in \d/);
    const s = c.status();
    assert.ok(['retrying', 'starting'].includes(s.state), s.state);
    assert.match(s.lastError ?? '', /^cannot start: /);
    assert.ok(s.failures >= 1);
    // It comes up on the third start without anyone calling.
    await until('ready', () => (c.status().state === 'ready' ? true : undefined));
    assert.equal(c.status().failures, 2);
    const delays = c.logs.flatMap((x) => {
      const m = /^\[flaky\] cannot start: .*; retrying in ([\d.]+) s$/.exec(x);
      return m ? [Number(m[1])] : [];
    });
    // 0.5 s, then 1 s, each up to 20 % shorter.
    assert.equal(delays.length, 2, c.logs.join('\n'));
    assert.ok(delays[0]! >= 0.4 && delays[0]! <= 0.5, String(delays[0]));
    assert.ok(delays[1]! >= 0.8 && delays[1]! <= 1, String(delays[1]));
    assert.ok(c.logs.some((x) => x.includes('flaky: refusing to start (start 1)')));
    const ok = await c.client.callTool({ name: 'flaky.greet', arguments: { text: 'late' } });
    assert.match(text(ok), /^hello late from \d+$/);
    // Only the call made once it was ready reached it.
    assert.deepEqual(
      c.calls().map((x) => [x.start, x.tool, x.args.text]),
      [[3, 'greet', 'late']],
    );
  } finally {
    await c.close();
  }
});

test('an upstream that never starts: calls are refused with the reason at once; back-off grows', async () => {
  const c = await flaky('never', { FAIL_STARTS: '1000' });
  try {
    await until('three failures', () => (c.status().failures >= 3 ? true : undefined));
    const s = c.status();
    assert.equal(s.state === 'retrying' || s.state === 'starting', true);
    const t0 = Date.now();
    const r = await c.client.callTool({ name: 'flaky.greet', arguments: {} });
    assert.match(text(r), /^upstream `flaky` is not available \(cannot start: /);
    // It waits for the one attempt due within the call timeout at most, not for retry after retry.
    assert.ok(Date.now() - t0 < 6000, `${Date.now() - t0} ms`);
    assert.deepEqual((await c.client.listTools()).tools, []);
    assert.deepEqual(c.calls(), []);
  } finally {
    await c.close();
  }
});

test('a definition changed across a restart: calls sent during the restart never reach the changed server', async () => {
  // From the second start on, `greet` carries a prompt injection, the process answers the handshake only
  // after 1 s and the tool list 1 s after that: calls sent in those windows are the ones an unchecked
  // gateway would forward.
  const c = await flaky('rug-pull', { INJECT_FROM: '2', SLOW_START_MS: '1000', SLOW_LIST_MS: '1000' });
  try {
    assert.deepEqual((await c.client.listTools()).tools.map((t) => t.name).sort(), [
      'flaky.big',
      'flaky.crash',
      'flaky.greet',
      'flaky.mutate',
      'flaky.pid',
      'flaky.sleep',
    ]);
    const first = await pidOf(c);
    assert.match(
      text(await c.client.callTool({ name: 'flaky.greet', arguments: { text: 'a' } })),
      /^hello a/,
    );
    await c.client.callTool({ name: 'flaky.crash', arguments: {} });
    const sent: Array<ReturnType<Client['callTool']>> = [];
    const send = (phase: string) => {
      for (let i = 0; i < 3; i++)
        sent.push(c.client.callTool({ name: 'flaky.greet', arguments: { text: `${phase}-${i}` } }));
    };
    // While it is down and backing off; once the new process runs but has not answered the handshake;
    // once the handshake is done and its tools are being listed.
    send('down');
    await until('new process started', () => {
      const s = c.status();
      return s.state === 'starting' && s.pid !== undefined && s.pid !== first ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 300));
    send('handshake');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(c.status().state, 'starting', 'still starting or listing');
    send('listing');
    assert.equal(c.status().state, 'starting', 'still starting or listing');
    for (const r of await Promise.all(sent)) {
      assert.equal(r.isError, true);
      assert.match(text(r), /tool definition changed: `flaky\.greet` differs from its pinned definition/);
    }
    // INVARIANT under test: not one greet reached the server that describes it differently.
    const received = c.calls();
    assert.deepEqual(
      received.filter((x) => x.tool === 'greet').map((x) => [x.start, x.args.text]),
      [[1, 'a']],
    );
    // The changed tool is hidden and held back; the rest of the upstream serves.
    const s = c.status();
    assert.equal(s.state, 'pin_mismatch');
    assert.deepEqual(s.heldBack, [{ tool: 'flaky.greet', reason: 'changed' }]);
    assert.ok(!(await c.client.listTools()).tools.some((t) => t.name === 'flaky.greet'));
    assert.notEqual(await pidOf(c), first);
  } finally {
    await c.close();
  }
});

test('a definition changed at run time (list_changed): calls wait for the re-check, then get the pin reason', async () => {
  const c = await flaky('list-changed', { SLOW_LIST_MS: '1000' });
  try {
    const pid = await pidOf(c);
    assert.match(
      text(await c.client.callTool({ name: 'flaky.greet', arguments: { text: 'a' } })),
      /^hello a/,
    );
    assert.equal(text(await c.client.callTool({ name: 'flaky.mutate', arguments: {} })), 'mutated');
    await until('checking', () => (c.status().state === 'checking' ? true : undefined));
    const t0 = Date.now();
    const during = await Promise.all(
      [0, 1, 2].map((i) => c.client.callTool({ name: 'flaky.greet', arguments: { text: `checking-${i}` } })),
    );
    for (const r of during) assert.match(text(r), /tool definition changed: `flaky\.greet`/);
    assert.ok(Date.now() - t0 >= 300, 'they waited for the re-check');
    assert.deepEqual(
      c
        .calls()
        .filter((x) => x.tool === 'greet')
        .map((x) => x.args.text),
      ['a'],
    );
    assert.equal(c.status().state, 'pin_mismatch');
    assert.equal(c.status().generation, 2);
    assert.equal(await pidOf(c), pid, 'a re-check, not a restart');
    assert.ok(c.logs.some((x) => x === '[flaky] tools changed; checking them again'));
  } finally {
    await c.close();
  }
});

test('a result over the read limit gets "result too large"; the same process serves the next call', async () => {
  // Default limits: maxResultBytes 8 MiB; 11 MiB is also over the SDK's own 10 MiB stdio read limit.
  const c = await flaky('oversized');
  try {
    const pid = await pidOf(c);
    const big = 11 * 1024 * 1024;
    const r = await c.client.callTool({ name: 'flaky.big', arguments: { bytes: big } });
    assert.equal(r.isError, true);
    assert.match(
      text(r),
      /^result too large: `flaky\.big` returned \d+ bytes; the limit is 8388608 bytes \(limits\.maxResultBytes\)$/,
    );
    assert.ok(Number(/returned (\d+)/.exec(text(r))?.[1]) > big);
    assert.equal(await pidOf(c), pid, 'the upstream was not restarted');
    assert.equal(c.status().failures, 0);
    // Just over the limit but within the reader's envelope allowance: the same answer, from the result check.
    const justOver = await c.client.callTool({ name: 'flaky.big', arguments: { bytes: 8 * 1024 * 1024 } });
    assert.match(text(justOver), /^result too large: `flaky\.big` returned \d+ bytes; the limit is 8388608/);
    const small = await c.client.callTool({ name: 'flaky.big', arguments: { bytes: 10 } });
    assert.equal(text(small), 'xxxxxxxxxx');
    assert.equal(await pidOf(c), pid);
  } finally {
    await c.close();
  }
});

for (const mode of ['JSON', 'SSE'] as const) {
  test(`an HTTP upstream's oversized ${mode} answer gets "result too large"; its session goes on`, async () => {
    // A real SDK server over Streamable HTTP (in this process) whose `big` tool answers with n bytes.
    const server = new McpServer({ name: 'http-big', version: '1' });
    server.registerTool('big', { inputSchema: { bytes: z.number().int() } }, async ({ bytes }) => ({
      content: [{ type: 'text', text: 'y'.repeat(bytes) }],
    }));
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => `sess-${mode}`,
      enableJsonResponse: mode === 'JSON',
    });
    await server.connect(transport);
    const methods: string[] = [];
    const http = createServer((req, res) => {
      if (req.method === 'POST') {
        let body = '';
        req.on('data', (c: Buffer) => {
          body += c.toString('utf8');
        });
        req.on('end', () => {
          methods.push(
            `${(JSON.parse(body) as { method?: string }).method}@${req.headers['mcp-session-id'] ?? '-'}`,
          );
          void transport.handleRequest(req, res, JSON.parse(body));
        });
      } else void transport.handleRequest(req, res);
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
    const l = await makeLayer({ ...policy, roles: { r: [{ id: 'all', allow: ['web.*'] }] } });
    const c = await connectInProcess(
      l,
      makeConfig({ upstreams: { web: { url } }, limits: { maxResultBytes: 100_000 } }),
      'a',
    );
    try {
      const r = await c.client.callTool({ name: 'web.big', arguments: { bytes: 300_000 } });
      assert.equal(r.isError, true);
      assert.match(text(r), /^result too large: `web\.big` returned .+; the limit is 100000 bytes/);
      const ok = await c.client.callTool({ name: 'web.big', arguments: { bytes: 3 } });
      assert.equal(text(ok), 'yyy');
      // One session throughout: no second initialize, every call on the first session id.
      assert.equal(methods.filter((m) => m.startsWith('initialize@')).length, 1);
      assert.deepEqual(
        methods.filter((m) => m.startsWith('tools/call@')),
        [`tools/call@sess-${mode}`, `tools/call@sess-${mode}`],
      );
      assert.equal(c.gateway.upstreamStatus()[0]?.failures, 0);
    } finally {
      await c.close();
      await server.close();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    }
  });
}

test('operators see each upstream state over GET /v1/upstreams', async () => {
  const ops = newApiKey();
  const agent = newApiKey();
  const home = mkdtempSync(join(dir, 'serve-'));
  writeFileSync(
    join(home, 'policy.yaml'),
    'version: 1\nagents:\n  a: { owner: o@x.io, purpose: p, roles: [r] }\nroles:\n  r:\n    - { id: all, allow: "flaky.*" }\n',
  );
  writeFileSync(
    join(home, 'execlayer.yaml'),
    `policy: ./policy.yaml
store: "memory:"
upstreams:
  flaky:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(FLAKY)}]
    env: { STATE_FILE: ${JSON.stringify(join(home, 'starts'))}, FAIL_STARTS: "1" }
auth:
  apiKeys:
    - { sha256: ${hashApiKey(agent)}, agent: a }
    - { sha256: ${hashApiKey(ops)}, agent: ops@x.io, roles: [operator] }
http: { port: 0 }
`,
  );
  const running = await startServe(loadConfigFile(join(home, 'execlayer.yaml')), { port: 0 });
  const base = running.http.url.replace(/\/mcp$/, '');
  const client = new Client({ name: 'agent', version: '1.0.0' });
  try {
    await client.connect(
      new StreamableHTTPClientTransport(new URL(running.http.url), {
        requestInit: { headers: { authorization: `Bearer ${agent}` } },
      }),
    );
    const get = (key: string) =>
      fetch(`${base}/v1/upstreams`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal((await get(agent)).status, 403, 'an agent key lacks the operator role');
    const seen = new Set<string>();
    const ready = await until('ready over the API', async () => {
      const body = (await (await get(ops)).json()) as { upstreams: SessionUpstreamStatus[] };
      const s = body.upstreams[0];
      if (s) seen.add(s.state === 'retrying' ? `retrying:${s.lastError}` : s.state);
      return s?.state === 'ready' ? s : undefined;
    });
    assert.ok(
      [...seen].some((x) => /^retrying:cannot start: /.test(x)),
      `states seen: ${[...seen].join(', ')}`,
    );
    assert.equal(ready.name, 'flaky');
    assert.equal(ready.agent, 'a');
    assert.equal(ready.failures, 1);
    assert.equal(ready.tools, 6);
    assert.ok(typeof ready.pid === 'number');
    assert.deepEqual(ready.heldBack, []);
  } finally {
    await client.close().catch(() => {});
    await running.close();
  }
});
