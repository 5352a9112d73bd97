/**
 * The recorded multi-agent scenario the governance tests share: five agents work through the real MCP
 * gateway (official SDK client, real filesystem, memory and everything servers) into a real SQLite audit
 * log, with a human approval and a stop-switch press along the way.
 *
 *   kb-reader  aligned            reads the knowledge base, exactly as declared
 *   calc-bot   over-permitted     policy allows sums up to 1000 where 200 was declared; one call of 700
 *   mem-bot    undeclared tries   tries to create and delete graph entities (denied), never declared
 *   idle-bot   unused permission  may read and list files, only lists; a declared tool is not permitted
 *   ops-bot    oversight          echo needs approval (declared so); approved once, then stopped
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryApprovalStore } from '../src/approvals/memory.js';
import { openAuditLog } from '../src/audit/log.js';
import { McpGateway } from '../src/enforce/mcp/gateway.js';
import { MemoryToolPinStore } from '../src/enforce/mcp/pins.js';
import { MemoryLimitStore } from '../src/limits/memory.js';
import { createExecLayer } from '../src/runtime/exec-layer.js';
import { MemoryAgentStateStore } from '../src/state/agent-state.js';
import { EVERYTHING, FILESYSTEM, MEMORY, makeConfig } from './gateway-helpers.js';

export interface Scenario {
  dir: string;
  store: string;
  keyPath: string;
  policyFile: string;
  declFile: string;
  from: number;
  to: number;
}

export function policyText(kb: string): string {
  return `version: 1
agents:
  kb-reader:
    owner: kb-team@acme.com
    roles: [kb]
  calc-bot:
    rules:
      - id: sums
        allow: everything.get-sum
        when: { args: { a: { type: number, min: 0, max: 1000 }, b: { type: number, min: 0, max: 1000 } } }
  mem-bot:
    documented: [read the knowledge graph]
    rules:
      # reading only; writes are refused by default
      - id: mem-read
        allow: memory.read_graph
  idle-bot:
    rules:
      - id: idle-files
        allow: [files.list_directory, files.read_text_file]
        when: { path: { under: [${kb}] } }
  ops-bot:
    rules:
      - id: echo-approval
        ask: everything.echo
        approval: { ttl: 10m, approvers: [lead@acme.com] }
roles:
  kb:
    - id: kb-read
      allow: files.read_text_file
      when: { path: { under: [${kb}] } }
`;
}

export function declarationText(kb: string): string {
  return `version: 1
agents:
  kb-reader:
    owner: kb-team@acme.com
    purpose: answer questions from the knowledge base
    data: [internal documentation]
    capabilities:
      - id: read-kb
        description: read knowledge-base articles
        tools: files.read_text_file
        when: { path: { under: [${kb}] } }
  calc-bot:
    owner: finance@acme.com
    purpose: add up small invoice amounts
    capabilities:
      - id: small-sums
        tools: everything.get-sum
        when: { args: { a: { type: number, min: 0, max: 200 }, b: { type: number, min: 0, max: 200 } } }
  mem-bot:
    owner: research@acme.com
    purpose: read the knowledge graph
    prohibited: [changing the knowledge graph]
    capabilities:
      - id: read-graph
        tools: memory.read_graph
  idle-bot:
    owner: support@acme.com
    purpose: browse the knowledge base
    risk: { level: high, eu_ai_act: { role: deployer, high_risk: true, category: Annex III 5(b) } }
    retention: 365d
    capabilities:
      - id: browse-kb
        tools: [files.list_directory, files.read_text_file]
        when: { path: { under: [${kb}] } }
      - id: search-memory
        tools: memory.search_nodes
  ops-bot:
    owner: ops@acme.com
    purpose: relay operator messages
    capabilities:
      - id: echo
        tools: everything.echo
        oversight: approval
`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Records the scenario into a new directory and returns where everything is. */
export async function recordScenario(): Promise<Scenario> {
  const dir = mkdtempSync(join(tmpdir(), 'execlayer-governance-'));
  const kb = join(dir, 'kb');
  mkdirSync(kb);
  writeFileSync(join(kb, 'returns.md'), 'Returns within 30 days.\n');
  writeFileSync(join(kb, 'shipping.md'), 'Ships in 2 days.\n');
  const policyFile = join(dir, 'policy.yaml');
  const declFile = join(dir, 'declarations.yaml');
  writeFileSync(policyFile, policyText(kb));
  writeFileSync(declFile, declarationText(kb));
  const store = `sqlite:${join(dir, 'audit.db')}`;
  const keyPath = join(dir, 'audit.db.key');

  const from = Date.now() - 1;
  const log = await openAuditLog(store, { keyPath, checkpointEvery: 5 });
  const approvals = memoryApprovalStore({ recorder: log });
  const state = new MemoryAgentStateStore({ recorder: log });
  const layer = await createExecLayer({
    policy: policyFile,
    recorder: log,
    approvals,
    limits: new MemoryLimitStore(),
    state,
  });
  const config = makeConfig({
    upstreams: {
      files: { command: process.execPath, args: [FILESYSTEM, kb] },
      memory: {
        command: process.execPath,
        args: [MEMORY],
        env: { MEMORY_FILE_PATH: join(dir, 'memory.jsonl') },
      },
      everything: { command: process.execPath, args: [EVERYTHING] },
    },
  });
  const gateway = new McpGateway(layer, config, { pins: new MemoryToolPinStore(), log: () => {} });
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const { InMemoryTransport } = await import('@modelcontextprotocol/sdk/inMemory.js');
  const agent = async (id: string) => {
    const [a, b] = InMemoryTransport.createLinkedPair();
    await gateway.connect(b, { agent: id, transport: 'memory' });
    const client = new Client({ name: id, version: '1.0.0' });
    await client.connect(a);
    return client;
  };
  const call = async (c: Awaited<ReturnType<typeof agent>>, name: string, args: Record<string, unknown>) =>
    (await c.callTool({ name, arguments: args })) as { isError?: boolean; content?: { text?: string }[] };
  try {
    const kbReader = await agent('kb-reader');
    assert.notEqual(
      (await call(kbReader, 'files.read_text_file', { path: join(kb, 'returns.md') })).isError,
      true,
    );
    assert.notEqual(
      (await call(kbReader, 'files.read_text_file', { path: join(kb, 'shipping.md') })).isError,
      true,
    );

    const calc = await agent('calc-bot');
    assert.match((await call(calc, 'everything.get-sum', { a: 50, b: 20 })).content?.[0]?.text ?? '', /70/);
    assert.match((await call(calc, 'everything.get-sum', { a: 700, b: 1 })).content?.[0]?.text ?? '', /701/);

    const mem = await agent('mem-bot');
    assert.notEqual((await call(mem, 'memory.read_graph', {})).isError, true);
    const created = await call(mem, 'memory.create_entities', {
      entities: [{ name: 'x', entityType: 'note', observations: [] }],
    });
    assert.equal(created.isError, true, 'creating entities is refused');
    assert.equal((await call(mem, 'memory.delete_entities', { entityNames: ['x'] })).isError, true);

    const idle = await agent('idle-bot');
    assert.notEqual((await call(idle, 'files.list_directory', { path: kb })).isError, true);

    const ops = await agent('ops-bot');
    const asked = await call(ops, 'everything.echo', { message: 'deploy window opens' });
    assert.equal(asked.isError, true, 'echo waits for approval');
    const [pending] = await approvals.list({ status: 'pending' });
    assert.ok(pending, 'a pending approval was created');
    await sleep(40);
    await approvals.decide(pending.id, { approve: true, approver: 'lead@acme.com', note: 'ok' }, Date.now());
    assert.match(
      (await call(ops, 'everything.echo', { message: 'deploy window opens' })).content?.[0]?.text ?? '',
      /deploy/,
    );
    await state.suspend('ops-bot', 'oncall@acme.com', 'runaway loop');
    const stopped = await call(ops, 'everything.echo', { message: 'again' });
    assert.equal(stopped.isError, true, 'the stop switch refuses');
    await state.resume('ops-bot', 'oncall@acme.com');
    for (const c of [kbReader, calc, mem, idle, ops]) await c.close();
  } finally {
    await gateway.close();
    await layer.close();
    await log.close();
  }
  return { dir, store, keyPath, policyFile, declFile, from, to: Date.now() + 1 };
}
