/**
 * One agent's session with the gateway: an SDK `Server` facing the agent whose every handler asks the
 * decision function before anything reaches an upstream, and one `UpstreamConnection` per configured
 * upstream (per session, so server-to-client requests and notifications reach exactly this agent). Each
 * connection's tools are listed and pin-checked (`verify`) before that connection serves anything; the
 * catalog holds only the tools of connections that are ready, each entry tied to its generation.
 */
import { performance } from 'node:perf_hooks';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { UriTemplate } from '@modelcontextprotocol/sdk/shared/uriTemplate.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  CallToolResultSchema,
  CompleteRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  InitializeRequestSchema,
  type JSONRPCMessage,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  type Notification,
  PingRequestSchema,
  type Prompt,
  ReadResourceRequestSchema,
  type RequestId,
  type Resource,
  type ResourceTemplate,
  type Result,
  ResultSchema,
  RootsListChangedNotificationSchema,
  type ServerNotification,
  type ServerRequest,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  type Tool,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { ZodType } from 'zod';
import type { GatewayConfig } from '../../config/load.js';
import type { ExecLayer } from '../../runtime/exec-layer.js';
import { DECISION_META_KEY, decisionMeta, refusalText } from '../../runtime/refusal.js';
import type { Action, Decision, Json } from '../../types.js';
import { hashToolDefinition, type ToolPinStore } from './pins.js';
import { isObject } from './screen.js';
import {
  type RelayedMethod,
  UpstreamConnection,
  UpstreamError,
  type UpstreamState,
  type UpstreamStatus,
} from './upstream.js';

/** What the gateway needs from the runtime. */
export type GatewayLayer = Pick<
  ExecLayer,
  'authorize' | 'visible' | 'outcome' | 'waitForApproval' | 'recorder' | 'deliver'
>;

/** JSON-RPC error code for a policy refusal of a method that has no `isError` result form. */
export const POLICY_DENIED = -32003;

/** Upstream tool names the gateway exposes (the SDK's tool-name rule). Anything else is hidden. */
const TOOL_NAME = /^[A-Za-z0-9._-]{1,128}$/;
const PROMPT_NAME = /^[A-Za-z0-9._\-/]{1,128}$/;
const MAX_LIST_PAGES = 100;
/** Room for the JSON-RPC envelope around a result of `maxResultBytes` on an upstream's stdout. */
const ENVELOPE_BYTES = 4096;

/** Who the session belongs to: taken from the channel, never from a message. */
export interface SessionIdentity {
  agent: string;
  principal?: string;
  transport: 'stdio' | 'http' | 'memory';
  remote?: string;
}

/** Shared by all sessions of one gateway. */
export interface GatewayContext {
  layer: GatewayLayer;
  config: GatewayConfig;
  pins: ToolPinStore;
  log(line: string): void;
}

type PinState = 'ok' | 'changed' | 'invalid_name' | 'ambiguous' | 'pin_error';

interface ToolEntry {
  exposed: string;
  policyName: string;
  upstream: string;
  tool: Tool;
  hash: string;
  state: PinState;
}

/** The checked tools of one ready connection. */
interface Listing {
  generation: number;
  entries: ToolEntry[];
}

/** One upstream connection of one session, as the operator's status shows it. */
export interface SessionUpstreamStatus extends Omit<UpstreamStatus, 'state'> {
  /** `pin_mismatch`: ready, but at least one tool's definition differs from its pin and is held back. */
  state: UpstreamState | 'pin_mismatch';
  session: string;
  agent: string;
  /** Tools listed and checked on the ready connection. */
  tools: number;
  /** Listed tools that are withheld, and why. */
  heldBack: Array<{ tool: string; reason: Exclude<PinState, 'ok'> }>;
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;
/** What deciding and forwarding a call needs of its request: the SDK's extra, or the direct lane's. */
type CallExtra = Pick<Extra, 'signal' | 'requestId' | '_meta' | 'sendNotification'>;

/** The gateway's MCP server for one agent connection. */
export class GatewaySession {
  readonly server: Server;
  readonly upstreams = new Map<string, UpstreamConnection>();
  /** The checked tools per upstream, for the generation that serves (or is about to). */
  private readonly listings = new Map<string, Listing>();
  private catalogCache: { key: string; byName: Map<string, ToolEntry> } | undefined;
  private readonly uriOwners = new Map<string, string>();
  private readonly templates = new Map<string, UriTemplate[]>();
  private readonly subscriptions = new Map<string, string>();
  /** Agent requests in flight per upstream, so relayed server requests ride on the right HTTP stream. */
  private readonly active = new Map<string, RequestId[]>();
  private closed = false;
  private readonly outcomes = new Set<Promise<void>>();
  /** `tools/call` requests on the direct lane, by request id, for cancellation. */
  private readonly direct = new Map<RequestId, AbortController>();

  constructor(
    private readonly ctx: GatewayContext,
    readonly identity: SessionIdentity,
    readonly id: string,
  ) {
    this.server = new Server(
      { name: 'execlayer-gateway', version: '0.1.0' },
      {
        capabilities: {
          tools: { listChanged: true },
          resources: { subscribe: true, listChanged: true },
          prompts: { listChanged: true },
          completions: {},
          logging: {},
        },
        instructions:
          'ExecLayer gateway: tools are named <upstream>.<tool>. Every call is checked against policy; a refused call explains which rule refused it and what is allowed.',
      },
    );
    this.server.oninitialized = () => {
      // Start the upstreams so the first call does not pay for process start-up.
      this.ensureUpstreams();
    };
    this.server.onclose = () => void this.close();
    this.register();
  }

