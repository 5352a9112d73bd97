/**
 * The upstream pool: one supervised connection per configured upstream, started once per gateway and
 * shared by every agent session, except for an upstream marked `stateful`, which gets a connection of its
 * own per session. Each pooled upstream keeps its checked tool listing (catalog.ts) and routes what its
 * server sends back to the session it belongs to:
 *
 * - progress and cancellation are per request: the SDK client keys both by its own request id, so they
 *   follow the call that caused them whatever session sent it;
 * - a server-to-client request (sampling, elicitation) or a log message goes to the one session with
 *   calls in flight on that upstream; with none or several, the request is refused and the log message
 *   dropped, because the gateway cannot tell whose it is (a stateful upstream has one session: always it);
 * - resource updates go to the sessions that subscribed to that resource; list changes go to every session.
 */
import {
  type ClientCapabilities,
  ErrorCode,
  McpError,
  type Notification,
  type RequestId,
  type Result,
} from '@modelcontextprotocol/sdk/types.js';
import type { UpstreamConfig } from '../../config/load.js';
import { checkTools, type Listing } from './catalog.js';
import type { GatewayContext } from './context.js';
import { type RelayedMethod, UpstreamConnection } from './upstream.js';

/** Room for the JSON-RPC envelope around a result of `maxResultBytes` on an upstream's stdout. */
const ENVELOPE_BYTES = 4096;

/**
 * What the client of a shared upstream declares: sampling and elicitation, relayed to the agent whose
 * call asked for them (an agent without the capability gets the SDK's refusal). Never roots: roots are
 * one client's view of the world, and a process serving several agents would apply one agent's roots to
 * every other's calls. A server that needs roots is marked `stateful`.
 */
const SHARED_CAPABILITIES: ClientCapabilities = { sampling: {}, elicitation: {} };

/** What a pooled upstream needs of each session attached to it. */
export interface UpstreamSession {
  readonly id: string;
  /** The upstream's checked tools changed: a new generation serves, or none does. */
  toolsChanged(upstream: string): void;
  /** A notification for this session's agent; `related` is its request it belongs with, if any. */
  notify(upstream: string, n: Notification, related: RequestId | undefined): void;
  /** A server-to-client request for this session's agent. */
  relay(
    method: RelayedMethod,
    params: unknown,
    signal: AbortSignal,
    related: RequestId | undefined,
  ): Promise<Result>;
}

/** One upstream connection and the sessions it serves. */
export class PooledUpstream {
  readonly connection: UpstreamConnection;
  private listing: Listing | undefined;
  private readonly sessions = new Map<string, UpstreamSession>();
  /** Agent requests in flight on this upstream, per session, latest last. */
  private readonly inFlight = new Map<string, RequestId[]>();
  /** Resource URI → the sessions subscribed to it through this upstream. */
  private readonly subscribers = new Map<string, Set<string>>();

  constructor(
    ctx: GatewayContext,
    readonly name: string,
    config: UpstreamConfig,
    capabilities: ClientCapabilities,
    /** False for a `stateful` upstream: this connection serves exactly one session. */
    readonly shared: boolean,
  ) {
    const limits = {
      timeoutMs: ctx.config.limits.callTimeoutMs,
      maxMessageBytes: ctx.config.limits.maxResultBytes + ENVELOPE_BYTES,
    };
    this.connection = new UpstreamConnection(name, config, capabilities, limits, {
      relayRequest: (method, params, signal) => this.relayRequest(method, params, signal),
      notify: (n) => this.route(n),
      verify: async (tools, generation) => {
        this.listing = await checkTools(ctx, name, tools, generation);
        this.changed();
      },
      lost: (generation) => {
        if (this.listing?.generation === generation) this.listing = undefined;
        this.changed();
      },
      log: (line) => ctx.log(line),
    });
  }

  /** Pid of the upstream process (stdio upstreams that run). */
  get pid(): number | null {
    return this.connection.pid;
  }

  /** The checked tools of the connection that serves now; undefined while none does. */
  get current(): Listing | undefined {
    const c = this.connection;
    // INVARIANT: nothing half-loaded serves calls — a listing counts only for the generation it was checked for.
    return c.isReady && this.listing?.generation === c.currentGeneration ? this.listing : undefined;
  }

  /** Serves `session` from now on (and starts the connection if it was not yet). */
  attach(session: UpstreamSession): void {
    this.sessions.set(session.id, session);
    this.connection.start();
  }

  /**
   * `session` is gone: its subscriptions end (the upstream is told when no other session holds them) and a
   * stateful connection closes.
   */
  async detach(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
    this.inFlight.delete(sessionId);
    const ended: string[] = [];
    for (const [uri, subs] of this.subscribers) {
      if (subs.delete(sessionId) && subs.size === 0) ended.push(uri);
    }
    if (!this.shared) {
      this.subscribers.clear();
      await this.connection.close();
      return;
    }
    for (const uri of ended) {
      this.subscribers.delete(uri);
      await this.connection.request('resources/unsubscribe', { uri }).catch(() => {});
    }
  }

