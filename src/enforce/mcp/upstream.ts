/**
 * One connection from a gateway session to one real MCP server, supervised: started at once, restarted
 * with capped exponential back-off (with jitter) after a failed start or a crash, every request bounded by
 * a deadline. A connection serves requests only once it is `ready`: its handshake done, its tools listed
 * and checked by the session (`hooks.verify`: pins). Each ready connection has its own generation and SDK
 * client, so a call checked against one generation's tool definitions can never reach another process.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  type ClientCapabilities,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  McpError,
  type Notification,
  type Result,
  ResultSchema,
  type ServerCapabilities,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { UpstreamConfig } from '../../config/load.js';
import { messageOf } from '../../errors.js';
import { HttpUpstreamTransport } from './http-upstream.js';
import { RESULT_TOO_LARGE, StdioUpstreamTransport, TOO_LARGE_KEY } from './stdio-upstream.js';

/** Server-to-client requests the gateway relays from an upstream to its agent. */
export type RelayedMethod = 'sampling/createMessage' | 'elicitation/create' | 'roots/list';

export interface UpstreamHooks {
  /** An upstream asks the agent something (sampling, elicitation, roots). */
  relayRequest(method: RelayedMethod, params: unknown, signal: AbortSignal): Promise<Result>;
  /** An upstream notification for the agent (logging, resource and prompt list changes, updates). */
  notify(notification: Notification): void;
  /**
   * The tools of a new connection (or listed again after `list_changed`): check them before generation
   * `generation` serves anything. A rejection fails the start.
   */
  verify(tools: Tool[], generation: number): Promise<void>;
  /** Generation `generation` no longer serves (crashed, closed, or being checked again). */
  lost(generation: number): void;
  /** Diagnostics (stderr lines of the upstream, state changes). */
  log(line: string): void;
}

/** Raised for every upstream failure; `code` is stable. */
export class UpstreamError extends Error {
  readonly code:
    | 'upstream_unavailable'
    | 'upstream_starting'
    | 'upstream_restarted'
    | 'upstream_timeout'
    | 'upstream_failed'
    | 'upstream_closed'
    | 'upstream_result_too_large';
  /** For `upstream_result_too_large`: the size of the refused message in bytes, when it was read whole. */
  readonly bytes: number | undefined;
  constructor(code: UpstreamError['code'], message: string, options?: { cause?: unknown; bytes?: number }) {
    super(message, options);
    this.name = 'UpstreamError';
    this.code = code;
    this.bytes = options?.bytes;
  }
}

/**
 * Where a connection is. `starting`: process, handshake, tool listing and pin check under way; `checking`:
 * the upstream announced changed tools and they are listed and checked again; `ready`: serving;
 * `retrying`: the last start failed or the connection was lost, the next attempt is scheduled.
 */
export type UpstreamState = 'idle' | 'starting' | 'checking' | 'ready' | 'retrying' | 'closed';

/** What `status()` reports about one connection. */
export interface UpstreamStatus {
  name: string;
  state: UpstreamState;
  /** When the connection entered this state (ISO time). */
  since: string;
  /** The upstream process (stdio upstreams that run). */
  pid?: number;
  /** Ready connections so far; every restart and every re-check makes a new one. */
  generation: number;
  /** Failed starts and lost connections since the last stable one. */
  failures: number;
  /** Why the last start failed or the connection was lost. */
  lastError?: string;
  /** For `retrying`: milliseconds until the next attempt. */
  retryInMs?: number;
}

/** Back-off before restart n (1-based): 0.5 s doubling to 30 s, each delay up to 20 % shorter at random. */
export const BACKOFF = { minMs: 500, maxMs: 30_000, jitter: 0.2 } as const;
/** A connection that was ready this long resets the back-off. */
const STABLE_MS = 10_000;
const MAX_LIST_PAGES = 100;

const VERSION = '0.1.0';

/** How one connection is bounded. */
export interface UpstreamLimits {
  /** Deadline of each request (waiting for the connection to be ready included) and of each start. */
  timeoutMs: number;
  /** Largest message accepted from a stdio upstream; a longer answer fails its request only. */
  maxMessageBytes: number;
}

