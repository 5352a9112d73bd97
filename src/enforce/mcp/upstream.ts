/**
 * One connection from a gateway session to one real MCP server: started lazily, restarted with
 * exponential back-off after a crash, every request bounded by a timeout. The tool listing is cached
 * per connection and dropped on `list_changed` and on every reconnect, so no call runs against a
 * definition that was not listed (and pin-checked) on the live connection.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
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
import { HttpUpstreamTransport } from './http-upstream.js';

/** Server-to-client requests the gateway relays from an upstream to its agent. */
export type RelayedMethod = 'sampling/createMessage' | 'elicitation/create' | 'roots/list';

export interface UpstreamHooks {
  /** An upstream asks the agent something (sampling, elicitation, roots). */
  relayRequest(method: RelayedMethod, params: unknown, signal: AbortSignal): Promise<Result>;
  /** An upstream notification for the agent (logging, list changes, resource updates). */
  notify(notification: Notification): void;
  /** The connection was (re)established; cached listings are gone. */
  reconnected(): void;
  /** Diagnostics (stderr lines of the upstream, restarts). */
  log(line: string): void;
}

/** Raised for every upstream failure; `code` is stable. */
export class UpstreamError extends Error {
  readonly code: 'upstream_unavailable' | 'upstream_timeout' | 'upstream_failed' | 'upstream_closed';
  constructor(code: UpstreamError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamError';
    this.code = code;
  }
}

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 30_000;
/** A connection that lived this long resets the back-off. */
const STABLE_MS = 10_000;
const MAX_LIST_PAGES = 100;

const VERSION = '0.1.0';

