/**
 * One agent's session with the gateway: an SDK `Server` facing the agent whose every handler asks the
 * decision function before anything reaches an upstream, routing each request to the upstream that serves
 * it. The upstreams come from the gateway's pool (pool.ts): shared by every session unless marked
 * `stateful`; what they send back reaches this session only when it is this session's. The tools the agent
 * sees and may call are the catalog's (catalog.ts): the checked listings of the ready connections, filtered
 * by the policy.
 */
import { performance } from 'node:perf_hooks';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { UriTemplate } from '@modelcontextprotocol/sdk/shared/uriTemplate.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  CompleteRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  type Notification,
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
import { DECISION_META_KEY, decisionMeta, refusalText } from '../../runtime/refusal.js';
import type { Action, Decision, Json } from '../../types.js';
import {
  declaredArgs,
  type Listing,
  mergeListings,
  type PinState,
  PROMPT_NAME,
  pinReason,
  refreshPin,
  routePrompt,
  routeTool,
  type ToolEntry,
} from './catalog.js';
import type { GatewayContext } from './context.js';
import type { PooledUpstream, UpstreamPool, UpstreamSession } from './pool.js';
import {
  type UpstreamConnection,
  UpstreamError,
  type UpstreamState,
  type UpstreamStatus,
} from './upstream.js';

export type { GatewayContext, GatewayLayer } from './context.js';

/** JSON-RPC error code for a policy refusal of a method that has no `isError` result form. */
export const POLICY_DENIED = -32003;

const MAX_LIST_PAGES = 100;

/** Who the session belongs to: taken from the channel, never from a message. */
export interface SessionIdentity {
  agent: string;
  principal?: string;
  transport: 'stdio' | 'http' | 'memory';
  remote?: string;
}

/** One upstream connection of one session, as the operator's status shows it. */
export interface SessionUpstreamStatus extends Omit<UpstreamStatus, 'state'> {
  /** `pin_mismatch`: ready, but at least one tool's definition differs from its pin and is held back. */
  state: UpstreamState | 'pin_mismatch';
  session: string;
  agent: string;
  /** True when every session of the gateway uses this connection (the upstream is not `stateful`). */
  shared: boolean;
  /** Tools listed and checked on the ready connection. */
  tools: number;
  /** Listed tools that are withheld, and why. */
  heldBack: Array<{ tool: string; reason: Exclude<PinState, 'ok'> }>;
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** The gateway's MCP server for one agent connection. */
export class GatewaySession {
  readonly server: Server;
  /** This session's upstreams by name: the pool's shared ones and its own stateful ones. */
  readonly upstreams = new Map<string, PooledUpstream>();
  private attached = false;
  private readonly routed: UpstreamSession;
  private catalogCache: { key: string; byName: Map<string, ToolEntry> } | undefined;
  private readonly uriOwners = new Map<string, string>();
  private readonly templates = new Map<string, UriTemplate[]>();
  /** Resource URI → the upstream this session subscribed to it through. */
  private readonly subscriptions = new Map<string, string>();
  private closed = false;
  private readonly outcomes = new Set<Promise<void>>();

  constructor(
    private readonly ctx: GatewayContext,
    private readonly pool: UpstreamPool,
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
    this.routed = this.routedTo();
    this.server.oninitialized = () => {
      // Start the upstreams so the first call does not pay for process start-up.
      this.ensureUpstreams();
    };
    this.server.onclose = () => void this.close();
    this.register();
  }

  /**
   * Connects the agent side. The SDK's `Server` owns `transport` from here on: every request goes through
   * its request handling to the handlers registered below, one path per method. `transport` is the
   * message screen (screen.ts) around the real transport, which refuses malformed messages first.
   */
  async connect(transport: Transport): Promise<void> {
    await this.server.connect(transport);
  }

  /** Takes this session's upstreams from the pool (once): shared ones start only if they have not yet. */
  private ensureUpstreams(): void {
    if (this.attached || this.closed) return;
    this.attached = true;
    const caps = this.server.getClientCapabilities() ?? {};
    // A stateful upstream's own connection declares what this agent declares; shared ones, see pool.ts.
    const mirrored: Record<string, unknown> = {};
    if (caps.sampling) mirrored.sampling = caps.sampling;
    if (caps.elicitation) mirrored.elicitation = caps.elicitation;
    if (caps.roots) mirrored.roots = caps.roots;
    for (const [name, up] of this.pool.attach(this.routed, mirrored)) this.upstreams.set(name, up);
  }

