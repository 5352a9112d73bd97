/**
 * The demo's built-in upstream, used when the MCP filesystem server is not installed (as from the
 * published package): a small stdio MCP server, on the official SDK, with four tools named and shaped
 * like the filesystem server's (`read_text_file`, `list_directory`, `write_file`,
 * `list_allowed_directories`), confined to the directory given as its argument. The gateway in front of
 * it is what the demo shows; the confinement here is only so the demo can never touch other files.
 *
 *   node demo-upstream.js <dir>
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const root = resolve(process.argv[2] ?? process.cwd());

function inside(path: string): string {
  const p = resolve(root, path);
  const rel = relative(root, p);
  if (rel.startsWith('..') || isAbsolute(rel)) throw new Error(`access denied: ${path} is outside ${root}`);
  return p;
}

const text = (t: string) => ({ content: [{ type: 'text' as const, text: t }] });
const server = new McpServer({ name: 'execlayer-demo-files', version: '1.0.0' });
server.registerTool(
  'read_text_file',
  { description: 'Read a text file.', inputSchema: { path: z.string() } },
  async ({ path }) => text(readFileSync(inside(path), 'utf8')),
);
server.registerTool(
  'list_directory',
  { description: 'List a directory.', inputSchema: { path: z.string() } },
  async ({ path }) =>
    text(
      readdirSync(inside(path), { withFileTypes: true })
        .map((e) => `${e.isDirectory() ? '[DIR]' : '[FILE]'} ${e.name}`)
        .join('\n'),
    ),
);
server.registerTool(
  'write_file',
  { description: 'Write a text file.', inputSchema: { path: z.string(), content: z.string() } },
  async ({ path, content }) => {
    const p = inside(path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
    return text(`wrote ${path}`);
  },
);
server.registerTool(
  'list_allowed_directories',
  { description: 'List the directories this server may access.', inputSchema: {} },
  async () => text(`Allowed directories:\n${root}`),
);
await server.connect(new StdioServerTransport());