/** A lazily started, self-healing client connection to one upstream MCP server. */
export class UpstreamConnection {
  private client: Client | undefined;
  private transport: Transport | undefined;
  private connecting: Promise<Client> | undefined;
  private attempts = 0;
  private nextAttemptAt = 0;
  private connectedAt = 0;
  private closed = false;
  private lastError = '';
  private toolCache: Promise<Tool[]> | undefined;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    private readonly config: UpstreamConfig,
    private readonly capabilities: ClientCapabilities,
    private readonly timeoutMs: number,
    private readonly hooks: UpstreamHooks,
  ) {}

  /** Pid of the upstream process (stdio upstreams), for diagnostics and tests. */
  get pid(): number | null {
    return this.transport instanceof StdioClientTransport ? this.transport.pid : null;
  }

  get serverCapabilities(): ServerCapabilities | undefined {
    return this.client?.getServerCapabilities();
  }

  /** A ready client; starts or waits for the connection. Fails fast while backing off. */
  async ready(): Promise<Client> {
    if (this.closed) throw new UpstreamError('upstream_closed', `upstream \`${this.name}\` is closed`);
    if (this.client) return this.client;
    if (this.connecting) return this.connecting;
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0) {
      throw new UpstreamError(
        'upstream_unavailable',
        `upstream \`${this.name}\` is unavailable (${this.lastError || 'restarting'}); next restart in ${wait} ms`,
      );
    }
    this.connecting = this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<Client> {
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
      if (n.method === 'notifications/tools/list_changed') this.toolCache = undefined;
      this.hooks.notify(n);
    };

    let transport: Transport;
    if (this.config.kind === 'stdio') {
      const t = new StdioClientTransport({
        command: this.config.command,
        args: this.config.args,
        env: this.config.env,
        ...(this.config.cwd ? { cwd: this.config.cwd } : {}),
        stderr: 'pipe',
      });
      t.stderr?.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n'))
          if (line.trim()) this.hooks.log(`[${this.name}] ${line}`);
      });
      transport = t;
    } else {
      transport = new HttpUpstreamTransport(new URL(this.config.url), this.config.headers);
    }
    this.transport = transport;
    client.onclose = () => this.onClosed(client);
    client.onerror = (err) => this.hooks.log(`[${this.name}] ${err.message}`);
    try {
      await client.connect(transport, { timeout: this.timeoutMs });
    } catch (err) {
      this.transport = undefined;
      await client.close().catch(() => {});
      this.fail(`cannot start: ${errorMessage(err)}`);
      throw new UpstreamError(
        'upstream_unavailable',
        `upstream \`${this.name}\` cannot start: ${errorMessage(err)}`,
        {
          cause: err,
        },
      );
    }
    if (this.closed) {
      await client.close().catch(() => {});
      throw new UpstreamError('upstream_closed', `upstream \`${this.name}\` is closed`);
    }
    this.client = client;
    this.toolCache = undefined;
    this.connectedAt = Date.now();
    this.hooks.reconnected();
    return client;
  }

  private fail(reason: string): void {
    this.lastError = reason;
    this.attempts += 1;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.attempts - 1));
    this.nextAttemptAt = Date.now() + delay;
    this.hooks.log(`[${this.name}] ${reason}; restart in ${delay} ms`);
  }

  private onClosed(client: Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.transport = undefined;
    this.toolCache = undefined;
    if (this.closed) return;
    if (Date.now() - this.connectedAt > STABLE_MS) this.attempts = 0;
    this.fail('connection lost');
    // Restart in the background so the next call finds a live connection.
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(
      () => {
        if (!this.closed && !this.client) this.ready().catch(() => {});
      },
      Math.max(0, this.nextAttemptAt - Date.now()),
    );
    this.restartTimer.unref();
  }

  /** Sends one request; the result is passed through unchanged (no schema stripping). */
  async request(
    method: string,
    params: Record<string, unknown> | undefined,
    opts: { signal?: AbortSignal; onprogress?: RequestOptions['onprogress'] } = {},
  ): Promise<Result> {
    // The live client without a detour through a promise; `ready()` starts or waits for one otherwise.
    const client = this.client && !this.closed ? this.client : await this.ready();
    const options: RequestOptions = { timeout: this.timeoutMs };
    if (opts.signal) options.signal = opts.signal;
    if (opts.onprogress) options.onprogress = opts.onprogress;
    try {
      const req = params === undefined ? { method } : { method, params };
      return await client.request(req as never, ResultSchema, options);
    } catch (err) {
      throw this.translate(err, method);
    }
  }

  /** Sends a notification (cancellation is handled by the SDK through `signal`). */
  async notification(n: Notification): Promise<void> {
    const client = await this.ready();
    await client.notification(n as never);
  }

  /** All tools of the live connection (every page), cached until a change or reconnect. */
  tools(): Promise<Tool[]> {
    if (!this.toolCache) {
      const p = this.listAllTools();
      this.toolCache = p;
      p.catch(() => {
        if (this.toolCache === p) this.toolCache = undefined;
      });
    }
    return this.toolCache;
  }

  private async listAllTools(): Promise<Tool[]> {
    const client = await this.ready();
    if (!client.getServerCapabilities()?.tools) return [];
    const out: Tool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const res = (await this.request('tools/list', cursor ? { cursor } : undefined)) as {
        tools?: unknown;
        nextCursor?: unknown;
      };
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
        `upstream \`${this.name}\` did not answer \`${method}\` within ${this.timeoutMs} ms`,
        { cause: err },
      );
    }
    if (e?.code === -32000 && /closed/i.test(String(e.message))) {
      return new UpstreamError(
        'upstream_failed',
        `upstream \`${this.name}\` closed the connection during \`${method}\``,
        {
          cause: err,
        },
      );
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
    this.closed = true;
    clearTimeout(this.restartTimer);
    const c = this.client;
    this.client = undefined;
    this.toolCache = undefined;
    if (c) await c.close().catch(() => {});
    else if (this.connecting) await this.connecting.then((cl) => cl.close()).catch(() => {});
  }
}

/** An upstream's JSON-RPC error, passed on to the agent with the code, message and data it was sent with. */
function upstreamRpcError(code: number, message: string, data: unknown): McpError {
  const e = new McpError(code, message, data);
  e.message = message;
  return e;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
