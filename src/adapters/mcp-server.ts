/**
 * ExecLayer for MCP server authors (`@modelcontextprotocol/sdk`): one call protects an `McpServer` or a
 * low-level `Server`. Each `tools/call` is authorized with the identity of the connection before the
 * tool handler runs, and `tools/list` shows each agent only the tools it may call.
 *
 * @example
 * ```ts
 * import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
 * import { createExecLayer } from 'execlayer';
 * import { protectMcpServer } from 'execlayer/adapters/mcp-server';
 *
 * const layer = await createExecLayer({ policy: './policy.yaml' });
 * const server = new McpServer({ name: 'crm', version: '1.0.0' });
 * server.registerTool('read_customer', { inputSchema: { id: z.string() } }, readCustomer);
 * protectMcpServer(server, layer, { agent: (extra) => extra.authInfo?.clientId, prefix: 'crm.' });
 * ```
 *
 * A refused call never reaches the handler: the client gets a `CallToolResult` with `isError: true`,
 * the refusal reason as its text, and the decision under `_meta['execlayer.dev/decision']`.
 * Tools registered after `protectMcpServer` are protected too.
 */

import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { ExecLayer } from '../runtime/exec-layer.js';
import type { Decision } from '../types.js';
import {
  AdapterError,
  type AdapterOptions,
  authorizeCall,
  DECISION_META_KEY,
  decisionMeta,
  deliverResult,
  recordFailure,
  recordOutcome,
  toAction,
} from './shared.js';

/** What a request handler knows about the request: transport, session and `authInfo`. */
export type McpRequestExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** The part of an ExecLayer the MCP middleware calls. */
export type McpAdapterLayer = Pick<
  ExecLayer,
  'authorize' | 'outcome' | 'waitForApproval' | 'visible' | 'recorder'
> &
  Partial<Pick<ExecLayer, 'deliver'>>;

/** Options for {@link protectMcpServer}. */
export interface McpServerAdapterOptions {
  /**
   * The agent id for a request, from the authenticated channel (`extra.authInfo`, the transport, the
   * process that launched a stdio server) — never from tool arguments. Return `undefined` when the
   * caller is not authenticated: every call is then refused and the list is empty.
   */
  agent: (extra: McpRequestExtra) => string | undefined;
  /** Session id for a request; defaults to the transport's `extra.sessionId`. */
  session?: (extra: McpRequestExtra) => string | undefined;
  /** Prepended to each MCP tool name to form the policy tool name (`crm.` + `read_customer`). */
  prefix?: string;
  /** See {@link AdapterOptions.approvalTimeoutMs}. */
  approvalTimeoutMs?: number;
  /** See {@link AdapterOptions.onDecision}. */
  onDecision?: AdapterOptions['onDecision'];
}

export {
  AdapterError,
  /** @deprecated Use {@link AdapterError}. */
  AdapterError as McpServerAdapterError,
  type AdapterErrorCode,
  DECISION_META_KEY,
} from './shared.js';

type RawHandler = (request: RawRequest, extra: McpRequestExtra) => Promise<unknown>;
interface RawRequest {
  method: string;
  params?: { name?: unknown; arguments?: unknown; [key: string]: unknown };
}
/** The SDK's protocol internals this middleware hooks: its method → handler table and fallback. */
interface ProtocolInternals {
  _requestHandlers: Map<string, RawHandler>;
  fallbackRequestHandler?: RawHandler;
}

const PROTECTED = Symbol.for('execlayer.protected');

/**
 * Protects `server` in place and returns it. Works with the high-level `McpServer` and the low-level
 * `Server`, for handlers registered before or after this call. Throws {@link AdapterError}
 * if the server is already protected or is not an MCP SDK server.
 */