  /** What the pool routes to this session. */
  private routedTo(): UpstreamSession {
    return {
      id: this.id,
      toolsChanged: (upstream) => {
        this.templates.delete(upstream);
        if (!this.closed) void this.server.sendToolListChanged().catch(() => {});
      },
      notify: (upstream, n, related) => this.fromUpstream(upstream, n, related),
      relay: (method, params, signal, related) =>
        this.server.request({ method, params } as ServerRequest, ResultSchema, {
          signal,
          timeout: this.ctx.config.limits.callTimeoutMs,
          ...(related !== undefined ? { relatedRequestId: related } : {}),
        }),
    };
  }

  /** Where every upstream connection of this session is (see `SessionUpstreamStatus`). */
  upstreamStatus(): SessionUpstreamStatus[] {
    return [...this.upstreams.values()].map((up) => {
      const s = up.connection.status();
      const current = up.current;
      const heldBack = (current?.entries ?? []).flatMap((e) =>
        e.state === 'ok' ? [] : [{ tool: e.policyName, reason: e.state }],
      );
      const mismatch = heldBack.some((h) => h.reason === 'changed');
      return {
        ...s,
        state: s.state === 'ready' && mismatch ? 'pin_mismatch' : s.state,
        session: this.id,
        agent: this.identity.agent,
        shared: up.shared,
        tools: current?.entries.length ?? 0,
        heldBack,
      };
    });
  }

  private upstream(name: string): PooledUpstream {
    this.ensureUpstreams();
    const up = this.upstreams.get(name);
    if (!up) throw new McpError(ErrorCode.InvalidParams, `unknown upstream \`${name}\``);
    return up;
  }

  // ---------------------------------------------------------------------------------------------
  // What upstreams send back.

