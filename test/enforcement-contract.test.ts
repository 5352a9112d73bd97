// The enforcement contract: one list of actions, run through every enforcement point — the SDK
// (`authorize`, `guard`), each framework adapter, the HTTP decision API, the remote SDK over it and the MCP
// gateway — and every point must give the same effect, rule and code, and run the tool exactly when the
// effect is allow.
// A point that cannot express a case says why in its `skip` list.
// The runtime has real limit and approval stores — memory, SQLite, and PostgreSQL approvals with Redis
// limits (skipped with the reason when those servers are down, required under CI) — and the suite runs
// once per backend. Every point also runs the approvals-and-limits case: an agent with a limit of one call
// per hour whose calls need approval gets its first approved call run and its second refused by the limit.
// And every point runs the flow case: an agent shown an untrusted result (delivered by the point as it
// delivers any result: the gateway and guards by running the tool, the decision APIs by the outcome report)
// is refused the sink that needs a trusted context, which never runs; a fresh agent's same call passes.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tool as lcTool } from '@langchain/core/tools';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  ListToolsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { tool as oaTool, RunContext, setTracingDisabled } from '@openai/agents';
import { tool as aiTool, jsonSchema } from 'ai';
import { Redis } from 'ioredis';
import { withExecLayer as aiSdk } from '../src/adapters/ai-sdk.js';
import { protectTool as langchain } from '../src/adapters/langchain.js';
import { DECISION_META_KEY, protectMcpServer } from '../src/adapters/mcp-server.js';
import { protectTool as openaiAgents } from '../src/adapters/openai-agents.js';
import { ToolCallRefusedError } from '../src/adapters/shared.js';
import { openApprovalStore } from '../src/approvals/open.js';
import type { ApprovalStore } from '../src/approvals/types.js';
import { parseConfig } from '../src/config/load.js';
import { createDecisionApiServer } from '../src/enforce/http/index.js';
import { McpGateway } from '../src/enforce/mcp/gateway.js';
import { openLimitStore } from '../src/limits/open.js';
import type { LimitStore } from '../src/limits/types.js';
import { ApprovalRequiredError, DeniedError } from '../src/runtime/errors.js';
import { createExecLayer, type ExecLayer } from '../src/runtime/exec-layer.js';
import { createRemoteExecLayer, type RemoteExecLayer } from '../src/sdk/remote.js';
import { openSessionStore } from '../src/sessions/open.js';
import type { SessionStore } from '../src/sessions/types.js';
import {
  pgAvailable,
  REDIS_URL,
  redisAvailable,
  tempPostgresDatabase,
  uniqueName,
} from '../src/testing/services.js';
import type { AuditEvent, Decision, Effect, Json, Recorder } from '../src/types.js';

setTracingDisabled(true);

const policy = {
  version: 1,
  agents: {
    'support-bot': { owner: 'support@acme.com', purpose: 'answer support tickets', roles: ['support'] },
  },
  roles: {
    support: [
      { id: 'read-kb', allow: 'files.read_file', when: { path: { under: ['/srv/kb'] } } },
      { id: 'no-writes', deny: 'files.write_file', reason: 'the support agent never changes files' },
      {
        id: 'read-customers',
        allow: 'db.query',
        when: { sql: { statements: ['select'], tables: ['customers', 'tickets'] } },
      },
      {
        id: 'small-refunds',
        allow: 'payments.refund',
        when: { args: { amount: { type: 'number', min: 0.01, max: 100 } } },
      },
      { id: 'internal-email', allow: 'email.send', when: { email: { to_domains: ['acme.com'] } } },
      {
        id: 'external-email',
        ask: 'email.send',
        unless: { email: { to_domains: ['acme.com'] } },
        reason: 'email outside acme.com needs approval',
      },
    ],
    asker: [{ id: 'approved-refund', ask: 'payments.refund', reason: 'every refund needs approval' }],
  },
};