export function protectMcpServer<S extends McpServer | Server>(
  server: S,
  layer: McpAdapterLayer,
  opts: McpServerAdapterOptions,
): S {
  const low = ('server' in server ? server.server : server) as unknown as ProtocolInternals & {
    [PROTECTED]?: boolean;
  };
  if (!(low._requestHandlers instanceof Map)) {
    // INVARIANT: fail closed — if the SDK changed shape, refuse to start rather than serve unprotected.
    throw new AdapterError(
      'unsupported_server',
      'the server is not a `@modelcontextprotocol/sdk` `McpServer` or `Server` this version of execlayer can protect',
    );
  }
  if (low[PROTECTED]) {
    throw new AdapterError(
      'already_protected',
      'this server is already protected by execlayer; protecting it twice would count every call twice',
    );
  }
  low[PROTECTED] = true;

  const callTool =
    (inner: RawHandler): RawHandler =>
    (request, extra) =>
      protectedCall(layer, opts, inner, request, extra);
  const listTools =
    (inner: RawHandler): RawHandler =>
    (request, extra) =>
      filteredList(layer, opts, inner, request, extra);
  // Look up on every request, so handlers set later (McpServer registers lazily) and the fallback
  // handler are covered too.
  const original = low._requestHandlers;
  const table = new (class extends Map<string, RawHandler> {
    override get(method: string): RawHandler | undefined {
      const inner =
        super.get(method) ?? (method.startsWith('tools/') ? low.fallbackRequestHandler : undefined);
      if (!inner) return undefined;
      if (method === 'tools/call') return callTool(inner);
      if (method === 'tools/list') return listTools(inner);
      return inner;
    }
  })(original);
  low._requestHandlers = table;
  return server;
}

async function protectedCall(
  layer: McpAdapterLayer,
  opts: McpServerAdapterOptions,
  inner: RawHandler,
  request: RawRequest,
  extra: McpRequestExtra,
): Promise<unknown> {
  const name = request.params?.name;
  if (typeof name !== 'string')
    return refusedResult('invalid tool call: `params.name` must be a string', null);
  const agent = resolveAgent(opts, extra);
  if (!agent) {
    await recordAuthFailure(layer, `tools/call \`${name}\` without an authenticated agent`);
    return refusedResult(
      `unauthenticated: this connection has no agent identity, so \`${name}\` was refused`,
      null,
    );
  }
  const session = safeCall(() => (opts.session ? opts.session(extra) : extra.sessionId));
  const adapterOpts: AdapterOptions = { agent, prefix: opts.prefix ?? '' };
  if (session) adapterOpts.session = session;
  if (opts.approvalTimeoutMs !== undefined) adapterOpts.approvalTimeoutMs = opts.approvalTimeoutMs;
  if (opts.onDecision) adapterOpts.onDecision = opts.onDecision;
  const args = request.params?.arguments ?? {};
  const verdict = await authorizeCall(
    layer,
    toAction(adapterOpts, name, args),
    adapterOpts,
    'mcp',
    extra.signal,
  );
  if (!verdict.allowed) return refusedResult(verdict.message, verdict.decision);

  const started = performance.now();
  let result: unknown;
  try {
    result = await inner(request, extra);
  } catch (error) {
    await recordFailure(layer, verdict.decision, error, started);
    throw error;
  }
  const isError =
    typeof result === 'object' && result !== null && (result as CallToolResult).isError === true;
  let delivered: unknown;
  try {
    delivered = await deliverResult(layer, verdict.decision, result, started);
  } catch (error) {
    return refusedResult((error as Error).message, verdict.decision);
  }
  await recordOutcome(layer, verdict.decision, {
    ok: !isError,
    ...(isError ? { error: 'the tool returned isError' } : {}),
    result,
    durationMs: performance.now() - started,
  });
  return delivered;
}

async function filteredList(
  layer: McpAdapterLayer,
  opts: McpServerAdapterOptions,
  inner: RawHandler,
  request: RawRequest,
  extra: McpRequestExtra,
): Promise<unknown> {
  const agent = resolveAgent(opts, extra);
  const result = (await inner(request, extra)) as { tools?: { name: string }[] };
  // INVARIANT: hidden means uncallable — the list uses the same compiled policy as tools/call.
  const tools = (result.tools ?? []).filter((tool) => {
    if (!agent) return false;
    try {
      return layer.visible(agent, `${opts.prefix ?? ''}${tool.name}`);
    } catch {
      return false;
    }
  });
  if (!agent) await recordAuthFailure(layer, 'tools/list without an authenticated agent');
  return { ...result, tools };
}

function resolveAgent(opts: McpServerAdapterOptions, extra: McpRequestExtra): string | undefined {
  const agent = safeCall(() => opts.agent(extra));
  return typeof agent === 'string' && agent.length > 0 ? agent : undefined;
}

function safeCall<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

async function recordAuthFailure(layer: McpAdapterLayer, reason: string): Promise<void> {
  try {
    await layer.recorder.record({ type: 'auth', status: 'rejected', point: 'mcp', reason });
  } catch {
    // The request is refused either way; a lost auth record must not turn into an allow.
  }
}

function refusedResult(message: string, decision: Decision | null): CallToolResult {
  const result: CallToolResult = { content: [{ type: 'text', text: message }], isError: true };
  if (decision) result._meta = { [DECISION_META_KEY]: decisionMeta(decision) };
  return result;
}