  /** A notification the pool routed to this session (see pool.ts for which reach which session). */
  private fromUpstream(upstream: string, n: Notification, related: RequestId | undefined): void {
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

  /** Runs one agent request on `upstream`, known to the pool as this session's while in flight. */
  private track<T>(upstream: string, id: RequestId, run: () => Promise<T>): Promise<T> {
    return this.upstream(upstream).track(this.id, id, run);
  }

  // ---------------------------------------------------------------------------------------------
  // The tool catalog: the checked tools of every ready connection, by exposed name.

  /** Exposed name → tool over this session's ready connections (cached per set of generations). */
  private catalog(): Map<string, ToolEntry> {
    let key = '';
    const current: Listing[] = [];
    for (const up of this.upstreams.values()) {
      const listing = up.current;
      if (!listing) continue;
      key += `${up.name}:${listing.generation};`;
      current.push(listing);
    }
    if (this.catalogCache?.key === key) return this.catalogCache.byName;
    const byName = mergeListings(current, this.ctx.log);
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
      [...this.upstreams.values()].map(({ connection: up }) =>
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

  // ---------------------------------------------------------------------------------------------
  // Decisions.

  private action(tool: string, args: { [k: string]: Json }, upstream?: string, declared?: string[]): Action {
    const a: Action = { agent: this.identity.agent, tool, args, session: this.id };
    if (declared !== undefined) a.declaredArgs = declared;
    if (this.identity.principal !== undefined) a.onBehalfOf = this.identity.principal;
    const context: { [k: string]: Json } = { transport: this.identity.transport, point: 'mcp' };
    if (upstream) context.upstream = upstream;
    if (this.identity.remote) context.remote = this.identity.remote;
    a.context = context;
    return a;
  }

  /** Authorizes, and for `ask` either waits for the approval (then re-authorizes) or returns the ask. */
  private async settle(action: Action, extra: Extra): Promise<Decision> {
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
      // A suspended agent can call nothing, so it is shown nothing (hidden means uncallable, both ways).
      if (await this.ctx.layer.stopped(this.identity.agent)) return { tools: [] };
      await this.settledUpstreams(extra.signal);
      const cat = this.catalog();
      const tools: Tool[] = [];
      for (const e of cat.values()) {
        await refreshPin(this.ctx, e);
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
        this.upstream(up).connection.request('resources/read', args, forwardOpts(extra)),
      );
    });

    s.setRequestHandler(SubscribeRequestSchema, async (req, extra) => {
      const uri = req.params.uri;
      const up = await this.routeUri(uri);
      const args = { uri };
      const r = await this.decided(`${up}.resources/subscribe`, args, up, extra, () =>
        this.upstream(up).connection.request('resources/subscribe', args, forwardOpts(extra)),
      );
      this.subscriptions.set(uri, up);
      return r;
    });

    s.setRequestHandler(UnsubscribeRequestSchema, async (req, extra) => {
      // Undecided by design: it only narrows what this session receives, and only for its own subscriptions.
      const up = this.subscriptions.get(req.params.uri);
      if (!up) throw new McpError(ErrorCode.InvalidParams, `not subscribed to \`${req.params.uri}\``);
      this.subscriptions.delete(req.params.uri);
      return this.upstream(up).connection.request(
        'resources/unsubscribe',
        { uri: req.params.uri },
        forwardOpts(extra),
      );
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
      const { upstream, name } = routePrompt(this.ctx.config, req.params.name);
      const args: { [k: string]: Json } = {
        name,
        arguments: (req.params.arguments ?? {}) as { [k: string]: Json },
      };
      deepFreeze(args);
      return this.decided(`${upstream}.prompts/get`, args, upstream, extra, () =>
        this.upstream(upstream).connection.request('prompts/get', args, forwardOpts(extra)),
      );
    });

    s.setRequestHandler(CompleteRequestSchema, async (req, extra) => {
      const p = req.params;
      let upstream: string;
      let ref: { [k: string]: Json };
      if (p.ref.type === 'ref/prompt') {
        const r = routePrompt(this.ctx.config, p.ref.name);
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
        this.upstream(upstream).connection.request('completion/complete', args, forwardOpts(extra)),
      );
    });

    s.setRequestHandler(SetLevelRequestSchema, async (req) => {
      // Undecided by design: it only changes how much diagnostic output upstreams send to this agent.
      // Only this session's own (stateful) connections are told: on a shared one it would change what
      // every other agent's session receives.
      this.ensureUpstreams();
      await Promise.all(
        this.ownConnections().map(async (up) => {
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
      // Shared connections declare no roots (pool.ts); only this session's own ones hear of a change.
      for (const up of this.ownConnections()) {
        void up.notification({ method: 'notifications/roots/list_changed' }).catch(() => {});
      }
    });
  }

  /** The connections of this session's `stateful` upstreams. */
  private ownConnections(): UpstreamConnection[] {
    return [...this.upstreams.values()].filter((u) => !u.shared).map((u) => u.connection);
  }

  private withCapability(): UpstreamConnection[] {
    this.ensureUpstreams();
    return [...this.upstreams.values()].map((u) => u.connection);
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

  /** Which upstream serves a resource URI: the one that listed it, or whose template matches it. */
  private async routeUri(uri: string): Promise<string> {
    const owner = this.uriOwners.get(uri);
    if (owner) return owner;
    this.ensureUpstreams();
    const candidates: string[] = [];
    const withResources: string[] = [];
    for (const { connection: up } of this.upstreams.values()) {
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
    extra: Extra,
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
    const route = routeTool(this.ctx.config, name);
    const up = route ? this.upstream(route.upstream) : undefined;
    // INVARIANT: nothing half-loaded serves calls — the tool is looked up only in the listing of a ready
    // connection (listed and pin-checked), and forwarded only on that connection's generation.
    let deadline = Date.now() + limits.callTimeoutMs;
    let live = up ? await this.readyFor(up.connection, deadline, extra.signal) : undefined;
    let entry = live instanceof UpstreamError ? undefined : this.catalog().get(name);
    const policyName =
      entry?.policyName ?? (live instanceof UpstreamError ? route?.policyName : name) ?? name;
    const declared = entry ? declaredArgs(entry.tool) : undefined;
    const d = await this.settle(this.action(policyName, args, route?.upstream, declared), extra);
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
      if (entry && entry.state !== 'ok') await refreshPin(this.ctx, entry);
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
          up.connection.request(
            'tools/call',
            call,
            generation === undefined ? opts : { ...opts, generation },
          ),
        );
        break;
      } catch (err) {
        if (err instanceof UpstreamError && err.code === 'upstream_restarted') {
          // Restarted or re-checked since the lookup, so nothing was sent: look again on the new listing.
          live = await this.readyFor(up.connection, deadline, extra.signal);
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

  /** Closes the agent side; shared upstreams stay for the other sessions, stateful ones close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Closing the server aborts this session's requests in flight; each cancels its upstream request.
    await this.server.close().catch(() => {});
    await Promise.all([...this.upstreams.values()].map((u) => u.detach(this.id)));
    await Promise.all([...this.outcomes]);
  }
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

function deepFreeze(v: unknown): void {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
}