/** The agent of the approvals-and-limits case at one point: its own counter, so points do not share it. */
function askerOf(point: Point): string {
  return `asker-${point.name.replace(/[^A-Za-z0-9]+/g, '-')}`;
}

/** The agents of the flow case at one point: one shown untrusted content first, one not. */
function flowAgentOf(point: Point, which: 'tainted' | 'clean'): string {
  return `flow-${which}-${point.name.replace(/[^A-Za-z0-9]+/g, '-')}`;
}

/**
 * The contract policy plus, per point, an agent whose refunds need approval and who may make one per hour,
 * and the two agents of the flow case. The flow rules name only `web.fetch` and `chat.post`.
 */
function policyFor(points: Point[]) {
  const askers = Object.fromEntries(
    points.map((p) => [
      askerOf(p),
      { roles: ['asker'], limits: [{ id: 'one-per-hour', calls: 1, per: 'hour' }] },
    ]),
  );
  const flowAgents = Object.fromEntries(
    points.flatMap((p) =>
      (['tainted', 'clean'] as const).map((w) => [flowAgentOf(p, w), { roles: ['flow'] }]),
    ),
  );
  return {
    ...policy,
    roles: { ...policy.roles, flow: [{ id: 'flow-tools', allow: ['web.fetch', 'chat.post'] }] },
    agents: { ...policy.agents, ...askers, ...flowAgents },
    flows: {
      produces: { 'web.fetch': { label: { integrity: 'untrusted', level: 'public' } } },
      sinks: { 'chat.post': { trusted: true } },
    },
  };
}

interface Expected {
  effect: Effect;
  rule: string | null;
  code: Decision['code'];
}
interface Case {
  name: string;
  agent: string;
  tool: string;
  args: { [key: string]: Json };
  expect: Expected;
}

const KB = { path: '/srv/kb/faq.md' };
const CASES: Case[] = [
  {
    name: 'allow by rule',
    agent: 'support-bot',
    tool: 'files.read_file',
    args: KB,
    expect: allow('read-kb'),
  },
  {
    name: 'deny by rule',
    agent: 'support-bot',
    tool: 'files.write_file',
    args: { ...KB, content: 'x' },
    expect: { effect: 'deny', rule: 'no-writes', code: 'denied_by_rule' },
  },
  {
    name: 'default deny',
    agent: 'support-bot',
    tool: 'db.drop_table',
    args: { name: 'customers' },
    expect: noRule(),
  },
  {
    name: 'unknown agent',
    agent: 'stranger',
    tool: 'files.read_file',
    args: KB,
    expect: { effect: 'deny', rule: null, code: 'unknown_agent' },
  },
  {
    name: 'ask',
    agent: 'support-bot',
    tool: 'email.send',
    args: { to: 'someone@example.com', subject: 'hello' },
    expect: { effect: 'ask', rule: 'external-email', code: 'asked' },
  },
  {
    name: 'allow beside an ask',
    agent: 'support-bot',
    tool: 'email.send',
    args: { to: 'ops@acme.com', subject: 'hello' },
    expect: allow('internal-email'),
  },
  {
    name: 'sql: select from an allowed table',
    agent: 'support-bot',
    tool: 'db.query',
    args: { sql: 'SELECT id, name FROM customers WHERE id = 1' },
    expect: allow('read-customers'),
  },
  {
    name: 'sql: write statement',
    agent: 'support-bot',
    tool: 'db.query',
    args: { sql: "UPDATE customers SET name = 'x'" },
    expect: noRule(),
  },
  {
    name: 'sql: stacked statements',
    agent: 'support-bot',
    tool: 'db.query',
    args: { sql: 'SELECT 1 FROM customers; DELETE FROM customers' },
    expect: noRule(),
  },
  {
    name: 'sql: data-modifying CTE',
    agent: 'support-bot',
    tool: 'db.query',
    args: { sql: 'WITH d AS (DELETE FROM customers RETURNING id) SELECT * FROM d' },
    expect: noRule(),
  },
  {
    name: 'sql: unparsable',
    agent: 'support-bot',
    tool: 'db.query',
    args: { sql: 'SELEC * FROM customers' },
    expect: noRule(),
  },
  {
    name: 'path: traversal out of the allowed tree',
    agent: 'support-bot',
    tool: 'files.read_file',
    args: { path: '/srv/kb/../secrets/key' },
    expect: noRule(),
  },
  {
    name: 'path: sibling with a shared prefix',
    agent: 'support-bot',
    tool: 'files.read_file',
    args: { path: '/srv/kb2/faq.md' },
    expect: noRule(),
  },
  {
    name: 'number constraint met',
    agent: 'support-bot',
    tool: 'payments.refund',
    args: { amount: 50 },
    expect: allow('small-refunds'),
  },
  {
    name: 'number given as a string',
    agent: 'support-bot',
    tool: 'payments.refund',
    args: { amount: '50' },
    expect: noRule(),
  },
  {
    name: 'invalid tool name',
    agent: 'support-bot',
    tool: 'files.read file',
    args: KB,
    expect: { effect: 'deny', rule: null, code: 'invalid_action' },
  },
];

