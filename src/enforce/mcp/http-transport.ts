/**
 * The server side of one Streamable HTTP session, on Node's own `IncomingMessage`/`ServerResponse`.
 * Same wire behaviour as the SDK's `StreamableHTTPServerTransport` (status codes, error bodies, headers,
 * one standalone GET stream, DELETE), without its Web-Standard adapter: no `Request`/`Response` objects,
 * no web streams per call.
 *
 * A POST that carries a request is answered as JSON when the response is the first message for it, and
 * turns into an SSE stream as soon as anything else must go first (progress, a relayed sampling or
 * elicitation request, a log message) or the call outlasts the keep-alive interval. Clients must accept
 * both (`Accept: application/json, text/event-stream`), so every relay keeps working and plain calls skip
 * the event-stream framing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isJsonContentType } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  isInitializeRequest,
  type JSONRPCMessage,
  JSONRPCMessageSchema,
  type JSONRPCRequest,
  type MessageExtraInfo,
  type RequestId,
  SUPPORTED_PROTOCOL_VERSIONS,
} from '@modelcontextprotocol/sdk/types.js';

/** The SDK's default interval of SSE keep-alive comments. */
const KEEP_ALIVE_MS = 15_000;

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
} as const;

/** The HTTP response that carries the reply to one request. */
interface Reply {
  res: ServerResponse;
  /** Headers sent as an event stream (else nothing sent yet: the reply may still be plain JSON). */
  sse: boolean;
  timer: NodeJS.Timeout | undefined;
}

export interface HttpSessionTransportOptions {
  /** Called when the client ends the session with DELETE. */
  onsessionclosed?: (sessionId: string) => void;
  /** SSE keep-alive comment interval; default 15 s. */
  keepAliveMs?: number;
}

