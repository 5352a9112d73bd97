/**
 * An MCP server protected by ExecLayer, no API key needed: the official MCP client connects over an
 * in-memory transport that authenticates it as `support-bot` (as an HTTP transport with bearer auth
 * would), lists the tools it may see, and calls three of them.
 *
 *   npx tsx examples/adapters/mcp-server.ts
 */
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { protectMcpServer } from '../../src/adapters/mcp-server.js';
import { createExecLayer } from '../../src/runtime/exec-layer.js';

// `memory:` keeps this example self-contained; by default the runtime records to sqlite:./execlayer.db.
const layer = await createExecLayer({
  policy: fileURLToPath(new URL('./policy.yaml', import.meta.url)),
  store: 'memory:',
});

// The server's tools, written as usual.
const server = new McpServer({ name: 'crm', version: '1.0.0' });
server.registerTool('lookup_customer', { inputSchema: { id: z.string() } }, async ({ id }) => {
  console.log(`  [tool ran] lookup_customer ${id}`);
  return { content: [{ type: 'text', text: `customer ${id}: Ada Lovelace` }] };
});
server.registerTool('delete_customer', { inputSchema: { id: z.string() } }, async ({ id }) => {
  console.log(`  [tool ran] delete_customer ${id}`);
  return { content: [{ type: 'text', text: `deleted ${id}` }] };
});

// One line: identity from the authenticated channel (`authInfo`), never from tool arguments.
protectMcpServer(server, layer, { agent: (extra) => extra.authInfo?.clientId, prefix: 'crm.' });

// A client authenticated as support-bot.
const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
const send = clientSide.send.bind(clientSide);
const authInfo = { token: 'example-token', clientId: 'support-bot', scopes: [] };
clientSide.send = (message, options) => send(message, { ...options, authInfo });
await server.connect(serverSide);
const client = new Client({ name: 'example-client', version: '1.0.0' });
await client.connect(clientSide);

console.log(`tools/list shows: ${(await client.listTools()).tools.map((t) => t.name).join(', ')}`);
for (const [name, args] of [
  ['delete_customer', { id: 'c-42' }],
  ['lookup_customer', { id: 'admin' }],
  ['lookup_customer', { id: 'c-42' }],
] as const) {
  const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
  const text = result.content.map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join(' ');
  console.log(
    `${result.isError ? 'DENIED ' : 'ALLOWED'} ${name} ${JSON.stringify(args)}: the client read: ${JSON.stringify(text)}`,
  );
}
await client.close();
await layer.close();