function allow(rule: string): Expected {
  return { effect: 'allow', rule, code: 'allowed' };
}
function noRule(): Expected {
  return { effect: 'deny', rule: null, code: 'no_matching_rule' };
}

/** What a point did with one action. `ran` is undefined where the point runs no tool (decision APIs). */
interface Observed extends Expected {
  ran?: boolean;
}

interface Point {
  name: string;
  /** Cases this point cannot express, with the reason. */
  skip?: Record<string, string>;
  setup?(): Promise<void>;
  run(c: Case): Promise<Observed>;
  teardown?(): Promise<void>;
}

const observe = (d: Decision, ran?: boolean): Observed => ({
  effect: d.effect,
  rule: d.rule,
  code: d.code,
  ...(ran === undefined ? {} : { ran }),
});

/** `files.read_file` → [`files.`, `read_file`]: adapters get a prefix and the framework's own name. */
function split(tool: string): [string, string] {
  const i = tool.lastIndexOf('.');
  return [tool.slice(0, i + 1), tool.slice(i + 1)];
}

const events: AuditEvent[] = [];
let layer: ExecLayer;
const root = fileURLToPath(new URL('..', import.meta.url));

// --- SDK --------------------------------------------------------------------------------------------

const sdkAuthorize: Point = {
  name: 'sdk: authorize',
  async run(c) {
    const d = await layer.authorize({ agent: c.agent, tool: c.tool, args: c.args });
    // A caller of `authorize` runs the tool itself and hands its result over, as the guard does.
    if (d.effect === 'allow') {
      const seen = await layer.deliver(d, { result: 'ok' });
      assert.ok(seen.ok, seen.ok ? '' : seen.reason);
      await layer.outcome(d, { ok: true, result: 'ok', durationMs: 0 });
    }
    return observe(d);
  },
};

type Guard = Pick<ExecLayer, 'guard'>['guard'];

/**
 * Runs case `c` through a `guard`: the refusal's decision when it threw one, or else the decision `allowed`
 * names (the guard returns only the result), with whether the tool ran.
 */
async function throughGuard(guard: Guard, c: Case, allowed: () => Promise<Decision>): Promise<Observed> {
  let ran = false;
  const guarded = guard(
    async () => {
      ran = true;
      return 'ok';
    },
    { agent: c.agent, tool: c.tool },
  );
  try {
    await guarded(c.args);
  } catch (e) {
    if (e instanceof DeniedError || e instanceof ApprovalRequiredError) return observe(e.decision, ran);
    throw e;
  }
  return observe(await allowed(), ran);
}

const sdkGuard: Point = {
  name: 'sdk: guard',
  run: (c) =>
    throughGuard(
      (fn, meta) => layer.guard(fn, meta),
      c,
      () => lastDecision(),
    ),
};