/** One Streamable HTTP session (stateful: a session id is issued on `initialize`). */
export class HttpSessionTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: (<T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void) | undefined;
  /** Set once `initialize` passed the transport's checks. */
  sessionId: string | undefined;
  private readonly replies = new Map<RequestId, Reply>();
  private standalone: { res: ServerResponse; timer: NodeJS.Timeout | undefined } | undefined;
  private closed = false;
  private readonly keepAliveMs: number;

  constructor(
    private readonly id: string,
    private readonly opts: HttpSessionTransportOptions = {},
  ) {
    this.keepAliveMs = opts.keepAliveMs ?? KEEP_ALIVE_MS;
  }

  async start(): Promise<void> {}

  /**
   * Serves one HTTP request of this session. For POST, `body` is the parsed JSON (already bounded and
   * screened by the caller); it is validated as one JSON-RPC message here.
   */
  async handleRequest(req: IncomingMessage, res: ServerResponse, body?: unknown): Promise<void> {
    if (this.closed) return jsonError(res, 404, -32001, 'Session not found');
    switch (req.method) {
      case 'POST':
        return this.post(req, res, body);
      case 'GET':
        return this.get(req, res);
      case 'DELETE':
        return this.delete(req, res);
      default:
        res.writeHead(405, { allow: 'GET, POST, DELETE', 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            error: { code: -32000, message: 'Method not allowed.' },
            id: null,
          }),
        );
    }
  }

  private post(req: IncomingMessage, res: ServerResponse, body: unknown): undefined {
    const accept = req.headers.accept;
    if (!accept?.includes('application/json') || !accept.includes('text/event-stream')) {
      return this.refuse(
        res,
        406,
        -32000,
        'Not Acceptable: Client must accept both application/json and text/event-stream',
      );
    }
    if (!isJsonContentType(req.headers['content-type'] ?? null)) {
      return this.refuse(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
    }
    const parsed = JSONRPCMessageSchema.safeParse(body);
    if (!parsed.success) return this.refuse(res, 400, -32700, 'Parse error: Invalid JSON-RPC message');
    const message = parsed.data;
    const isRequest = 'method' in message && 'id' in message;
    if (isRequest && message.method === 'initialize' && isInitializeRequest(message)) {
      if (this.sessionId !== undefined) {
        return this.refuse(res, 400, -32600, 'Invalid Request: Server already initialized');
      }
      this.sessionId = this.id;
    } else {
      const bad = this.checkSession(req, res);
      if (bad) return;
    }
    const extra: MessageExtraInfo = { requestInfo: { headers: req.headers } };
    if (!isRequest) {
      // Notifications and responses (to relayed requests) get 202 with no body.
      res.writeHead(202).end();
      this.onmessage?.(message, extra);
      return;
    }
    const id = (message as JSONRPCRequest).id;
    const reply: Reply = { res, sse: false, timer: undefined };
    this.replies.set(id, reply);
    res.on('close', () => {
      // The client went away: later messages for this request have nowhere to go.
      if (this.replies.get(id) === reply) this.drop(id, reply);
    });
    // A long call turns into an event stream so keep-alive comments can flow (as the SDK's would).
    reply.timer = setTimeout(() => {
      if (this.replies.get(id) !== reply || reply.sse) return;
      this.upgrade(reply);
      reply.res.write(': keepalive\n\n');
    }, this.keepAliveMs);
    reply.timer.unref();
    this.onmessage?.(message, extra);
  }

  private get(req: IncomingMessage, res: ServerResponse): undefined {
    if (!req.headers.accept?.includes('text/event-stream')) {
      return this.refuse(res, 406, -32000, 'Not Acceptable: Client must accept text/event-stream');
    }
    if (this.checkSession(req, res)) return;
    if (this.standalone) {
      return this.refuse(res, 409, -32000, 'Conflict: Only one SSE stream is allowed per session');
    }
    res.writeHead(200, this.sseHeaders());
    res.flushHeaders();
    const stream = { res, timer: this.keepAlive(res) };
    this.standalone = stream;
    res.on('close', () => {
      clearInterval(stream.timer);
      if (this.standalone === stream) this.standalone = undefined;
    });
  }

  private async delete(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.checkSession(req, res)) return;
    try {
      await Promise.resolve(this.opts.onsessionclosed?.(this.id));
      res.writeHead(200).end();
    } finally {
      await this.close();
    }
  }

  /** Session and protocol-version checks of every request after `initialize`; true when it answered. */
  private checkSession(req: IncomingMessage, res: ServerResponse): boolean {
    if (this.sessionId === undefined) {
      this.refuse(res, 400, -32000, 'Bad Request: Server not initialized');
      return true;
    }
    const sid = req.headers['mcp-session-id'];
    if (!sid) {
      this.refuse(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
      return true;
    }
    if (sid !== this.sessionId) {
      this.refuse(res, 404, -32001, 'Session not found');
      return true;
    }
    const version = req.headers['mcp-protocol-version'];
    if (typeof version === 'string' && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
      const supported = SUPPORTED_PROTOCOL_VERSIONS.join(', ');
      this.refuse(
        res,
        400,
        -32000,
        `Bad Request: Unsupported protocol version: ${version} (supported versions: ${supported})`,
      );
      return true;
    }
    return false;
  }

  private refuse(res: ServerResponse, status: number, code: number, message: string): undefined {
    this.onerror?.(new Error(message));
    jsonError(res, status, code, message);
    return undefined;
  }

  private sseHeaders(): Record<string, string> {
    return this.sessionId !== undefined
      ? { ...SSE_HEADERS, 'mcp-session-id': this.sessionId }
      : { ...SSE_HEADERS };
  }

  private keepAlive(res: ServerResponse): NodeJS.Timeout | undefined {
    if (!Number.isFinite(this.keepAliveMs) || this.keepAliveMs < 1) return undefined;
    const timer = setInterval(() => {
      if (!res.writableEnded) res.write(': keepalive\n\n');
    }, this.keepAliveMs);
    timer.unref();
    return timer;
  }

  private upgrade(reply: Reply): void {
    reply.sse = true;
    clearTimeout(reply.timer);
    reply.res.writeHead(200, this.sseHeaders());
    reply.res.flushHeaders();
    reply.timer = this.keepAlive(reply.res);
  }

  private drop(id: RequestId, reply: Reply): void {
    clearTimeout(reply.timer);
    clearInterval(reply.timer);
    this.replies.delete(id);
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const isResponse = ('result' in message || 'error' in message) && !('method' in message);
    const target = isResponse ? (message as { id?: RequestId }).id : options?.relatedRequestId;
    if (target === undefined) {
      if (isResponse) {
        throw new Error(
          'Cannot send a response on a standalone SSE stream unless resuming a previous client request',
        );
      }
      // Unrelated server messages go on the standalone stream, or nowhere when there is none.
      if (this.standalone && !this.standalone.res.writableEnded) {
        this.standalone.res.write(sseEvent(message));
      }
      return;
    }
    const reply = this.replies.get(target);
    if (!reply) throw new Error(`No connection established for request ID: ${String(target)}`);
    if (!isResponse) {
      if (!reply.sse) this.upgrade(reply);
      reply.res.write(sseEvent(message));
      return;
    }
    this.drop(target, reply);
    if (reply.sse) {
      reply.res.end(sseEvent(message));
      return;
    }
    const json = JSON.stringify(message);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(json),
    };
    if (this.sessionId !== undefined) headers['mcp-session-id'] = this.sessionId;
    reply.res.writeHead(200, headers);
    reply.res.end(json);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [id, reply] of this.replies) {
      this.drop(id, reply);
      if (!reply.sse && !reply.res.headersSent) reply.res.writeHead(200, this.sseHeaders());
      reply.res.end();
    }
    if (this.standalone) {
      clearInterval(this.standalone.timer);
      this.standalone.res.end();
      this.standalone = undefined;
    }
    this.onclose?.();
  }
}

function sseEvent(message: JSONRPCMessage): string {
  return `event: message\ndata: ${JSON.stringify(message)}\n\n`;
}

function jsonError(res: ServerResponse, status: number, code: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}
