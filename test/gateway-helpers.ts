/** Shared set-up for the gateway end-to-end tests: real upstream servers, the real runtime, the SDK client. */
import { resolve } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import { memoryApprovalStore } from '../src/approvals/memory.js';
import type { ApprovalStore } from '../src/approvals/types.js';
import { type GatewayConfig, parseConfig } from '../src/config/load.js';
import { McpGateway } from '../src/enforce/mcp/gateway.js';
import { MemoryRecorder } from '../src/enforce/mcp/open-layer.js';
import { MemoryToolPinStore, type ToolPinStore } from '../src/enforce/mcp/pins.js';
import type { GatewaySession } from '../src/enforce/mcp/session.js';
import { MemoryLimitStore } from '../src/limits/memory.js';
import { createExecLayer, type ExecLayer } from '../src/runtime/exec-layer.js';

const NM = resolve(import.meta.dirname, '../node_modules/@modelcontextprotocol');
export const EVERYTHING = `${NM}/server-everything/dist/index.js`;
export const FILESYSTEM = `${NM}/server-filesystem/dist/index.js`;
export const MEMORY = `${NM}/server-memory/dist/index.js`;
export const FIXTURES = resolve(import.meta.dirname, 'fixtures');
export const REPO = resolve(import.meta.dirname, '..');

export interface Layer {
  layer: ExecLayer;
  recorder: MemoryRecorder;
  approvals: ApprovalStore;
}

/** The real runtime over a policy object, with in-memory stores. */
export async function makeLayer(policy: Record<string, unknown>): Promise<Layer> {
  const recorder = new MemoryRecorder();
  const approvals = memoryApprovalStore();
  const layer = await createExecLayer({ policy, recorder, approvals, limits: new MemoryLimitStore() });
  return { layer, recorder, approvals };
}

/** A gateway config from a plain object (validated by the real loader). */
export function makeConfig(
  obj: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): GatewayConfig {
  return parseConfig(
    JSON.stringify({ policy: '/dev/null', store: 'memory:', ...obj }),
    '/tmp/execlayer-test.yaml',
    env,
  );
}

export interface Connected {
  client: Client;
  gateway: McpGateway;
  session: GatewaySession;
  logs: string[];
  close(): Promise<void>;
}

/** An in-process gateway for `agent`, with an SDK client connected to it in memory. */
export async function connectInProcess(
  l: Layer,
  config: GatewayConfig,
  agent: string,
  opts: { pins?: ToolPinStore; capabilities?: ClientCapabilities; setup?: (c: Client) => void } = {},
): Promise<Connected> {
  const logs: string[] = [];
  const gateway = new McpGateway(l.layer, config, {
    pins: opts.pins ?? new MemoryToolPinStore(),
    log: (x) => logs.push(x),
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  const session = await gateway.connect(b, { agent, transport: 'memory' });
  const client = new Client(
    { name: 'test-agent', version: '1.0.0' },
    { capabilities: opts.capabilities ?? {} },
  );
  opts.setup?.(client);
  await client.connect(a);
  return {
    client,
    gateway,
    session,
    logs,
    close: async () => {
      await client.close().catch(() => {});
      await gateway.close();
    },
  };
}

/** A direct SDK client to an upstream over stdio (the reference for "exactly what the direct call returns"). */
export async function connectDirect(
  command: string,
  args: string[],
  env: Record<string, string> = {},
  capabilities: ClientCapabilities = {},
) {
  const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');
  const client = new Client({ name: 'direct', version: '1.0.0' }, { capabilities });
  await client.connect(new StdioClientTransport({ command, args, env, stderr: 'ignore' }));
  return client;
}

/** Decision events recorded so far, as `tool:effect`. */
export function decisions(r: MemoryRecorder): string[] {
  return r.events.flatMap((e) => (e.type === 'decision' ? [`${e.action.tool}:${e.decision.effect}`] : []));
}

/** The text of the first content block of a tool result. */
export function text(result: unknown): string {
  const c = (result as { content?: Array<{ type: string; text?: string }> }).content;
  return c?.[0]?.text ?? '';
}