// --- Framework adapters -----------------------------------------------------------------------------

const aiSdkPoint: Point = {
  name: 'adapter: ai-sdk',
  async run(c) {
    const [prefix, name] = split(c.tool);
    let ran = false;
    const seen: { decision?: Decision } = {};
    const tools = aiSdk(
      layer,
      {
        [name]: aiTool({
          inputSchema: jsonSchema<{ [key: string]: Json }>({ type: 'object' }),
          execute: async () => {
            ran = true;
            return 'ok';
          },
        }),
      },
      {
        agent: c.agent,
        prefix,
        onDecision: (d) => {
          seen.decision = d;
        },
      },
    );
    try {
      await tools[name]?.execute?.(c.args, { toolCallId: 'call-1', messages: [] });
    } catch (e) {
      if (!(e instanceof ToolCallRefusedError)) throw e;
    }
    const decision = seen.decision;
    assert.ok(decision, 'the adapter reported no decision');
    return observe(decision, ran);
  },
};

const openaiAgentsPoint: Point = {
  name: 'adapter: openai-agents',
  skip: {
    'invalid tool name':
      'the SDK rewrites function tool names to [A-Za-z0-9_] when the tool is defined, so no call can carry an invalid name',
  },
  async run(c) {
    const [prefix, name] = split(c.tool);
    let ran = false;
    const seen: { decision?: Decision } = {};
    const t = oaTool({
      name,
      description: `contract tool ${name}`,
      parameters: { type: 'object', properties: {}, required: [], additionalProperties: true },
      strict: false,
      execute: async () => {
        ran = true;
        return 'ok';
      },
    });
    assert.equal(t.name, name, 'the SDK kept the tool name');
    const wrapped = openaiAgents(layer, t, {
      agent: c.agent,
      prefix,
      onDecision: (d) => {
        seen.decision = d;
      },
    });
    const output = await wrapped.invoke(new RunContext({}), JSON.stringify(c.args));
    const decision = seen.decision;
    assert.ok(decision, 'the adapter reported no decision');
    if (decision.effect !== 'allow')
      assert.match(String(output), new RegExp(escapeRegExp(decision.reason.slice(0, 40))));
    return observe(decision, ran);
  },
};

const langchainPoint: Point = {
  name: 'adapter: langchain',
  async run(c) {
    const [prefix, name] = split(c.tool);
    let ran = false;
    const seen: { decision?: Decision } = {};
    const t = lcTool(
      async () => {
        ran = true;
        return 'ok';
      },
      {
        name,
        description: `contract tool ${name}`,
        schema: { type: 'object', properties: {}, additionalProperties: true },
      },
    );
    const wrapped = langchain(layer, t, {
      agent: c.agent,
      prefix,
      onDecision: (d) => {
        seen.decision = d;
      },
    });
    const message = (await wrapped.invoke({ id: 'call-1', name, args: c.args, type: 'tool_call' })) as {
      status?: string;
    };
    const decision = seen.decision;
    assert.ok(decision, 'the adapter reported no decision');
    assert.equal(message.status, decision.effect === 'allow' ? 'success' : 'error');
    return observe(decision, ran);
  },
};