  /**
   * Connects the agent side. A well-formed `tools/call` with no `_meta` (so no progress token and no task)
   * takes a direct lane past the SDK's request machinery — two schema parses of the request, an
   * AbortController, a handler extra and a response chain per call — into the same `callTool`, and its
   * answer goes out on the same screened transport; its result is validated as the SDK validates it. Every
   * other request is first checked against its method's schema; one with malformed params (a `tools/call`
   * included) is refused here with invalid-params naming the field. The rest goes the SDK's way.
   */
  async connect(transport: Transport): Promise<void> {
    await this.server.connect(transport);
    const sdk = transport.onmessage;
    transport.onmessage = (msg, extra) => {
      if (this.directCall(transport, msg)) return;
      const why = 'method' in msg && 'id' in msg ? malformedRequest(msg) : undefined;
      if (why === undefined) sdk?.(msg, extra);
      else this.refuseParams(transport, (msg as { id: RequestId }).id, why);
    };
  }

  /** Answers a request whose params are malformed with invalid-params and `why`; nothing is decided. */
  private refuseParams(transport: Transport, id: RequestId, why: string): void {
    const error = { code: ErrorCode.InvalidParams, message: why };
    void transport.send({ jsonrpc: '2.0', id, error }).catch((err: unknown) => {
      this.ctx.log(`response to request ${String(id)} not sent: ${(err as Error).message}`);
    });
  }

  /** Takes `msg` on the direct lane when it qualifies (see `connect`); false leaves it to the SDK. */
  private directCall(transport: Transport, msg: JSONRPCMessage): boolean {
    if (!('method' in msg)) return false;
    if (msg.method === 'notifications/cancelled') {
      const id = (msg.params as { requestId?: unknown } | undefined)?.requestId;
      if (typeof id === 'string' || typeof id === 'number')
        this.direct.get(id)?.abort('cancelled by the agent');
      return false;
    }
    if (msg.method !== 'tools/call' || !('id' in msg) || this.closed) return false;
    const id = msg.id;
    const p = toolCallParams(msg.params);
    if (typeof p === 'string') {
      this.refuseParams(transport, id, `invalid tools/call request: ${p}`);
      return true;
    }
    if (p === undefined) return false;
    const ac = new AbortController();
    this.direct.set(id, ac);
    const extra: CallExtra = {
      signal: ac.signal,
      requestId: id,
      sendNotification: (n) =>
        ac.signal.aborted
          ? Promise.resolve()
          : transport.send({ jsonrpc: '2.0', ...n } as JSONRPCMessage, { relatedRequestId: id }),
    };
    void this.callTool(p, extra)
      .then(checkedResult)
      .then(
        (result) => (ac.signal.aborted ? undefined : transport.send({ jsonrpc: '2.0', id, result })),
        (err: unknown) =>
          ac.signal.aborted ? undefined : transport.send({ jsonrpc: '2.0', id, error: errorBody(err) }),
      )
      .catch((err: unknown) =>
        this.ctx.log(`response to request ${String(id)} not sent: ${(err as Error).message}`),
      )
      .finally(() => {
        if (this.direct.get(id) === ac) this.direct.delete(id);
      });
    return true;
  }

  private ensureUpstreams(): void {
    if (this.upstreams.size > 0 || this.closed) return;
    const caps = this.server.getClientCapabilities() ?? {};
    const mirrored: Record<string, unknown> = {};
    if (caps.sampling) mirrored.sampling = caps.sampling;
    if (caps.elicitation) mirrored.elicitation = caps.elicitation;
    if (caps.roots) mirrored.roots = caps.roots;
    const limits = {
      timeoutMs: this.ctx.config.limits.callTimeoutMs,
      maxMessageBytes: this.ctx.config.limits.maxResultBytes + ENVELOPE_BYTES,
    };
    for (const [name, cfg] of Object.entries(this.ctx.config.upstreams)) {
      const up = new UpstreamConnection(name, cfg, mirrored, limits, {
        relayRequest: (method, params, signal) => this.relay(name, method, params, signal),
        notify: (n) => this.fromUpstream(name, n),
        verify: (tools, generation) => this.verify(name, tools, generation),
        lost: (generation) => this.lost(name, generation),
        log: (line) => this.ctx.log(line),
      });
      this.upstreams.set(name, up);
    }
    for (const up of this.upstreams.values()) up.start();
  }

  /** Where every upstream connection of this session is (see `SessionUpstreamStatus`). */
  upstreamStatus(): SessionUpstreamStatus[] {
    return [...this.upstreams.values()].map((up) => {
      const s = up.status();
      const listing = this.listings.get(up.name);
      const current = up.isReady && listing?.generation === up.currentGeneration ? listing : undefined;
      const heldBack = (current?.entries ?? []).flatMap((e) =>
        e.state === 'ok' ? [] : [{ tool: e.policyName, reason: e.state }],
      );
      const mismatch = heldBack.some((h) => h.reason === 'changed');
      return {
        ...s,
        state: s.state === 'ready' && mismatch ? 'pin_mismatch' : s.state,
        session: this.id,
        agent: this.identity.agent,
        tools: current?.entries.length ?? 0,
        heldBack,
      };
    });
  }