interface Waiter {
  deadline: number;
  throughRetries: boolean;
  /** `failures` when it began waiting: one more means the attempt it waited for failed. */
  failures: number;
  resolve(r: Live): void;
  reject(e: Error): void;
}

/** The client of a ready connection and its generation. */
interface Live {
  client: Client;
  generation: number;
}

/** A supervised client connection to one upstream MCP server. */
export class UpstreamConnection {
  private state: UpstreamState = 'idle';
  private since = Date.now();
  private client: Client | undefined;
  private transport: Transport | undefined;
  private generation = 0;
  private failures = 0;
  private lastError = '';
  private nextAttemptAt = 0;
  private readyAt = 0;
  private recheck = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly waiters = new Set<Waiter>();

  constructor(
    readonly name: string,
    private readonly config: UpstreamConfig,
    private readonly capabilities: ClientCapabilities,
    private readonly limits: UpstreamLimits,
    private readonly hooks: UpstreamHooks,
  ) {}

  /** Pid of the upstream process (stdio upstreams), for diagnostics and tests. */
  get pid(): number | null {
    return this.transport instanceof StdioUpstreamTransport ? this.transport.pid : null;
  }

  /** Capabilities of the ready connection; undefined while it is not ready. */
  get serverCapabilities(): ServerCapabilities | undefined {
    return this.state === 'ready' ? this.client?.getServerCapabilities() : undefined;
  }

  /** True while the connection serves requests. */
  get isReady(): boolean {
    return this.state === 'ready';
  }

  /** The generation that serves requests now (0 before the first ready connection). */
  get currentGeneration(): number {
    return this.generation;
  }

  /** Starts the connection (once); it is supervised from then on until `close`. */
  start(): void {
    if (this.state === 'idle') void this.attempt();
  }

  /** Where the connection is, for the operator's status and for refusals. */
  status(): UpstreamStatus {
    const s: UpstreamStatus = {
      name: this.name,
      state: this.state,
      since: new Date(this.since).toISOString(),
      generation: this.generation,
      failures: this.failures,
    };
    const pid = this.pid;
    if (pid !== null) s.pid = pid;
    if (this.lastError) s.lastError = this.lastError;
    if (this.state === 'retrying') s.retryInMs = Math.max(0, this.nextAttemptAt - Date.now());
    return s;
  }