const mcpServerAdapter = (() => {
  const ran: string[] = [];
  const clients = new Map<string, Client>();
  const seen: { decision?: Decision } = {};
  // One protected server per connection, as the SDK requires (a Server serves one transport).
  const makeServer = () => {
    const server = new Server({ name: 'contract', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [] }));
    server.setRequestHandler(CallToolRequestSchema, async (request) => {
      ran.push(request.params.name);
      return { content: [{ type: 'text' as const, text: 'ok' }] };
    });
    // The MCP tool names here are the full policy names (MCP allows dots), so there is no prefix.
    return protectMcpServer(server, layer, {
      agent: (extra) => extra.authInfo?.clientId,
      prefix: '',
      onDecision: (d) => {
        seen.decision = d;
      },
    });
  };
  const point: Point = {
    name: 'adapter: mcp-server',
    async run(c) {
      let client = clients.get(c.agent);
      if (!client) {
        client = await connectAs(makeServer(), c.agent);
        clients.set(c.agent, client);
      }
      delete seen.decision;
      const before = ran.length;
      const result = (await client.callTool({ name: c.tool, arguments: c.args })) as CallToolResult;
      // Set by onDecision during the call (TypeScript cannot see that).
      const decision = seen.decision as Decision | undefined;
      assert.ok(decision, 'the adapter reported no decision');
      if (decision.effect !== 'allow') {
        const meta = result._meta?.[DECISION_META_KEY] as {
          effect: string;
          rule: string | null;
          code: string;
        };
        assert.deepEqual(
          [meta.effect, meta.rule, meta.code],
          [decision.effect, decision.rule, decision.code],
        );
        assert.equal(result.isError, true);
      }
      return observe(decision, ran.length > before);
    },
    async teardown() {
      for (const c of clients.values()) await c.close();
      clients.clear();
    },
  };
  return point;
})();

// --- HTTP decision API ------------------------------------------------------------------------------