  private upstream(name: string): UpstreamConnection {
    this.ensureUpstreams();
    const up = this.upstreams.get(name);
    if (!up) throw new McpError(ErrorCode.InvalidParams, `unknown upstream \`${name}\``);
    return up;
  }

  /**
   * Checks the tools of a new connection of `upstream` (names and pins, audit events for new and changed
   * definitions) and keeps them for `generation`. The connection serves nothing until this has returned.
   */
  private async verify(upstream: string, tools: Tool[], generation: number): Promise<void> {
    const expose = this.ctx.config.upstreams[upstream]?.expose ?? 'prefixed';
    const entries: ToolEntry[] = [];
    const seenHere = new Set<string>();
    for (const tool of tools) {
      const policyName = `${upstream}.${tool.name}`;
      const exposed = expose === 'bare' ? tool.name : policyName;
      const hash = hashToolDefinition(tool);
      let state: PinState = 'ok';
      if (!TOOL_NAME.test(tool.name)) state = 'invalid_name';
      else if (seenHere.has(tool.name)) state = 'ambiguous';
      else state = await this.pinState(policyName, hash);
      seenHere.add(tool.name);
      entries.push({ exposed, policyName, upstream, tool, hash, state });
    }
    for (const e of entries) {
      if (e.state === 'changed')
        this.ctx.log(`[${upstream}] ${e.policyName}: tool definition differs from its pin; held back`);
    }
    this.listings.set(upstream, { generation, entries });
    this.templates.delete(upstream);
    if (!this.closed) void this.server.sendToolListChanged().catch(() => {});
  }

  /** A connection of `upstream` stopped serving: its tools leave the catalog. */
  private lost(upstream: string, generation: number): void {
    if (this.listings.get(upstream)?.generation === generation) this.listings.delete(upstream);
    this.templates.delete(upstream);
    if (!this.closed) void this.server.sendToolListChanged().catch(() => {});
  }

  // ---------------------------------------------------------------------------------------------
  // Relays between the agent and the upstreams.

  private relatedRequest(upstream: string): RequestId | undefined {
    const list = this.active.get(upstream);
    return list?.[list.length - 1];
  }

  private async relay(
    upstream: string,
    method: RelayedMethod,
    params: unknown,
    signal: AbortSignal,
  ): Promise<Result> {
    const related = this.relatedRequest(upstream);
    return this.server.request({ method, params } as ServerRequest, ResultSchema, {
      signal,
      timeout: this.ctx.config.limits.callTimeoutMs,
      ...(related !== undefined ? { relatedRequestId: related } : {}),
    });
  }

  private fromUpstream(upstream: string, n: Notification): void {
    const related = this.relatedRequest(upstream);
    const opts = related !== undefined ? { relatedRequestId: related } : undefined;
    switch (n.method) {
      case 'notifications/resources/list_changed':
        this.templates.delete(upstream);
        void this.server.sendResourceListChanged().catch(() => {});
        return;
      case 'notifications/prompts/list_changed':
        void this.server.sendPromptListChanged().catch(() => {});
        return;
      case 'notifications/resources/updated': {
        const uri = (n.params as { uri?: unknown } | undefined)?.uri;
        // Only updates for resources this agent subscribed to (through a decided subscribe).
        if (typeof uri === 'string' && this.subscriptions.get(uri) === upstream) {
          void this.server.notification(n as ServerNotification, opts).catch(() => {});
        }
        return;
      }
      case 'notifications/message':
        void this.server.notification(n as ServerNotification, opts).catch(() => {});
        return;
      default:
        return;
    }
  }

