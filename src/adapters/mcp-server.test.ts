import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  ListToolsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { createExecLayer, type ExecLayer } from '../runtime/exec-layer.js';
import type { AuditEvent } from '../types.js';
import { AdapterError, DECISION_META_KEY, protectMcpServer } from './mcp-server.js';

const policy = {
  version: 1,
  agents: {
    'support-bot': { owner: 'support@acme.com', purpose: 'answer tickets', roles: ['support'] },
    'admin-bot': { owner: 'ops@acme.com', purpose: 'maintenance', roles: ['admin'] },
  },
  roles: {
    support: [
      { id: 'lookup', allow: 'crm.lookup_customer', when: { args: { id: { type: 'string', glob: 'c-*' } } } },
      {
        id: 'no-deletes',
        deny: 'crm.delete_customer',
        reason: 'customer records are never deleted by agents',
      },
    ],
    admin: [{ id: 'admin-all', allow: 'crm.*' }],
  },
};

/** Connects a client whose every message carries `authInfo`, as an authenticating HTTP transport would. */
async function connect(server: McpServer | Server, authInfo?: AuthInfo): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  if (authInfo) {
    const send = clientSide.send.bind(clientSide);
    clientSide.send = (message, options) => send(message, { ...options, authInfo });
  }
  await server.connect(serverSide);
  const client = new Client({ name: 'test-client', version: '1.0.0' });
  await client.connect(clientSide);
  return client;
}

const auth = (clientId: string): AuthInfo => ({ token: `token-${clientId}`, clientId, scopes: [] });
const text = (r: unknown) => ((r as CallToolResult).content[0] as { text: string }).text;

describe('mcp-server adapter', () => {
  let layer: ExecLayer;
  const events: AuditEvent[] = [];
  before(async () => {
    layer = await createExecLayer({ policy, recorder: { record: async (e) => void events.push(e) } });
  });
  after(async () => {
    await layer.close();
  });

  function makeServer() {
    const ran: string[] = [];
    const server = new McpServer({ name: 'crm', version: '1.0.0' });
    server.registerTool('lookup_customer', { inputSchema: { id: z.string() } }, async ({ id }) => {
      ran.push(`lookup ${id}`);
      return { content: [{ type: 'text', text: `customer ${id}: Ada` }] };
    });
    protectMcpServer(server, layer, { agent: (extra) => extra.authInfo?.clientId, prefix: 'crm.' });
    // Registered after protection: must be protected too.
    server.registerTool('delete_customer', { inputSchema: { id: z.string() } }, async ({ id }) => {
      ran.push(`delete ${id}`);
      return { content: [{ type: 'text', text: `deleted ${id}` }] };
    });
    return { ran, server };
  }

  it('authorizes each call with the identity of the connection and filters the tool list', async () => {
    const { ran, server } = makeServer();
    const client = await connect(server, auth('support-bot'));

    const listed = (await client.listTools()).tools.map((t) => t.name);
    assert.deepEqual(listed, ['lookup_customer'], 'a tool the agent can never call is hidden');

    const denied = await client.callTool({ name: 'delete_customer', arguments: { id: 'c-1' } });
    assert.equal(denied.isError, true);
    assert.match(text(denied), /customer records are never deleted by agents/);
    const meta = denied._meta?.[DECISION_META_KEY] as { effect: string; rule: string; code: string };
    assert.deepEqual([meta.effect, meta.rule, meta.code], ['deny', 'no-deletes', 'denied_by_rule']);

    const constrained = await client.callTool({ name: 'lookup_customer', arguments: { id: 'root' } });
    assert.equal(constrained.isError, true);
    assert.match(text(constrained), /`id`/);

    const allowed = await client.callTool({ name: 'lookup_customer', arguments: { id: 'c-7' } });
    assert.equal(allowed.isError, undefined);
    assert.equal(text(allowed), 'customer c-7: Ada');
    assert.deepEqual(ran, ['lookup c-7'], 'refused calls never reached their handlers');

    await layer.flush();
    const outcome = events.find((e) => e.type === 'outcome' && e.tool === 'crm.lookup_customer');
    assert.ok(outcome && outcome.type === 'outcome' && outcome.ok, 'the allowed call has a recorded outcome');
    const points = events
      .filter((e) => e.type === 'decision')
      .map((e) => (e.type === 'decision' ? e.point : ''));
    assert.ok(points.length >= 3 && points.every((p) => p === 'mcp'));
    await client.close();
  });

  it('takes identity only from the channel: arguments cannot claim another agent', async () => {
    const { ran, server } = makeServer();
    const client = await connect(server, auth('support-bot'));
    const r = await client.callTool({
      name: 'delete_customer',
      arguments: { id: 'c-1', agent: 'admin-bot' },
    });
    assert.equal(r.isError, true);
    assert.deepEqual(ran, []);

    const admin = await connect(makeServer().server, auth('admin-bot'));
    assert.deepEqual((await admin.listTools()).tools.map((t) => t.name).sort(), [
      'delete_customer',
      'lookup_customer',
    ]);
    await client.close();
    await admin.close();
  });

  it('refuses everything on an unauthenticated connection and records it', async () => {
    const { ran, server } = makeServer();
    const client = await connect(server);
    assert.deepEqual((await client.listTools()).tools, []);
    const r = await client.callTool({ name: 'lookup_customer', arguments: { id: 'c-1' } });
    assert.equal(r.isError, true);
    assert.match(text(r), /unauthenticated/);
    assert.deepEqual(ran, []);
    assert.ok(events.some((e) => e.type === 'auth' && e.status === 'rejected' && e.point === 'mcp'));
    await client.close();
  });

  it('protects a low-level Server and refuses to protect a server twice', async () => {
    let ran = 0;
    const server = new Server({ name: 'low', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: [
        { name: 'lookup_customer', inputSchema: { type: 'object' as const } },
        { name: 'export_all', inputSchema: { type: 'object' as const } },
      ],
    }));
    server.setRequestHandler(CallToolRequestSchema, async (request) => {
      ran++;
      return { content: [{ type: 'text' as const, text: `ran ${request.params.name}` }] };
    });
    protectMcpServer(server, layer, { agent: (extra) => extra.authInfo?.clientId, prefix: 'crm.' });
    assert.throws(
      () => protectMcpServer(server, layer, { agent: () => 'support-bot' }),
      (e: unknown) => e instanceof AdapterError && e.code === 'already_protected',
    );
    const client = await connect(server, auth('support-bot'));
    assert.deepEqual(
      (await client.listTools()).tools.map((t) => t.name),
      ['lookup_customer'],
    );
    const denied = await client.callTool({ name: 'export_all', arguments: {} });
    assert.equal(denied.isError, true);
    assert.match(text(denied), /denied by policy/);
    assert.equal(ran, 0);
    const ok = await client.callTool({ name: 'lookup_customer', arguments: { id: 'c-3' } });
    assert.equal(text(ok), 'ran lookup_customer');
    assert.equal(ran, 1);
    await client.close();
  });
});