/** The decision API over the shared runtime on an ephemeral port, the caller a `pdp-client`. */
function decisionApi() {
  const server = createDecisionApiServer(
    {
      authorize: (a, o) => layer.authorize(a, o),
      outcome: (d, o, opts) => layer.outcome(d, o, opts),
      awaitingOutcome: (id) => layer.awaitingOutcome(id),
      deliver: (d, r) => layer.deliver(d, r),
      get recorder() {
        return layer.recorder;
      },
      get policyHash() {
        return layer.policyHash;
      },
      get engine() {
        return layer.engine;
      },
    },
    { authenticate: async () => ({ ok: true, agent: 'contract-pep', roles: ['pdp-client'] }) },
  );
  return {
    async listen(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const http = (() => {
  let api: ReturnType<typeof decisionApi>;
  let base = '';
  const point: Point = {
    name: 'http: /v1/decide',
    async setup() {
      api = decisionApi();
      base = await api.listen();
    },
    async run(c) {
      const res = await fetch(`${base}/v1/decide`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer contract' },
        body: JSON.stringify({ agent: c.agent, tool: c.tool, args: c.args }),
      });
      const body = (await res.json()) as Decision & { code: string };
      if (res.status === 400) {
        // A malformed action is refused at the edge with a 400 problem (code `invalid_request`), before any
        // decision exists; that is the HTTP form of the `invalid_action` deny the other points return.
        assert.equal(body.code, 'invalid_request');
        return { effect: 'deny', rule: null, code: 'invalid_action' };
      }
      assert.equal(res.status, 200);
      if (body.effect === 'allow') {
        // The caller reports the outcome; a flow policy labels the result by the tool's declaration.
        const out = await fetch(`${base}/v1/outcome`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer contract' },
          body: JSON.stringify({ decision: body.id, ok: true, durationMs: 1 }),
        });
        assert.equal(out.status, 200, await out.text());
      }
      return observe(body);
    },
    teardown: () => api.close(),
  };
  return point;
})();

const remoteGuard = (() => {
  let api: ReturnType<typeof decisionApi>;
  let remote: RemoteExecLayer;
  const point: Point = {
    name: 'remote sdk: guard',
    async setup() {
      api = decisionApi();
      remote = createRemoteExecLayer({ url: await api.listen(), apiKey: 'contract' });
    },
    run: (c) =>
      throughGuard(remote.guard, c, async () => {
        // The guard reported the outcome to the server, linked to the decision it was given.
        const last = await lastDecision('http');
        const reported = events.some((e) => e.type === 'outcome' && e.decisionId === last.id && e.ok);
        assert.ok(reported, 'the allowed call ran but its outcome was not recorded');
        return last;
      }),
    teardown: () => api.close(),
  };
  return point;
})();

// --- MCP gateway -------------------------------------------------------------------------------------

const gateway = (() => {
  let dir = '';
  let callLog = '';
  let gw: McpGateway | undefined;
  const clients = new Map<string, Client>();
  const upstreamTools: Record<string, string[]> = {
    files: ['read_file', 'write_file'],
    db: ['query', 'drop_table'],
    email: ['send'],
    payments: ['refund'],
    web: ['fetch'],
    chat: ['post'],
  };
  const point: Point = {
    name: 'mcp gateway',
    async setup() {
      dir = mkdtempSync(join(tmpdir(), 'execlayer-contract-'));
      callLog = join(dir, 'calls.jsonl');
      const fixture = join(root, 'test/fixtures/contract-upstream.mjs');
      const upstreams = Object.entries(upstreamTools)
        .map(
          ([name, tools]) =>
            `  ${name}:\n    command: ${JSON.stringify(process.execPath)}\n    args: ${JSON.stringify([fixture, name, ...tools])}\n    env: { CONTRACT_CALL_LOG: ${JSON.stringify(callLog)} }\n    cwd: ${JSON.stringify(root)}`,
        )
        .join('\n');
      const config = parseConfig(
        `policy: ./policy.yaml\nstore: "memory:"\nupstreams:\n${upstreams}\n`,
        join(dir, 'execlayer.yaml'),
      );
      gw = new McpGateway(layer, config, { log: () => {} });
    },
    async run(c) {
      assert.ok(gw);
      let client = clients.get(c.agent);
      if (!client) {
        const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
        await gw.connect(serverSide, { agent: c.agent, transport: 'memory' });
        client = new Client({ name: 'contract-client', version: '1.0.0' });
        await client.connect(clientSide);
        clients.set(c.agent, client);
      }
      const before = calls();
      const result = (await client.callTool({ name: c.tool, arguments: c.args })) as CallToolResult;
      const ran = calls() > before;
      const meta = result._meta?.[DECISION_META_KEY] as
        | { effect: Effect; rule: string | null; code: Decision['code'] }
        | undefined;
      if (meta) return { effect: meta.effect, rule: meta.rule, code: meta.code, ran };
      // An allowed result carries no decision; the audit trail has it (recorded before the call ran).
      assert.notEqual(
        result.isError,
        true,
        `allowed call failed upstream: ${JSON.stringify(result.content)}`,
      );
      return observe(await lastDecision('mcp'), ran);
    },
    async teardown() {
      for (const c of clients.values()) await c.close();
      clients.clear();
      await gw?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  function calls(): number {
    return existsSync(callLog) ? readFileSync(callLog, 'utf8').split('\n').filter(Boolean).length : 0;
  }
  return point;
})();

// -----------------------------------------------------------------------------------------------------

const POINTS: Point[] = [
  sdkAuthorize,
  sdkGuard,
  aiSdkPoint,
  openaiAgentsPoint,
  langchainPoint,
  mcpServerAdapter,
  http,
  remoteGuard,
  gateway,
];

async function lastDecision(point?: string): Promise<Decision> {
  await layer.flush();
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e?.type === 'decision' && (point === undefined || e.point === point)) return e.decision;
  }
  throw new Error('no decision was recorded');
}

async function connectAs(server: Server, agent: string): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const authInfo: AuthInfo = { token: `token-${agent}`, clientId: agent, scopes: [] };
  const send = clientSide.send.bind(clientSide);
  clientSide.send = (message, options) => send(message, { ...options, authInfo });
  await server.connect(serverSide);
  const client = new Client({ name: 'contract-client', version: '1.0.0' });
  await client.connect(clientSide);
  return client;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** What a backend opened for one run of the suite, and how to clean it up. */
interface Opened {
  limits: LimitStore;
  approvals: ApprovalStore;
  sessions: SessionStore;
  cleanup(): Promise<void>;
}

/** The limit and approval stores the runtime is given; the suite runs once per backend. */
const BACKENDS: { name: string; skip?: string; open(dir: string, recorder: Recorder): Promise<Opened> }[] = [
  {
    name: 'memory',
    async open(_dir, recorder) {
      const limits = await openLimitStore('memory:');
      const approvals = await openApprovalStore('memory:', { recorder });
      const sessions = await openSessionStore('memory:');
      return { limits, approvals, sessions, cleanup: async () => {} };
    },
  },
  {
    name: 'sqlite',
    async open(dir, recorder) {
      const url = `sqlite:${join(dir, 'state.db')}`;
      const limits = await openLimitStore(url);
      const approvals = await openApprovalStore(url, { recorder });
      const sessions = await openSessionStore(url);
      return { limits, approvals, sessions, cleanup: async () => {} };
    },
  },
  {
    name: 'postgres approvals, redis limits',
    ...(await scaleOutSkip()),
    async open(_dir, recorder) {
      const cleanups: Array<() => Promise<void> | void> = [];
      const pgUrl = await tempPostgresDatabase({ skip: () => {}, after: (fn) => void cleanups.push(fn) });
      assert.ok(pgUrl, 'PostgreSQL was reachable a moment ago');
      const prefix = `${uniqueName('execlayer_contract')}:`;
      const limits = await openLimitStore(REDIS_URL, { prefix });
      const approvals = await openApprovalStore(pgUrl, { recorder });
      const sessions = await openSessionStore(REDIS_URL, { prefix });
      return {
        limits,
        approvals,
        sessions,
        async cleanup() {
          const redis = new Redis(REDIS_URL);
          const keys = await redis.keys(`${prefix}*`);
          if (keys.length > 0) await redis.del(...keys);
          redis.disconnect();
          for (const fn of cleanups.reverse()) await fn();
        },
      };
    },
  },
];

/** Skips the scale-out run, with the reason, when PostgreSQL or Redis is unreachable (fails under CI). */
async function scaleOutSkip(): Promise<{ skip?: string }> {
  const why: string[] = [];
  const note = { skip: (m?: string) => void why.push(m ?? '') };
  if (!(await pgAvailable(note)) || !(await redisAvailable(note))) return { skip: why.join('; ') };
  return {};
}

let approvals: ApprovalStore;

/** The one pending approval of `agent`, granted by an approver: the call may now be retried. */
async function grantPending(agent: string): Promise<void> {
  const pending = await approvals.list({ status: 'pending', agent }, Date.now());
  assert.equal(pending.length, 1, `expected one pending approval for ${agent}`);
  await approvals.decide(pending[0]!.id, { approve: true, approver: 'lead@acme.com' }, Date.now());
}

/**
 * The approvals-and-limits case: ask, grant, retry (runs); ask again, grant, retry (refused by the agent's
 * limit of one call per hour, although approved). The tool runs for the first approved call only.
 */
async function approvalsAndLimits(point: Point): Promise<void> {
  const agent = askerOf(point);
  const c = (amount: number): Case => ({
    name: 'approvals and limits',
    agent,
    tool: 'payments.refund',
    args: { amount },
    expect: allow('approved-refund'),
  });
  const steps: { amount: number; grant: boolean; expect: Expected; runs: boolean }[] = [
    { amount: 10, grant: false, expect: asked(), runs: false },
    { amount: 10, grant: true, expect: granted(), runs: true },
    { amount: 20, grant: false, expect: asked(), runs: false },
    {
      amount: 20,
      grant: true,
      expect: { effect: 'deny', rule: 'approved-refund', code: 'limit_exceeded' },
      runs: false,
    },
  ];
  for (const [i, step] of steps.entries()) {
    if (step.grant) await grantPending(agent);
    const got = await point.run(c(step.amount));
    assert.deepEqual(
      { effect: got.effect, rule: got.rule, code: got.code },
      step.expect,
      `${point.name}, step ${i + 1}: the approved call was decided differently`,
    );
    if (got.ran !== undefined) assert.equal(got.ran, step.runs, `${point.name}, step ${i + 1}: ran`);
  }
}

/**
 * The flow case: `web.fetch` (untrusted by declaration) runs and its result is delivered; the sink
 * `chat.post`, which needs a trusted context, is then denied by the flow rule and does not run. The same
 * call by an agent that was shown nothing untrusted is allowed and runs.
 */
async function flowCase(point: Point): Promise<void> {
  const call = (agent: string, tool: string): Case => ({
    name: 'flows',
    agent,
    tool,
    args: tool === 'web.fetch' ? { url: 'https://news.example/' } : { text: 'hello' },
    expect: allow('flow-tools'),
  });
  const tainted = flowAgentOf(point, 'tainted');
  const steps: { c: Case; expect: Expected; runs: boolean }[] = [
    { c: call(tainted, 'web.fetch'), expect: allow('flow-tools'), runs: true },
    {
      c: call(tainted, 'chat.post'),
      expect: { effect: 'deny', rule: 'sink:chat.post', code: 'denied_by_flow' },
      runs: false,
    },
    { c: call(flowAgentOf(point, 'clean'), 'chat.post'), expect: allow('flow-tools'), runs: true },
  ];
  for (const [i, step] of steps.entries()) {
    const got = await point.run(step.c);
    assert.deepEqual(
      { effect: got.effect, rule: got.rule, code: got.code },
      step.expect,
      `${point.name}, flow step ${i + 1} (${step.c.tool}) was decided differently`,
    );
    if (got.ran !== undefined) assert.equal(got.ran, step.runs, `${point.name}, flow step ${i + 1}: ran`);
  }
}

function asked(): Expected {
  return { effect: 'ask', rule: 'approved-refund', code: 'asked' };
}
function granted(): Expected {
  return { effect: 'allow', rule: 'approved-refund', code: 'approval_granted' };
}

for (const backend of BACKENDS) {
  const options = backend.skip === undefined ? {} : { skip: backend.skip };
  describe(`enforcement contract over ${backend.name} limit and approval stores`, options, () => {
    let dir = '';
    let opened: Opened;
    const recorder: Recorder = { record: async (e: AuditEvent) => void events.push(e) };
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'execlayer-contract-state-'));
      opened = await backend.open(dir, recorder);
      approvals = opened.approvals;
      layer = await createExecLayer({
        policy: policyFor(POINTS),
        recorder,
        limits: opened.limits,
        approvals,
        sessions: opened.sessions,
      });
    });
    after(async () => {
      await layer?.close();
      await opened?.approvals.close();
      await opened?.limits.close();
      await opened?.sessions.close();
      await opened?.cleanup();
      rmSync(dir, { recursive: true, force: true });
    });

    for (const point of POINTS) {
      describe(`enforcement contract: ${point.name}`, () => {
        before(async () => point.setup?.());
        after(async () => point.teardown?.());
        for (const c of CASES) {
          const reason = point.skip?.[c.name];
          it(c.name, reason ? { skip: reason } : {}, async () => {
            const got = await point.run(c);
            assert.deepEqual(
              { effect: got.effect, rule: got.rule, code: got.code },
              c.expect,
              `${point.name} decided ${c.tool} ${JSON.stringify(c.args)} differently`,
            );
            if (got.ran !== undefined) {
              assert.equal(
                got.ran,
                c.expect.effect === 'allow',
                got.ran ? 'a refused call ran' : 'an allowed call did not run',
              );
            }
          });
        }
        it('approvals and limits: an approved call passes the limits too', () => approvalsAndLimits(point));
        it('flows: after an untrusted result the sink is refused and never runs; a fresh agent passes', () =>
          flowCase(point));
      });
    }
  });
}
