/**
 * The Streamable HTTP front door (`execlayer serve`): `/mcp` with bearer authentication, sessions
 * bound to the authenticated agent and capped per agent and in all, Host/Origin checks against DNS
 * rebinding, and bounded, strictly decoded bodies. Other paths go to mounted handlers (the HTTP
 * decision API). Unauthenticated requests cost a header check and a hash: the body of a request is
 * read only after its credential is accepted, and every refusal before that closes the connection.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Authenticator } from '../auth.js';
import { type ConnectionGuard, checkingIntervalMs, frontDoorLimits, guardServer } from '../front-door.js';
import { createTlsFrontDoor } from '../tls.js';
import type { McpGateway } from './gateway.js';
import { findForbiddenKey, INVALID_REQUEST, PARSE_ERROR, ScreenedTransport } from './screen.js';
import type { GatewaySession } from './session.js';

/** A mounted handler: resolves true when it answered the request. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

interface HttpSession {
  agent: string;
  transport: StreamableHTTPServerTransport;
  screen: ScreenedTransport;
  session: GatewaySession;
  lastSeen: number;
}

export interface McpHttpOptions {
  authenticate: Authenticator;
  /** Path of the MCP endpoint; default `/mcp`. */
  path?: string;
}

/** The `/mcp` endpoint of a gateway as a mountable handler. */
export class McpHttpEndpoint {
  readonly sessions = new Map<string, HttpSession>();
  private readonly path: string;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly gateway: McpGateway,
    private readonly opts: McpHttpOptions,
  ) {
    this.path = opts.path ?? '/mcp';
    const idle = gateway.config.http.sessionIdleMs;
    this.sweeper = setInterval(() => this.sweep(idle), Math.min(60_000, Math.max(1000, idle / 2)));
    this.sweeper.unref();
  }

  private sweep(idleMs: number): void {
    const cutoff = Date.now() - idleMs;
    for (const [id, s] of this.sessions) {
      if (s.lastSeen < cutoff) {
        this.sessions.delete(id);
        void s.session.close();
      }
    }
  }

  /** Handles `/mcp`; resolves false for any other path. */
  readonly handle: HttpHandler = async (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    if ((q < 0 ? url : url.slice(0, q)) !== this.path) return false;
    try {
      await this.serve(req, res);
    } catch (err) {
      this.gateway.log(`http: ${(err as Error).message}`);
      if (!res.headersSent) sendJsonRpcError(res, 500, null, -32603, 'internal error');
      else res.end();
    }
    return true;
  };

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
      res.writeHead(405, { allow: 'GET, POST, DELETE' }).end();
      return;
    }
    const who = await this.opts.authenticate(req);
    if (!who.ok) {
      // INVARIANT: an unauthenticated request's body is never read; closing the connection stops it.
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': 'Bearer',
        connection: 'close',
      });
      res.end(JSON.stringify({ error: 'unauthenticated', reason: who.reason }));
      return;
    }
    const sidHeader = req.headers['mcp-session-id'];
    const sid = typeof sidHeader === 'string' ? sidHeader : undefined;
    let body: unknown;
    if (method === 'POST') {
      const read = await readBody(req, this.gateway.config.limits.maxMessageBytes);
      if (!read.ok) {
        // An oversized body is not drained: the connection closes instead.
        const close = read.status === 413 ? { connection: 'close' } : {};
        sendJsonRpcError(res, read.status, null, read.code, read.message, undefined, close);
        return;
      }
      body = read.value;
      if (Array.isArray(body)) {
        sendJsonRpcError(
          res,
          400,
          null,
          INVALID_REQUEST,
          'json-rpc batches are not supported: send one message at a time',
        );
        return;
      }
      const bad = findForbiddenKey(body);
      if (bad) {
        sendJsonRpcError(res, 400, idOf(body), INVALID_REQUEST, `invalid message: ${bad}`);
        return;
      }
    }

    if (sid === undefined) {
      if (method !== 'POST' || !isInitialize(body)) {
        sendJsonRpcError(
          res,
          400,
          idOf(body),
          INVALID_REQUEST,
          'missing `Mcp-Session-Id` header: send `initialize` first to open a session',
        );
        return;
      }
      const full = this.sessionCapReached(who.agent);
      if (full) {
        sendJsonRpcError(res, full.status, idOf(body), -32000, full.message, {
          limit: full.limit,
          max: full.max,
        });
        return;
      }
      await this.open(req, res, body, who.agent, who.principal);
      return;
    }

    const entry = this.sessions.get(sid);
    // INVARIANT: a session id is bound to the agent that opened it; another agent cannot use it.
    if (!entry || entry.agent !== who.agent) {
      if (entry) {
        await this.gateway.layer.recorder
          .record({
            type: 'auth',
            status: 'rejected',
            point: 'mcp',
            reason: `agent \`${who.agent}\` presented the session id of another agent`,
            ...(req.socket.remoteAddress ? { remote: req.socket.remoteAddress } : {}),
          })
          .catch(() => {});
      }
      sendJsonRpcError(res, 404, idOf(body), -32001, 'session not found');
      return;
    }
    entry.lastSeen = Date.now();
    if (method === 'POST') {
      const refusal = entry.screen.check(body);
      if (refusal) {
        sendJsonRpcError(res, 400, refusal.id, refusal.code, refusal.message);
        return;
      }
    }
    await entry.transport.handleRequest(req, res, body);
  }

  /**
   * Which session cap a new session of `agent` would break, if any. The per-agent cap comes first so
   * that one agent cannot fill the gateway: it reaches its own cap long before the global one.
   */
  private sessionCapReached(
    agent: string,
  ): { status: number; limit: string; max: number; message: string } | undefined {
    const { maxSessions, maxSessionsPerAgent } = this.gateway.config.http;
    let mine = 0;
    for (const s of this.sessions.values()) if (s.agent === agent) mine++;
    const perAgent = Math.min(maxSessionsPerAgent, maxSessions);
    if (mine >= perAgent) {
      return {
        status: 429,
        limit: 'http.maxSessionsPerAgent',
        max: perAgent,
        message: `agent \`${agent}\` already has ${mine} open sessions, the most one agent may hold (http.maxSessionsPerAgent = ${perAgent}): end one with DELETE or let one idle out`,
      };
    }
    if (this.sessions.size >= maxSessions) {
      return {
        status: 503,
        limit: 'http.maxSessions',
        max: maxSessions,
        message: `the gateway has ${this.sessions.size} open sessions, its limit (http.maxSessions = ${maxSessions}); retry later`,
      };
    }
    return undefined;
  }

  private async open(
    req: IncomingMessage,
    res: ServerResponse,
    body: unknown,
    agent: string,
    principal: string | undefined,
  ): Promise<void> {
    const id = randomUUID();
    // The SDK's own transport speaks the protocol (status codes, SSE streams, session and version
    // checks, DELETE). What it does not do is done before it: authentication, Host/Origin, the bounded
    // strict body read and the message screen; it is handed the parsed body and never reads the socket.
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      onsessionclosed: (closed) => {
        const s = this.sessions.get(closed);
        this.sessions.delete(closed);
        if (s) void s.session.close();
      },
    });
    const screen = new ScreenedTransport(transport, { requireInitialize: false, validated: true });
    const refusal = screen.check(body);
    if (refusal) {
      sendJsonRpcError(res, 400, refusal.id, refusal.code, refusal.message);
      return;
    }
    const session = this.gateway.createSession(
      {
        agent,
        transport: 'http',
        ...(principal !== undefined ? { principal } : {}),
        ...(req.socket.remoteAddress ? { remote: req.socket.remoteAddress } : {}),
      },
      id,
    );
    const entry: HttpSession = { agent, transport, screen, session, lastSeen: Date.now() };
    this.sessions.set(id, entry);
    session.server.onclose = () => {
      this.sessions.delete(id);
      this.gateway.sessions.delete(session);
      void session.close();
    };
    await session.connect(screen);
    await transport.handleRequest(req, res, body);
    if (!transport.sessionId) {
      // The SDK refused the initialize request; nothing was opened.
      this.sessions.delete(id);
      await session.close();
    }
  }

  /** Closes every HTTP session. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => s.session.close()));
  }
}

/** Host/Origin checks (DNS rebinding). Returns true when it refused (and answered) the request. */
export function refuseForeignOrigin(
  req: IncomingMessage,
  res: ServerResponse,
  allowedHosts: readonly string[],
  allowedOrigins: readonly string[],
): boolean {
  const host = (req.headers.host ?? '').toLowerCase();
  if (!allowedHosts.includes(host)) {
    res.writeHead(403, { 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify({ error: 'forbidden', reason: `host \`${clip(host)}\` is not allowed` }));
    return true;
  }
  const origin = req.headers.origin;
  if (origin !== undefined && !allowedOrigins.includes(origin.toLowerCase())) {
    res.writeHead(403, { 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify({ error: 'forbidden', reason: `origin \`${clip(origin)}\` is not allowed` }));
    return true;
  }
  return false;
}

function clip(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

/** Default Host values: the loopback names on the bound port (port 80 also without it). */
export function loopbackHosts(port: number): string[] {
  const hosts = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
  return port === 80 ? [...hosts, '127.0.0.1', 'localhost', '[::1]'] : hosts;
}

/**
 * The gateway's own loopback origins on the bound port, always accepted: a page on one of them is served
 * by this server's own port, and a rebinding attacker's page has its own name in its Origin.
 */
export function loopbackOrigins(port: number, scheme: 'http' | 'https' = 'http'): string[] {
  return loopbackHosts(port).map((h) => `${scheme}://${h}`);
}

/** Refuses a body declared larger than `max` before anything else looks at the request. */
function refuseDeclaredTooLarge(req: IncomingMessage, res: ServerResponse, max: number): boolean {
  const declared = Number(req.headers['content-length']);
  if (!Number.isFinite(declared) || declared <= max) return false;
  sendJsonRpcError(res, 413, null, INVALID_REQUEST, `message exceeds the limit of ${max} bytes`, undefined, {
    connection: 'close',
  });
  return true;
}

export interface GatewayHttpServer {
  /** The listening server: `http.Server`, or with `http.tls` the TLS listener (HTTP/2 and HTTP/1.1). */
  server: Server | TlsServer;
  endpoint: McpHttpEndpoint;
  /** The connection cap (open, authenticated, evicted and refused connections). */
  connections: ConnectionGuard;
  /** e.g. `http://127.0.0.1:8787/mcp` (`https://` with `http.tls`) */
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the HTTP front door: the connection cap and deadlines (`http.*`, see front-door.ts), Host/Origin
 * checks, the declared body size, then `/mcp`, then each mounted handler in order (e.g. the decision API
 * from `createDecisionApiHandler`), then 404.
 */
export async function startGatewayHttp(
  gateway: McpGateway,
  opts: {
    authenticate: Authenticator;
    handlers?: HttpHandler[];
    host?: string;
    port?: number;
    /** Operational messages (a certificate reload that failed). */
    log?: (line: string) => void;
  },
): Promise<GatewayHttpServer> {
  const cfg = gateway.config.http;
  const endpoint = new McpHttpEndpoint(gateway, { authenticate: opts.authenticate });
  const handlers = [endpoint.handle, ...(opts.handlers ?? [])];
  let allowedHosts: string[] = [];
  let allowedOrigins: string[] = [];
  const maxBody = gateway.config.limits.maxMessageBytes;
  const limits = frontDoorLimits(cfg);
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    void (async () => {
      if (refuseForeignOrigin(req, res, allowedHosts, allowedOrigins)) return;
      if (refuseDeclaredTooLarge(req, res, maxBody)) return;
      for (const h of handlers) {
        if (await h(req, res)) return;
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not_found' }));
    })().catch((err: unknown) => {
      gateway.log(`http: ${(err as Error).message}`);
      if (!res.headersSent) res.writeHead(500).end();
    });
  };
  let server: Server | TlsServer;
  let connections: ConnectionGuard;
  let closeTls: (() => Promise<void>) | undefined;
  if (cfg.tls !== undefined) {
    const door = createTlsFrontDoor(onRequest, limits, cfg.tls, opts.log ?? ((l) => gateway.log(l)));
    server = door.server;
    connections = door.connections;
    closeTls = door.close;
  } else {
    const plain = createServer({ connectionsCheckingInterval: checkingIntervalMs(limits) }, onRequest);
    connections = guardServer(plain, limits);
    server = plain;
  }
  const host = opts.host ?? cfg.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? cfg.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  allowedHosts = (cfg.allowedHosts.length > 0 ? cfg.allowedHosts : loopbackHosts(port)).map((h) =>
    h.toLowerCase(),
  );
  const scheme = cfg.tls !== undefined ? 'https' : 'http';
  allowedOrigins = [...cfg.allowedOrigins, ...loopbackOrigins(port, scheme)].map((o) => o.toLowerCase());
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    endpoint,
    connections,
    url: `${scheme}://${shownHost}:${port}/mcp`,
    close: async () => {
      await endpoint.close();
      if (closeTls !== undefined) return closeTls();
      const plain = server as Server;
      plain.closeAllConnections();
      await new Promise<void>((r) => plain.close(() => r()));
    },
  };
}

type BodyRead = { ok: true; value: unknown } | { ok: false; status: number; code: number; message: string };

async function readBody(req: IncomingMessage, max: number): Promise<BodyRead> {
  const tooLarge: BodyRead = {
    ok: false,
    status: 413,
    code: INVALID_REQUEST,
    message: `message exceeds the limit of ${max} bytes`,
  };
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) return tooLarge;
  // Listening for data (not `for await`) so that an oversized body can be left unread and answered
  // with 413: leaving an async iterator early would destroy the socket before the answer is written.
  type Read = { ok: true; chunks: Buffer[]; size: number } | { ok: false; why: 'size' | 'error' };
  const read = await new Promise<Read>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.off('data', onData);
        req.pause();
        resolve({ ok: false, why: 'size' });
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve({ ok: true, chunks, size }));
    req.once('error', () => resolve({ ok: false, why: 'error' }));
  });
  if (!read.ok) {
    if (read.why === 'size') return tooLarge;
    return { ok: false, status: 400, code: INVALID_REQUEST, message: 'the message could not be read' };
  }
  const { chunks, size } = read;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks, size));
  } catch {
    return { ok: false, status: 400, code: PARSE_ERROR, message: 'message is not valid utf-8' };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return {
      ok: false,
      status: 400,
      code: PARSE_ERROR,
      message: `parse error: ${(err as Error).message.toLowerCase()}`,
    };
  }
}

function isInitialize(body: unknown): boolean {
  return !!body && typeof body === 'object' && (body as { method?: unknown }).method === 'initialize';
}

function idOf(body: unknown): string | number | null {
  const id =
    body && typeof body === 'object' && !Array.isArray(body) ? (body as { id?: unknown }).id : undefined;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

function sendJsonRpcError(
  res: ServerResponse,
  status: number,
  id: string | number | null,
  code: number,
  message: string,
  data?: Record<string, unknown>,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  const error = data === undefined ? { code, message } : { code, message, data };
  res.end(JSON.stringify({ jsonrpc: '2.0', id, error }));
}