  private track<T>(upstream: string, id: RequestId, run: () => Promise<T>): Promise<T> {
    let list = this.active.get(upstream);
    if (!list) {
      list = [];
      this.active.set(upstream, list);
    }
    list.push(id);
    return run().finally(() => {
      const l = this.active.get(upstream);
      const i = l?.lastIndexOf(id) ?? -1;
      if (l && i >= 0) l.splice(i, 1);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // The tool catalog: the checked tools of every ready connection, by exposed name.

  /**
   * Exposed name → tool, over the connections that are ready now (each listing only for the generation
   * it was checked for). Two tools exposed under one name are both withheld (collision rule).
   */
  private catalog(): Map<string, ToolEntry> {
    let key = '';
    const current: Listing[] = [];
    for (const up of this.upstreams.values()) {
      const listing = this.listings.get(up.name);
      if (!up.isReady || listing?.generation !== up.currentGeneration) continue;
      key += `${up.name}:${listing.generation};`;
      current.push(listing);
    }
    if (this.catalogCache?.key === key) return this.catalogCache.byName;
    const byName = new Map<string, ToolEntry>();
    const ambiguous = new Set<string>();
    for (const listing of current) {
      for (const e of listing.entries) {
        if (byName.has(e.exposed)) ambiguous.add(e.exposed);
        else byName.set(e.exposed, e);
      }
    }
    for (const name of ambiguous) {
      const e = byName.get(name);
      if (e) byName.set(name, { ...e, state: 'ambiguous' });
      this.ctx.log(`tool name \`${name}\` is exposed by more than one upstream tool; it is hidden`);
    }
    this.catalogCache = { key, byName };
    return byName;
  }

  /**
   * Waits (within the call timeout) for every upstream that is starting or being checked; one that is
   * backing off after a failure is not waited for. For listings, which show what is ready.
   */
  private async settledUpstreams(signal?: AbortSignal): Promise<void> {
    this.ensureUpstreams();
    const deadline = Date.now() + this.ctx.config.limits.callTimeoutMs;
    await Promise.all(
      [...this.upstreams.values()].map((up) =>
        up.ready({ deadline, ...(signal ? { signal } : {}) }).catch((err: unknown) => {
          if (!(err instanceof UpstreamError && err.code === 'upstream_unavailable'))
            this.ctx.log(`[${up.name}] tools unavailable: ${(err as Error).message}`);
        }),
      ),
    );
  }

  /** The ready connection of `up` (waiting through one restart within `deadline`), or why there is none. */
  private readyFor(
    up: UpstreamConnection,
    deadline: number,
    signal: AbortSignal,
  ): Promise<{ generation: number } | UpstreamError> | { generation: number } {
    // The common case without a detour through promises: the connection is ready.
    if (up.isReady) return { generation: up.currentGeneration };
    return up.ready({ deadline, signal, throughRetries: true }).then(
      (live) => ({ generation: live.generation }),
      (err: unknown) =>
        err instanceof UpstreamError ? err : new UpstreamError('upstream_failed', (err as Error).message),
    );
  }

  /** The upstream and policy name a tool name belongs to (by prefix, else the `bare` upstream). */
  private routeTool(exposed: string): { upstream: string; policyName: string } | undefined {
    let bare: string | undefined;
    for (const [name, cfg] of Object.entries(this.ctx.config.upstreams)) {
      if (cfg.expose === 'bare') bare = name;
      else if (exposed.startsWith(`${name}.`) && exposed.length > name.length + 1)
        return { upstream: name, policyName: exposed };
    }
    return bare !== undefined ? { upstream: bare, policyName: `${bare}.${exposed}` } : undefined;
  }

  private async pinState(policyName: string, hash: string): Promise<PinState> {
    const configured = this.ctx.config.pins[policyName];
    try {
      if (configured !== undefined) {
        if (configured === hash) return 'ok';
        await this.ctx.layer.recorder.record({
          type: 'tool',
          status: 'changed',
          tool: policyName,
          hash,
          previousHash: configured,
        });
        return 'changed';
      }
      const r = await this.ctx.pins.check(policyName, hash);
      if (r.status === 'pinned') {
        await this.ctx.layer.recorder.record({ type: 'tool', status: 'pinned', tool: policyName, hash });
        return 'ok';
      }
      if (r.status === 'match') return 'ok';
      if (r.firstSeen) {
        await this.ctx.layer.recorder.record({
          type: 'tool',
          status: 'changed',
          tool: policyName,
          hash,
          previousHash: r.pin.hash,
        });
      }
      return 'changed';
    } catch (err) {
      // INVARIANT: fail closed — a tool whose pin cannot be checked or recorded is withheld.
      this.ctx.log(`pin check for \`${policyName}\` failed: ${(err as Error).message}`);
      return 'pin_error';
    }
  }

  /** Re-reads the pin of a held-back tool (an operator may have approved it meanwhile). */
  private async refreshPin(e: ToolEntry): Promise<void> {
    if (e.state !== 'changed' || this.ctx.config.pins[e.policyName] !== undefined) return;
    try {
      const pin = await this.ctx.pins.get(e.policyName);
      if (pin?.hash === e.hash) e.state = 'ok';
    } catch {
      // stays held back
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Decisions.

  private action(tool: string, args: { [k: string]: Json }, upstream?: string): Action {
    const a: Action = { agent: this.identity.agent, tool, args, session: this.id };
    if (this.identity.principal !== undefined) a.onBehalfOf = this.identity.principal;
    const context: { [k: string]: Json } = { transport: this.identity.transport, point: 'mcp' };
    if (upstream) context.upstream = upstream;
    if (this.identity.remote) context.remote = this.identity.remote;
    a.context = context;
    return a;
  }

  /** Authorizes, and for `ask` either waits for the approval (then re-authorizes) or returns the ask. */
  private async settle(action: Action, extra: CallExtra): Promise<Decision> {
    const first = await this.ctx.layer.authorize(action, { point: 'mcp' });
    const { wait, maxWaitMs } = this.ctx.config.approvals;
    if (first.effect !== 'ask' || wait !== 'block' || !first.approvalId) return first;
    const token = extra._meta?.progressToken;
    const outcome = await this.ctx.layer.waitForApproval(first.approvalId, {
      timeoutMs: maxWaitMs,
      signal: extra.signal,
      onProgress: (elapsed) => {
        if (token === undefined) return;
        void extra
          .sendNotification({
            method: 'notifications/progress',
            params: {
              progressToken: token,
              progress: elapsed,
              message: `waiting for approval ${first.approvalId} (${Math.round(elapsed / 1000)} s)`,
            },
          })
          .catch(() => {});
      },
    });
    if (outcome !== 'granted') {
      return {
        ...first,
        reason: `${first.reason} (approval ${first.approvalId} ${outcome === 'timeout' ? `not decided within ${maxWaitMs} ms` : outcome})`,
      };
    }
    // The grant is bound to exactly this call; authorize consumes it and records the new decision.
    return this.ctx.layer.authorize(action, { point: 'mcp' });
  }

  /**
   * Records the outcome of an allowed action. Not awaited on the response path: the decision was made
   * durable before forwarding; the outcome follows (and `close` waits for all of them).
   */
  private finish(d: Decision, ok: boolean, started: number, error?: string, result?: unknown): Promise<void> {
    const p = this.ctx.layer
      .outcome(
        d,
        {
          ok,
          durationMs: performance.now() - started,
          ...(error !== undefined ? { error } : {}),
          ...(result !== undefined ? { result } : {}),
        },
        { lazy: true },
      )
      .catch((err: unknown) =>
        this.ctx.log(`outcome of decision ${d.id} not recorded: ${(err as Error).message}`),
      );
    this.outcomes.add(p);
    void p.finally(() => this.outcomes.delete(p));
    return Promise.resolve();
  }

  /** Runs a decided non-tool method: allowed → run and record the outcome; otherwise a protocol error. */
  private async decided<T extends Result>(
    tool: string,
    args: { [k: string]: Json },
    upstream: string,
    extra: Extra,
    run: () => Promise<T>,
  ): Promise<T> {
    const d = await this.settle(this.action(tool, args, upstream), extra);
    if (d.effect !== 'allow') {
      throw new McpError(POLICY_DENIED, refusalText(d), decisionMeta(d));
    }
    const started = performance.now();
    try {
      const r = await this.track(upstream, extra.requestId, run);
      await this.finish(d, true, started);
      return r;
    } catch (err) {
      await this.finish(d, false, started, (err as Error).message);
      throw toProtocolError(err);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Handlers.

  private register(): void {
    const s = this.server;
    s.setRequestHandler(ListToolsRequestSchema, async (_req, extra) => {
      await this.settledUpstreams(extra.signal);
      const cat = this.catalog();
      const tools: Tool[] = [];
      for (const e of cat.values()) {
        await this.refreshPin(e);
        // INVARIANT: hidden means uncallable — the same compiled policy decides list and call.
        if (e.state === 'ok' && this.ctx.layer.visible(this.identity.agent, e.policyName)) {
          tools.push({ ...e.tool, name: e.exposed });
        }
      }
      return { tools };
    });

    s.setRequestHandler(CallToolRequestSchema, (req, extra) => this.callTool(req.params, extra));

    s.setRequestHandler(ListResourcesRequestSchema, async (_req, extra) => {
      const resources: Resource[] = [];
      for (const up of this.withCapability()) {
        const items = await this.listEach(up, 'resources/list', 'resources', extra).catch(swallowDenied);
        for (const r of items as Resource[]) {
          if (typeof r?.uri === 'string') this.uriOwners.set(r.uri, up.name);
          resources.push(r);
        }
      }
      return { resources };
    });

    s.setRequestHandler(ListResourceTemplatesRequestSchema, async (_req, extra) => {
      const resourceTemplates: ResourceTemplate[] = [];
      for (const up of this.withCapability()) {
        const items = await this.listEach(up, 'resources/templates/list', 'resourceTemplates', extra).catch(
          swallowDenied,
        );
        resourceTemplates.push(...(items as ResourceTemplate[]));
      }
      return { resourceTemplates };
    });

    s.setRequestHandler(ReadResourceRequestSchema, async (req, extra) => {
      const uri = req.params.uri;
      const up = await this.routeUri(uri);
      const args = { uri };
      return this.decided(`${up}.resources/read`, args, up, extra, () =>
        this.upstream(up).request('resources/read', args, forwardOpts(extra)),
      );
    });

    s.setRequestHandler(SubscribeRequestSchema, async (req, extra) => {
      const uri = req.params.uri;
      const up = await this.routeUri(uri);
      const args = { uri };
      const r = await this.decided(`${up}.resources/subscribe`, args, up, extra, () =>
        this.upstream(up).request('resources/subscribe', args, forwardOpts(extra)),
      );
      this.subscriptions.set(uri, up);
      return r;
    });

    s.setRequestHandler(UnsubscribeRequestSchema, async (req, extra) => {
      // Undecided by design: it only narrows what this session receives, and only for its own subscriptions.
      const up = this.subscriptions.get(req.params.uri);
      if (!up) throw new McpError(ErrorCode.InvalidParams, `not subscribed to \`${req.params.uri}\``);
      this.subscriptions.delete(req.params.uri);
      return this.upstream(up).request('resources/unsubscribe', { uri: req.params.uri }, forwardOpts(extra));
    });

    s.setRequestHandler(ListPromptsRequestSchema, async (_req, extra) => {
      const prompts: Prompt[] = [];
      for (const up of this.withCapability()) {
        const expose = this.ctx.config.upstreams[up.name]?.expose ?? 'prefixed';
        const items = await this.listEach(up, 'prompts/list', 'prompts', extra).catch(swallowDenied);
        for (const p of items as Prompt[]) {
          if (typeof p?.name !== 'string' || !PROMPT_NAME.test(p.name)) continue;
          prompts.push({ ...p, name: expose === 'bare' ? p.name : `${up.name}.${p.name}` });
        }
      }
      return { prompts };
    });

    s.setRequestHandler(GetPromptRequestSchema, async (req, extra) => {
      const { upstream, name } = this.routePrompt(req.params.name);
      const args: { [k: string]: Json } = {
        name,
        arguments: (req.params.arguments ?? {}) as { [k: string]: Json },
      };
      deepFreeze(args);
      return this.decided(`${upstream}.prompts/get`, args, upstream, extra, () =>
        this.upstream(upstream).request('prompts/get', args, forwardOpts(extra)),
      );
    });

    s.setRequestHandler(CompleteRequestSchema, async (req, extra) => {
      const p = req.params;
      let upstream: string;
      let ref: { [k: string]: Json };
      if (p.ref.type === 'ref/prompt') {
        const r = this.routePrompt(p.ref.name);
        upstream = r.upstream;
        ref = { type: 'ref/prompt', name: r.name };
      } else {
        upstream = await this.routeUri(p.ref.uri);
        ref = { type: 'ref/resource', uri: p.ref.uri };
      }
      const args: { [k: string]: Json } = { ref, argument: p.argument as unknown as Json };
      if (p.context) args.context = p.context as unknown as Json;
      deepFreeze(args);
      return this.decided(`${upstream}.completion/complete`, args, upstream, extra, () =>
        this.upstream(upstream).request('completion/complete', args, forwardOpts(extra)),
      );
    });

    s.setRequestHandler(SetLevelRequestSchema, async (req) => {
      // Undecided by design: it only changes how much diagnostic output upstreams send to this agent.
      this.ensureUpstreams();
      await Promise.all(
        [...this.upstreams.values()].map(async (up) => {
          try {
            await up.ready({ deadline: Date.now() + this.ctx.config.limits.callTimeoutMs });
            if (up.serverCapabilities?.logging)
              await up.request('logging/setLevel', { level: req.params.level });
          } catch (err) {
            this.ctx.log(`[${up.name}] logging/setLevel failed: ${(err as Error).message}`);
          }
        }),
      );
      return {};
    });

    s.setNotificationHandler(RootsListChangedNotificationSchema, async () => {
      for (const up of this.upstreams.values()) {
        void up.notification({ method: 'notifications/roots/list_changed' }).catch(() => {});
      }
    });
  }

  private withCapability(): UpstreamConnection[] {
    this.ensureUpstreams();
    return [...this.upstreams.values()];
  }

  /** Lists every page of one upstream's `method`, decided as `<upstream>.<method>`. */
  private async listEach(
    up: UpstreamConnection,
    method: string,
    key: string,
    extra: Extra,
  ): Promise<unknown[]> {
    try {
      await up.ready({ deadline: Date.now() + this.ctx.config.limits.callTimeoutMs });
    } catch {
      return [];
    }
    const cap = method.startsWith('prompts') ? 'prompts' : 'resources';
    if (!up.serverCapabilities?.[cap]) return [];
    return this.decided(`${up.name}.${method}`, {}, up.name, extra, async () => {
      const out: unknown[] = [];
      let cursor: string | undefined;
      for (let i = 0; i < MAX_LIST_PAGES; i++) {
        const r = (await up.request(method, cursor ? { cursor } : undefined, forwardOpts(extra))) as Record<
          string,
          unknown
        >;
        const items = r[key];
        if (Array.isArray(items)) out.push(...items);
        if (typeof r.nextCursor !== 'string' || r.nextCursor === '') break;
        cursor = r.nextCursor;
      }
      return { items: out } as Result;
    }).then((r) => (r as { items: unknown[] }).items);
  }

  private routePrompt(exposed: string): { upstream: string; name: string } {
    this.ensureUpstreams();
    for (const [name, cfg] of Object.entries(this.ctx.config.upstreams)) {
      if (cfg.expose === 'bare') continue;
      if (exposed.startsWith(`${name}.`)) return { upstream: name, name: exposed.slice(name.length + 1) };
    }
    const bare = Object.entries(this.ctx.config.upstreams).find(([, c]) => c.expose === 'bare');
    if (bare) return { upstream: bare[0], name: exposed };
    throw new McpError(
      ErrorCode.InvalidParams,
      `unknown prompt \`${exposed}\`: prompts are named <upstream>.<prompt>`,
    );
  }

  /** Which upstream serves a resource URI: the one that listed it, or whose template matches it. */
  private async routeUri(uri: string): Promise<string> {
    const owner = this.uriOwners.get(uri);
    if (owner) return owner;
    this.ensureUpstreams();
    const candidates: string[] = [];
    const withResources: string[] = [];
    for (const up of this.upstreams.values()) {
      try {
        await up.ready({ deadline: Date.now() + this.ctx.config.limits.callTimeoutMs });
      } catch {
        continue;
      }
      if (!up.serverCapabilities?.resources) continue;
      withResources.push(up.name);
      let tpls = this.templates.get(up.name);
      if (!tpls) {
        tpls = [];
        try {
          const r = (await up.request('resources/templates/list', undefined)) as {
            resourceTemplates?: unknown;
          };
          for (const t of Array.isArray(r.resourceTemplates) ? r.resourceTemplates : []) {
            const tpl = (t as { uriTemplate?: unknown }).uriTemplate;
            if (typeof tpl === 'string') {
              try {
                tpls.push(new UriTemplate(tpl));
              } catch {
                // an unparsable template routes nothing
              }
            }
          }
        } catch {
          // no templates
        }
        this.templates.set(up.name, tpls);
      }
      if (tpls.some((t) => t.match(uri) !== null)) candidates.push(up.name);
    }
    if (candidates.length === 1) return candidates[0]!;
    if (candidates.length === 0 && withResources.length === 1) return withResources[0]!;
    throw new McpError(
      ErrorCode.InvalidParams,
      candidates.length > 1
        ? `resource \`${uri}\` matches templates of several upstreams (${candidates.join(', ')}); list resources first`
        : `no upstream serves resource \`${uri}\`: list resources first`,
    );
  }

  // ---------------------------------------------------------------------------------------------
  // tools/call

  private async callTool(
    params: { name: string; arguments?: Record<string, unknown> | undefined; _meta?: unknown },
    extra: CallExtra,
  ): Promise<CallToolResult> {
    const limits = this.ctx.config.limits;
    const name = params.name;
    const args = (params.arguments ?? {}) as { [k: string]: Json };
    const argBytes = Buffer.byteLength(JSON.stringify(args));
    if (argBytes > limits.maxArgBytes) {
      throw new McpError(
        ErrorCode.InvalidParams,
        `arguments of \`${name}\` are ${argBytes} bytes; the limit is ${limits.maxArgBytes}`,
      );
    }
    // INVARIANT: one canonical parse — the frozen object decided below is the object forwarded.
    deepFreeze(args);
    const route = this.routeTool(name);
    const up = route ? this.upstream(route.upstream) : undefined;
    // INVARIANT: nothing half-loaded serves calls — the tool is looked up only in the listing of a ready
    // connection (listed and pin-checked), and forwarded only on that connection's generation.
    let deadline = Date.now() + limits.callTimeoutMs;
    let live = up ? await this.readyFor(up, deadline, extra.signal) : undefined;
    let entry = live instanceof UpstreamError ? undefined : this.catalog().get(name);
    const policyName =
      entry?.policyName ?? (live instanceof UpstreamError ? route?.policyName : name) ?? name;
    const d = await this.settle(this.action(policyName, args, route?.upstream), extra);
    if (d.effect === 'deny') return refusal(d);
    if (d.effect === 'ask') return refusal(d);

    const started = performance.now();
    const token = extra._meta?.progressToken;
    deadline = Date.now() + limits.callTimeoutMs;
    const opts: Parameters<UpstreamConnection['request']>[2] = { signal: extra.signal, deadline };
    // Progress is relayed in order and flushed before the result, so none arrives after the response.
    let relayed: Promise<void> = Promise.resolve();
    if (token !== undefined) {
      opts.onprogress = (p) => {
        relayed = relayed.then(() =>
          extra
            .sendNotification({ method: 'notifications/progress', params: { ...p, progressToken: token } })
            .catch(() => {}),
        );
      };
    }
    let result: Result | undefined;
    for (;;) {
      if (live instanceof UpstreamError) {
        // Not ready within the call timeout, or backing off: the reason says which, and why.
        await this.finish(d, false, started, live.message);
        return errorResult(live.message, d);
      }
      if (entry && entry.state !== 'ok') await this.refreshPin(entry);
      if (entry && entry.state !== 'ok') {
        const why = pinReason(entry);
        await this.finish(d, false, started, why);
        return errorResult(why, d);
      }
      if (!up || !entry || entry.upstream !== up.name || entry.policyName !== policyName) {
        await this.finish(d, false, started, 'unknown tool');
        throw new McpError(ErrorCode.InvalidParams, `unknown tool \`${name}\``);
      }
      const call = { name: entry.tool.name, arguments: args };
      try {
        const generation = live?.generation;
        result = await this.track(up.name, extra.requestId, () =>
          up.request('tools/call', call, generation === undefined ? opts : { ...opts, generation }),
        );
        break;
      } catch (err) {
        if (err instanceof UpstreamError && err.code === 'upstream_restarted') {
          // Restarted or re-checked since the lookup, so nothing was sent: look again on the new listing.
          live = await this.readyFor(up, deadline, extra.signal);
          entry = live instanceof UpstreamError ? undefined : this.catalog().get(name);
          continue;
        }
        await relayed;
        const msg =
          err instanceof UpstreamError && err.code === 'upstream_result_too_large'
            ? tooLarge(name, err.bytes, limits.maxResultBytes)
            : (err as Error).message;
        await this.finish(d, false, started, msg);
        if (err instanceof McpError && !(err instanceof UpstreamError)) {
          // The upstream answered with a JSON-RPC error: pass it through as the direct call would see it.
          throw err;
        }
        return errorResult(msg, d);
      }
    }
    await relayed;
    const resultBytes = Buffer.byteLength(JSON.stringify(result));
    if (resultBytes > limits.maxResultBytes) {
      const why = tooLarge(name, resultBytes, limits.maxResultBytes);
      await this.finish(d, false, started, why);
      return errorResult(why, d);
    }
    // The flow policy sees the result before the agent does: labelled, withheld items removed, the
    // session's label delta durable. A result it cannot account for is not shown (fail closed).
    const seen = await this.ctx.layer.deliver(d, { result });
    await this.finish(
      d,
      seen.ok && !(result as CallToolResult).isError,
      started,
      seen.ok ? undefined : seen.reason,
      result,
    );
    return seen.ok ? (seen.result as CallToolResult) : errorResult(seen.reason, d);
  }

  /** Closes the agent side and every upstream of this session. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ac of this.direct.values()) ac.abort('session closed');
    await Promise.all([...this.upstreams.values()].map((u) => u.close()));
    await Promise.all([...this.outcomes]);
    await this.server.close().catch(() => {});
  }
}

/**
 * The params of a `tools/call` for the direct lane: the call, or why the params are malformed, or undefined
 * when they carry `_meta` or a task (progress and tasks are the SDK's).
 */
function toolCallParams(
  p: unknown,
): { name: string; arguments: Record<string, unknown> | undefined } | string | undefined {
  if (!isObject(p)) return '`params` must be an object';
  if (typeof p.name !== 'string') return '`params.name` must be a string';
  if (p.arguments !== undefined && !isObject(p.arguments)) return '`params.arguments` must be an object';
  if (p._meta !== undefined || p.task !== undefined) return undefined;
  return { name: p.name, arguments: p.arguments };
}

/** The request schemas of the methods a session answers, by method. */
const REQUEST_SCHEMAS: ReadonlyMap<string, ZodType> = new Map(
  [
    InitializeRequestSchema,
    PingRequestSchema,
    ListToolsRequestSchema,
    CallToolRequestSchema,
    ListResourcesRequestSchema,
    ListResourceTemplatesRequestSchema,
    ReadResourceRequestSchema,
    SubscribeRequestSchema,
    UnsubscribeRequestSchema,
    ListPromptsRequestSchema,
    GetPromptRequestSchema,
    CompleteRequestSchema,
    SetLevelRequestSchema,
  ].map((schema) => [schema.shape.method.value, schema as ZodType]),
);

/**
 * Why a request's params do not fit its method's schema (the first problem, with its field), or undefined
 * when they fit or the method is not one of ours. The SDK's own parse would answer internal-error with its
 * validator's dump; an agent gets invalid-params that names the field instead.
 */
export function malformedRequest(msg: { method: string }): string | undefined {
  const schema = REQUEST_SCHEMAS.get(msg.method);
  const r = schema?.safeParse(msg);
  if (!r || r.success) return undefined;
  const issue = r.error.issues[0];
  const path = issue?.path.length ? `\`${issue.path.join('.')}\`: ` : '';
  const what = (issue?.message ?? 'malformed').replace(/^Invalid input: /, '').toLowerCase();
  return `invalid ${msg.method} request: ${path}${what}`;
}

/** A `tools/call` result as the SDK's server checks it before answering (same error when it is not one). */
function checkedResult(result: CallToolResult): CallToolResult {
  const r = CallToolResultSchema.safeParse(result);
  if (!r.success)
    throw new McpError(ErrorCode.InvalidParams, `Invalid tools/call result: ${r.error.message}`);
  return r.data;
}

/** The JSON-RPC error body the SDK's server sends for a handler's error. */
function errorBody(err: unknown): { code: number; message: string; data?: unknown } {
  const e = err as { code?: unknown; message?: unknown; data?: unknown } | null;
  return {
    code: Number.isSafeInteger(e?.code) ? (e?.code as number) : ErrorCode.InternalError,
    message: typeof e?.message === 'string' ? e.message : 'Internal error',
    ...(e?.data !== undefined ? { data: e.data } : {}),
  };
}

function forwardOpts(extra: Extra): { signal: AbortSignal } {
  return { signal: extra.signal };
}

function swallowDenied(err: unknown): unknown[] {
  // A list an agent may not see contributes nothing; other failures are real errors.
  if (err instanceof McpError && err.code === POLICY_DENIED) return [];
  throw err;
}

function toProtocolError(err: unknown): McpError {
  if (err instanceof McpError) return err;
  return new McpError(ErrorCode.InternalError, (err as Error)?.message ?? 'upstream failed');
}

function refusal(d: Decision): CallToolResult {
  return {
    content: [{ type: 'text', text: refusalText(d) }],
    isError: true,
    _meta: { [DECISION_META_KEY]: decisionMeta(d) },
  };
}

function errorResult(text: string, d: Decision): CallToolResult {
  return {
    content: [{ type: 'text', text }],
    isError: true,
    _meta: { [DECISION_META_KEY]: decisionMeta(d) },
  };
}

/** The documented "result too large" refusal of a `tools/call` result. */
function tooLarge(tool: string, bytes: number | undefined, limit: number): string {
  const size = bytes === undefined ? 'more than the limit' : `${bytes} bytes`;
  return `result too large: \`${tool}\` returned ${size}; the limit is ${limit} bytes (limits.maxResultBytes)`;
}

function pinReason(e: ToolEntry): string {
  switch (e.state) {
    case 'changed':
      return `tool definition changed: \`${e.policyName}\` differs from its pinned definition and is held back; an operator can review and approve it with \`execlayer tools approve ${e.policyName}\``;
    case 'invalid_name':
      return `tool \`${e.policyName}\` has a name the gateway does not expose`;
    case 'ambiguous':
      return `tool name \`${e.exposed}\` is ambiguous (several upstream tools share it); it is withheld`;
    default:
      return `tool \`${e.policyName}\` could not be pin-checked; it is withheld`;
  }
}

function deepFreeze(v: unknown): void {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
}