  /**
   * The ready connection; waits while it starts or is checked, until `deadline`. With `throughRetries`
   * it also waits for a scheduled restart that begins before the deadline; otherwise a connection that
   * is backing off is refused at once. Waiting ends with the attempt it waited for: when that start
   * fails, the wait is refused (it does not wait for retry after retry). Rejects with an `UpstreamError`
   * that says why.
   */
  ready(opts: { deadline: number; signal?: AbortSignal; throughRetries?: boolean }): Promise<Live> {
    this.start();
    const live = this.live();
    if (live) return Promise.resolve(live);
    const throughRetries = opts.throughRetries === true;
    const failures = this.failures;
    const now = this.refusal(opts.deadline, throughRetries, failures);
    if (now) return Promise.reject(now);
    return new Promise<Live>((resolve, reject) => {
      const timer = setTimeout(
        () => done(undefined, this.notReady()),
        Math.max(0, opts.deadline - Date.now()),
      );
      const onAbort = () => done(undefined, abortError(opts.signal));
      const done = (live: Live | undefined, err?: Error) => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        if (live) resolve(live);
        else reject(err);
      };
      const waiter: Waiter = {
        deadline: opts.deadline,
        throughRetries,
        failures,
        resolve: (l) => done(l),
        reject: (e) => done(undefined, e),
      };
      this.waiters.add(waiter);
      if (opts.signal?.aborted) onAbort();
      else opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private live(): Live | undefined {
    return this.state === 'ready' && this.client
      ? { client: this.client, generation: this.generation }
      : undefined;
  }

  /** Why a waiter with this deadline cannot be served, when that is already certain. */
  private refusal(deadline: number, throughRetries: boolean, failures: number): UpstreamError | undefined {
    if (this.state === 'closed') return closedError(this.name);
    if (this.state !== 'retrying') return undefined;
    if (this.failures === failures && throughRetries && this.nextAttemptAt < deadline) return undefined;
    return this.notReady();
  }

  /** The refusal for a request that finds the connection not ready. */
  private notReady(): UpstreamError {
    const n = `upstream \`${this.name}\``;
    switch (this.state) {
      case 'closed':
        return closedError(this.name);
      case 'retrying':
        return new UpstreamError(
          'upstream_unavailable',
          `${n} is not available (${this.lastError}); next start in ${seconds(this.nextAttemptAt - Date.now())}`,
        );
      case 'checking':
        return new UpstreamError(
          'upstream_starting',
          `${n} is being checked: it announced changed tools, which are being listed and compared with their pins; try again`,
        );
      default:
        return new UpstreamError(
          'upstream_starting',
          `${n} is starting: its tools are not yet listed and compared with their pins; try again`,
        );
    }
  }

  /** Settles every waiter that can be settled now. */
  private wake(): void {
    const live = this.live();
    for (const w of [...this.waiters]) {
      if (live) w.resolve(live);
      else {
        const why = this.refusal(w.deadline, w.throughRetries, w.failures);
        if (why) w.reject(why);
      }
    }
  }

  private enter(state: UpstreamState): void {
    this.state = state;
    this.since = Date.now();
    this.wake();
  }

  /** One start: process and handshake, then the tools listed and checked. Failure schedules the next. */
  private async attempt(): Promise<void> {
    this.enter('starting');
    this.hooks.log(`[${this.name}] starting${this.failures > 0 ? ` (attempt ${this.failures + 1})` : ''}`);
    let client: Client | undefined;
    try {
      client = await this.open();
      await this.check(client);
    } catch (err) {
      if (this.state === 'closed') return;
      if (client) this.abandon(client);
      this.retry(`${client ? 'not ready' : 'cannot start'}: ${messageOf(err)}`);
    }
  }

  /** A new SDK client over a new transport, its handshake done (bounded by the timeout). */
  private async open(): Promise<Client> {
    const client = new Client(
      { name: 'execlayer-gateway', version: VERSION },
      { capabilities: this.capabilities },
    );
    const relay =
      (method: RelayedMethod) => async (req: { params?: unknown }, extra: { signal: AbortSignal }) =>
        this.hooks.relayRequest(method, req.params, extra.signal);
    if (this.capabilities.sampling)
      client.setRequestHandler(CreateMessageRequestSchema, relay('sampling/createMessage'));
    if (this.capabilities.elicitation)
      client.setRequestHandler(ElicitRequestSchema, relay('elicitation/create'));
    if (this.capabilities.roots) client.setRequestHandler(ListRootsRequestSchema, relay('roots/list'));
    client.fallbackNotificationHandler = async (n) => {
      if (n.method === 'notifications/tools/list_changed') this.toolsChanged(client);
      else this.hooks.notify(n);
    };
    const transport = this.newTransport();
    this.transport = transport;
    this.client = client;
    client.onclose = () => this.onClosed(client);
    client.onerror = (err) => this.hooks.log(`[${this.name}] ${err.message}`);
    try {
      await client.connect(transport, { timeout: this.limits.timeoutMs });
    } catch (err) {
      this.abandon(client);
      throw err;
    }
    if (this.state === 'closed' || this.client !== client) {
      this.abandon(client);
      throw closedError(this.name);
    }
    return client;
  }

  private newTransport(): Transport {
    if (this.config.kind === 'http')
      return new HttpUpstreamTransport(
        new URL(this.config.url),
        this.config.headers,
        this.limits.maxMessageBytes,
      );
    const t = new StdioUpstreamTransport({
      command: this.config.command,
      args: this.config.args,
      env: this.config.env,
      ...(this.config.cwd ? { cwd: this.config.cwd } : {}),
      maxMessageBytes: this.limits.maxMessageBytes,
    });
    t.stderr.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line.trim()) this.hooks.log(`[${this.name}] ${line}`);
    });
    return t;
  }

  /**
   * Lists the tools of `client` and has the session check them; only then does the connection become
   * ready under a new generation. A `list_changed` that arrives meanwhile makes it list again.
   */
  private async check(client: Client): Promise<void> {
    for (;;) {
      this.recheck = false;
      const tools = await this.listAllTools(client);
      if (this.client !== client) throw new Error('the connection was lost while its tools were listed');
      const generation = this.generation + 1;
      await this.hooks.verify(tools, generation);
      if (this.client !== client) throw new Error('the connection was lost while its tools were checked');
      if (this.recheck) continue;
      this.generation = generation;
      this.readyAt = Date.now();
      this.enter('ready');
      const pid = this.pid;
      this.hooks.log(
        `[${this.name}] ready: ${tools.length} tool(s) listed and checked${pid !== null ? ` (pid ${pid})` : ''}`,
      );
      return;
    }
  }

  /** `notifications/tools/list_changed`: nothing is served until the new list is checked. */
  private toolsChanged(client: Client): void {
    if (this.client !== client) return;
    if (this.state !== 'ready') {
      this.recheck = true;
      return;
    }
    this.hooks.lost(this.generation);
    this.enter('checking');
    this.hooks.log(`[${this.name}] tools changed; checking them again`);
    this.check(client).catch((err: unknown) => {
      // A crash while checking lands here too (`onClosed` leaves a connection that is not ready alone).
      if (this.state !== 'checking') return;
      this.abandon(client);
      this.retry(`changed tools could not be checked: ${messageOf(err)}`);
    });
  }

  /** Forgets `client` (so its close is not taken for a crash of the current connection) and closes it. */
  private abandon(client: Client): void {
    if (this.client === client) {
      this.client = undefined;
      this.transport = undefined;
    }
    void client.close().catch(() => {});
  }

  private onClosed(client: Client): void {
    if (this.client !== client) return;
    const was = this.state;
    this.client = undefined;
    this.transport = undefined;
    // While starting or checking, the pending listing fails and that path schedules the restart.
    if (was !== 'ready') return;
    this.hooks.lost(this.generation);
    if (Date.now() - this.readyAt > STABLE_MS) this.failures = 0;
    this.retry('connection lost');
  }

  /** Schedules the next start after the back-off delay. */
  private retry(reason: string): void {
    this.failures += 1;
    this.lastError = reason;
    const base = Math.min(BACKOFF.maxMs, BACKOFF.minMs * 2 ** (this.failures - 1));
    const delay = Math.round(base * (1 - BACKOFF.jitter * Math.random()));
    this.nextAttemptAt = Date.now() + delay;
    this.enter('retrying');
    this.hooks.log(`[${this.name}] ${reason}; retrying in ${seconds(delay)}`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.state === 'retrying') void this.attempt();
    }, delay);
    this.timer.unref();
  }

  /**
   * Sends one request on the ready connection, waiting for it (see `ready`) within the same deadline;
   * the result is passed through unchanged (no schema stripping). With `generation`, the request is sent
   * only on that generation: a connection restarted or re-checked since is refused (`upstream_restarted`).
   */
  async request(
    method: string,
    params: Record<string, unknown> | undefined,
    opts: {
      signal?: AbortSignal;
      onprogress?: RequestOptions['onprogress'];
      generation?: number;
      deadline?: number;
    } = {},
  ): Promise<Result> {
    const deadline = opts.deadline ?? Date.now() + this.limits.timeoutMs;
    const waited = this.live() ?? (await this.ready({ deadline, throughRetries: true, ...sig(opts.signal) }));
    // INVARIANT: nothing half-loaded serves calls — the client is the checked generation's, at send time.
    const live = this.live();
    if (!live || live.client !== waited.client || (opts.generation ?? live.generation) !== live.generation) {
      throw new UpstreamError(
        'upstream_restarted',
        `upstream \`${this.name}\` restarted or changed its tools since they were checked`,
      );
    }
    const options: RequestOptions = { timeout: Math.max(1, deadline - Date.now()) };
    if (opts.signal) options.signal = opts.signal;
    if (opts.onprogress) options.onprogress = opts.onprogress;
    try {
      const req = params === undefined ? { method } : { method, params };
      return await live.client.request(req as never, ResultSchema, options);
    } catch (err) {
      throw this.translate(err, method);
    }
  }

  /** Sends a notification to the ready connection; dropped when there is none (it lists afresh). */
  async notification(n: Notification): Promise<void> {
    const live = this.live();
    if (live) await live.client.notification(n as never);
  }

  /** Every page of the tool list of `client`, each page within the timeout. */
  private async listAllTools(client: Client): Promise<Tool[]> {
    if (!client.getServerCapabilities()?.tools) return [];
    const out: Tool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      let res: { tools?: unknown; nextCursor?: unknown };
      try {
        res = (await client.request(
          { method: 'tools/list', ...(cursor ? { params: { cursor } } : {}) } as never,
          ResultSchema,
          { timeout: this.limits.timeoutMs },
        )) as { tools?: unknown; nextCursor?: unknown };
      } catch (err) {
        throw this.translate(err, 'tools/list');
      }
      if (!Array.isArray(res.tools))
        throw new UpstreamError('upstream_failed', `upstream \`${this.name}\` sent an invalid tool list`);
      for (const t of res.tools) {
        if (t && typeof t === 'object' && typeof (t as Tool).name === 'string') out.push(t as Tool);
      }
      if (typeof res.nextCursor !== 'string' || res.nextCursor === '') break;
      cursor = res.nextCursor;
    }
    return out;
  }

  private translate(err: unknown, method: string): Error {
    if (err instanceof UpstreamError) return err;
    const e = err as { code?: number; message?: string; name?: string };
    if (e?.code === -32001) {
      return new UpstreamError(
        'upstream_timeout',
        `upstream \`${this.name}\` did not answer \`${method}\` within ${this.limits.timeoutMs} ms`,
        { cause: err },
      );
    }
    if (e?.code === -32000 && /closed/i.test(String(e.message))) {
      return new UpstreamError(
        'upstream_failed',
        `upstream \`${this.name}\` closed the connection during \`${method}\``,
        { cause: err },
      );
    }
    if (err instanceof McpError && err.code === RESULT_TOO_LARGE) {
      const info = (err.data as Record<string, { bytes?: unknown }> | undefined)?.[TOO_LARGE_KEY];
      if (info && typeof info === 'object') {
        const bytes = typeof info.bytes === 'number' ? info.bytes : undefined;
        return new UpstreamError(
          'upstream_result_too_large',
          `result too large: upstream \`${this.name}\` answered \`${method}\` with ${bytes === undefined ? 'more than ' : ''}${bytes ?? this.limits.maxMessageBytes} bytes; the limit is ${this.limits.maxMessageBytes}`,
          { cause: err, ...(bytes !== undefined ? { bytes } : {}) },
        );
      }
    }
    if (err instanceof McpError) {
      // The upstream answered with a JSON-RPC error: keep its message as it was sent (the SDK's client
      // prefixes "MCP error <code>: " to it, and the agent's client would prefix it once more).
      const prefix = `MCP error ${err.code}: `;
      const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
      return upstreamRpcError(err.code, message, err.data);
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  /** Stops the upstream for good. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const c = this.client;
    this.client = undefined;
    this.transport = undefined;
    clearTimeout(this.timer);
    this.enter('closed');
    if (c) await c.close().catch(() => {});
  }
}

function closedError(name: string): UpstreamError {
  return new UpstreamError('upstream_closed', `upstream \`${name}\` is closed`);
}

function abortError(signal: AbortSignal | undefined): Error {
  const r: unknown = signal?.reason;
  return r instanceof Error ? r : new Error(typeof r === 'string' ? r : 'aborted');
}

function sig(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

/** `1.5 s`, `0.2 s`, `30 s`. */
function seconds(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  return `${s >= 10 ? Math.round(s) : s.toFixed(1)} s`;
}

/** An upstream's JSON-RPC error, passed on to the agent with the code, message and data it was sent with. */
function upstreamRpcError(code: number, message: string, data: unknown): McpError {
  const e = new McpError(code, message, data);
  e.message = message;
  return e;
}