  /** Runs one agent request of `sessionId` on this upstream, known as in flight meanwhile. */
  track<T>(sessionId: string, id: RequestId, run: () => Promise<T>): Promise<T> {
    let list = this.inFlight.get(sessionId);
    if (!list) {
      list = [];
      this.inFlight.set(sessionId, list);
    }
    list.push(id);
    return run().finally(() => {
      const l = this.inFlight.get(sessionId);
      const i = l?.lastIndexOf(id) ?? -1;
      if (l && i >= 0) l.splice(i, 1);
      if (l?.length === 0) this.inFlight.delete(sessionId);
    });
  }

  /** Subscribes `sessionId` to `uri`; `send` tells the upstream, unless another session already did. */
  async subscribe(sessionId: string, uri: string, send: () => Promise<Result>): Promise<Result> {
    const held = this.subscribers.get(uri);
    if (held && held.size > 0) {
      held.add(sessionId);
      return {};
    }
    const r = await send();
    const subs = this.subscribers.get(uri) ?? new Set<string>();
    subs.add(sessionId);
    this.subscribers.set(uri, subs);
    return r;
  }

  /** Ends the subscription of `sessionId`; `send` tells the upstream once no session holds it. */
  async unsubscribe(sessionId: string, uri: string, send: () => Promise<Result>): Promise<Result> {
    const subs = this.subscribers.get(uri);
    subs?.delete(sessionId);
    if (subs && subs.size > 0) return {};
    this.subscribers.delete(uri);
    return send();
  }

  private changed(): void {
    for (const s of this.sessions.values()) s.toolsChanged(this.name);
  }

  /** The latest request in flight of `sessionId` on this upstream. */
  private latest(sessionId: string): RequestId | undefined {
    const list = this.inFlight.get(sessionId);
    return list?.[list.length - 1];
  }

  /**
   * The session a server-to-client message belongs to: a stateful connection's one session; on a shared
   * one, the only session with calls in flight, or none when that is not exactly one.
   */
  private owner(): { session: UpstreamSession; related: RequestId | undefined } | undefined {
    let id: string | undefined;
    if (!this.shared) id = this.sessions.keys().next().value;
    else {
      for (const sessionId of this.inFlight.keys()) {
        if (id !== undefined) return undefined;
        id = sessionId;
      }
    }
    const session = id === undefined ? undefined : this.sessions.get(id);
    return session && id !== undefined ? { session, related: this.latest(id) } : undefined;
  }

  private relayRequest(method: RelayedMethod, params: unknown, signal: AbortSignal): Promise<Result> {
    const to = this.owner();
    if (!to) {
      // INVARIANT: fail closed — a request no one session is known to have caused reaches no agent.
      const why =
        this.inFlight.size === 0
          ? 'no agent call is in flight on it'
          : 'calls of several agent sessions are in flight on it';
      return Promise.reject(
        new McpError(
          ErrorCode.InvalidRequest,
          `the gateway cannot tell which agent \`${method}\` from upstream \`${this.name}\` is for: ${why} (mark the upstream \`stateful: true\` to give each session its own connection)`,
        ),
      );
    }
    return to.session.relay(method, params, signal, to.related);
  }

  private route(n: Notification): void {
    switch (n.method) {
      case 'notifications/resources/list_changed':
      case 'notifications/prompts/list_changed':
        for (const s of this.sessions.values()) s.notify(this.name, n, undefined);
        return;
      case 'notifications/resources/updated': {
        const uri = (n.params as { uri?: unknown } | undefined)?.uri;
        if (typeof uri !== 'string') return;
        for (const id of this.subscribers.get(uri) ?? [])
          this.sessions.get(id)?.notify(this.name, n, this.latest(id));
        return;
      }
      case 'notifications/message': {
        const to = this.owner();
        to?.session.notify(this.name, n, to.related);
        return;
      }
      default:
        return;
    }
  }
}

/** The upstreams of one gateway. */
export class UpstreamPool {
  private readonly shared = new Map<string, PooledUpstream>();
  private closed = false;

  constructor(private readonly ctx: GatewayContext) {}

  /**
   * The upstreams of a new session, by name: every shared one (started on first use, once per gateway)
   * and a new connection of each `stateful` one, whose client declares what `agentCapabilities` (the
   * session's agent's sampling, elicitation and roots) declare.
   */
  attach(session: UpstreamSession, agentCapabilities: ClientCapabilities): Map<string, PooledUpstream> {
    const out = new Map<string, PooledUpstream>();
    if (this.closed) return out;
    for (const [name, cfg] of Object.entries(this.ctx.config.upstreams)) {
      let up = cfg.stateful ? undefined : this.shared.get(name);
      if (!up) {
        up = cfg.stateful
          ? new PooledUpstream(this.ctx, name, cfg, agentCapabilities, false)
          : new PooledUpstream(this.ctx, name, cfg, SHARED_CAPABILITIES, true);
        if (!cfg.stateful) this.shared.set(name, up);
      }
      out.set(name, up);
    }
    for (const up of out.values()) up.attach(session);
    return out;
  }

  /** Stops every shared upstream (each session closes its stateful ones). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.shared.values()];
    this.shared.clear();
    await Promise.all(all.map((u) => u.connection.close()));
  }
}
