/**
 * The MCP gateway: the one MCP server an agent connects to. It holds the upstream connections and their
 * credentials, so a tool is reachable only through the decision function. Its upstreams are pooled: each
 * starts once and serves every session (pool.ts), unless the config marks it `stateful`. Front doors:
 * stdio (`serveStdio`), Streamable HTTP (`./http.ts`), or any SDK transport (`connect`, used by tests).
 */
import { randomUUID } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { GatewayConfig } from '../../config/load.js';
import type { GatewayContext, GatewayLayer } from './context.js';
import { openToolPinStore, type ToolPinStore } from './pins.js';
import { UpstreamPool } from './pool.js';
import { ScreenedTransport } from './screen.js';
import { GatewaySession, type SessionIdentity, type SessionUpstreamStatus } from './session.js';
import { StdioFrontTransport } from './stdio.js';

export interface GatewayOptions {
  /** Tool pin store; default: the one named by `config.store.pins`. */
  pins?: ToolPinStore;
  /** Diagnostics sink (upstream stderr, restarts); default: stderr. */
  log?: (line: string) => void;
}

/** A running gateway: sessions share the layer, the config, the pin store and the upstream pool. */
export class McpGateway {
  readonly sessions = new Set<GatewaySession>();
  private readonly ctx: GatewayContext;
  private readonly pool: UpstreamPool;
  private readonly ownsPins: boolean;

  constructor(layer: GatewayLayer, config: GatewayConfig, opts: GatewayOptions = {}) {
    this.ownsPins = !opts.pins;
    this.ctx = {
      layer,
      config,
      pins:
        opts.pins ??
        openToolPinStore(
          config.store.pins,
          config.store.timeoutMs === undefined ? {} : { timeoutMs: config.store.timeoutMs },
        ),
      log: opts.log ?? ((line) => process.stderr.write(`execlayer: ${line}\n`)),
    };
    this.pool = new UpstreamPool(this.ctx);
  }

  get config(): GatewayConfig {
    return this.ctx.config;
  }

  get layer(): GatewayLayer {
    return this.ctx.layer;
  }

  get log(): (line: string) => void {
    return this.ctx.log;
  }

  /** A new session for an authenticated identity (not yet connected). */
  createSession(identity: SessionIdentity, id: string = randomUUID()): GatewaySession {
    const s = new GatewaySession(this.ctx, this.pool, identity, id);
    this.sessions.add(s);
    s.server.onclose = () => {
      this.sessions.delete(s);
      void s.close();
    };
    return s;
  }

  /** Serves one session on any SDK transport, behind the message screen. */
  async connect(transport: Transport, identity: SessionIdentity): Promise<GatewaySession> {
    const session = this.createSession(identity);
    await session.connect(new ScreenedTransport(transport, { requireInitialize: true }));
    return session;
  }

  /** Serves one session over newline-delimited JSON-RPC on a stream pair (stdin/stdout). */
  async serveStdio(input: Readable, output: Writable, agent: string): Promise<GatewaySession> {
    const t = new StdioFrontTransport(input, output, this.ctx.config.limits.maxMessageBytes);
    return this.connect(t, { agent, transport: 'stdio' });
  }

  /** Every session's upstream connections: state, pid, failures, last error, next start, held-back tools. */
  upstreamStatus(): SessionUpstreamStatus[] {
    return [...this.sessions]
      .flatMap((s) => s.upstreamStatus())
      .sort((a, b) => a.name.localeCompare(b.name) || a.session.localeCompare(b.session));
  }

  /** Closes every session, then the upstream pool. */
  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
    this.sessions.clear();
    await this.pool.close();
    if (this.ownsPins) await this.ctx.pins.close();
  }
}
