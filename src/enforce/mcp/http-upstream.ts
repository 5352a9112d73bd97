/**
 * The client side of a Streamable HTTP connection from the gateway to one upstream, on `node:http(s)`
 * with a keep-alive agent (Nagle off). Same wire behaviour as the SDK's `StreamableHTTPClientTransport`
 * for what the gateway uses (configured headers, session id, protocol version, JSON or SSE replies,
 * the standalone GET stream, resumption with `Last-Event-ID`, redirects only within the origin), without
 * `fetch` and web streams per call. No OAuth: upstream credentials are static headers in the config.
 * Reads are bounded: a JSON body or an event over `maxMessageBytes` is not kept; the request it answers
 * gets a "result too large" error (as over stdio, see `stdio-upstream.ts`) and the session goes on.
 */
import {
  type ClientRequest,
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingMessage,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mediaTypeEssence } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  type JSONRPCMessage,
  JSONRPCMessageSchema,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';
import { context, propagation } from '@opentelemetry/api';
import { TopLevelScanner, tooLargeResponse } from './stdio-upstream.js';

const MAX_REDIRECTS = 5;
/** The SDK's reconnection defaults. */
const RECONNECT = { initialMs: 1000, maxMs: 30_000, grow: 1.5, maxRetries: 2 };

interface StreamOptions {
  /** Last-Event-ID to resume from. */
  resumptionToken?: string | undefined;
  /** Responses replayed on a resumed stream get this id (a request re-sent as a resumption). */
  replayMessageId?: RequestId | undefined;
  onresumptiontoken?: ((token: string) => void) | undefined;
  /** The request a POST's response stream answers, for an oversized answer that names no usable id. */
  requestId?: RequestId | undefined;
}

/** A Streamable HTTP client transport for one upstream URL. */
export class HttpUpstreamTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: (<T extends JSONRPCMessage>(message: T) => void) | undefined;
  private session: string | undefined;
  private protocolVersion: string | undefined;
  private readonly agent: HttpAgent;
  private readonly open = new Set<ClientRequest>();
  private started = false;
  private closed = false;
  private retryMs: number | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly inbox: JSONRPCMessage[] = [];
  private draining = false;

  constructor(
    private readonly url: URL,
    private readonly headers: Record<string, string> = {},
    private readonly maxMessageBytes: number = Number.POSITIVE_INFINITY,
  ) {
    this.agent =
      url.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, noDelay: true })
        : new HttpAgent({ keepAlive: true, noDelay: true });
  }

  get sessionId(): string | undefined {
    return this.session;
  }

  setProtocolVersion(version: string): void {
    this.protocolVersion = version;
  }

  async start(): Promise<void> {
    if (this.started) throw new Error('HttpUpstreamTransport already started');
    this.started = true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    for (const r of this.open) r.destroy();
    this.open.clear();
    this.agent.destroy();
    this.onclose?.();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    try {
      if (options?.resumptionToken) {
        const replay = 'method' in message && 'id' in message ? message.id : undefined;
        this.openStream({ resumptionToken: options.resumptionToken, replayMessageId: replay }).catch((e) =>
          this.onerror?.(e as Error),
        );
        return;
      }
      const body = JSON.stringify(message);
      const res = await this.request(
        'POST',
        {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': String(Buffer.byteLength(body)),
        },
        body,
      );
      const sid = res.headers['mcp-session-id'];
      if (typeof sid === 'string' && sid) this.session = sid;
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        const text = await readText(res, 64 * 1024).catch(() => null);
        throw new StreamableHTTPError(
          status,
          `Error POSTing to endpoint: ${redirectText(res, this.url) ?? text}`,
        );
      }
      if (status === 202) {
        res.resume();
        if ('method' in message && message.method === 'notifications/initialized' && !('id' in message)) {
          this.openStream({}).catch((e) => this.onerror?.(e as Error));
        }
        return;
      }
      if (!('method' in message && 'id' in message)) {
        res.resume();
        return;
      }
      const contentType = res.headers['content-type'] ?? null;
      const media = mediaTypeEssence(contentType);
      if (media === 'text/event-stream') {
        this.readStream(res, { onresumptiontoken: options?.onresumptiontoken, requestId: message.id }, false);
      } else if (media === 'application/json') {
        const body = await readText(res, this.maxMessageBytes);
        if (body === undefined) {
          // Reading stopped at the limit (the socket is dropped): the request fails, the session stays.
          this.deliver(tooLargeResponse(message.id, undefined, this.maxMessageBytes));
          return;
        }
        const data = JSON.parse(body) as unknown;
        const messages = (Array.isArray(data) ? data : [data]).map((m) => JSONRPCMessageSchema.parse(m));
        for (const m of messages) this.deliver(m);
      } else {
        res.resume();
        throw new StreamableHTTPError(-1, `Unexpected content type: ${contentType}`);
      }
    } catch (error) {
      this.onerror?.(error as Error);
      throw error;
    }
  }

  /**
   * Hands messages to the protocol one per event-loop turn. The SDK's protocol dispatches notifications
   * (progress) a microtask later but responses at once, so a progress notification and the response
   * read in one chunk would otherwise reach it in the wrong order and the progress would be lost.
   */
  private deliver(message: JSONRPCMessage): void {
    if (this.draining) {
      this.inbox.push(message);
      return;
    }
    // The gate stays shut until the next turn, so a second message read in this turn waits for it.
    this.draining = true;
    this.onmessage?.(message);
    setImmediate(this.drain);
  }

  private readonly drain = (): void => {
    const m = this.inbox.shift();
    if (m === undefined || this.closed) {
      this.inbox.length = 0;
      this.draining = false;
      return;
    }
    this.onmessage?.(m);
    setImmediate(this.drain);
  };

  /** The standalone GET stream (or a resumed one): server-initiated messages arrive here. */
  private async openStream(options: StreamOptions): Promise<void> {
    try {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      if (options.resumptionToken) headers['last-event-id'] = options.resumptionToken;
      const res = await this.request('GET', headers);
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        res.resume();
        if (status === 405) return; // the server offers no standalone stream
        throw new StreamableHTTPError(
          status,
          `Failed to open SSE stream: ${redirectText(res, this.url) ?? res.statusMessage ?? ''}`,
        );
      }
      this.readStream(res, options, true);
    } catch (error) {
      this.onerror?.(error as Error);
      throw error;
    }
  }

  private reconnect(options: StreamOptions, attempt: number): void {
    if (attempt >= RECONNECT.maxRetries) {
      this.onerror?.(new Error(`Maximum reconnection attempts (${RECONNECT.maxRetries}) exceeded.`));
      return;
    }
    const delay = this.retryMs ?? Math.min(RECONNECT.initialMs * RECONNECT.grow ** attempt, RECONNECT.maxMs);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.openStream(options).catch((e: unknown) => {
        this.onerror?.(new Error(`Failed to reconnect SSE stream: ${(e as Error)?.message ?? String(e)}`));
        this.reconnect(options, attempt + 1);
      });
    }, delay);
    this.reconnectTimer.unref();
  }

  /** Parses an event stream (WHATWG rules) and delivers each `message` event. */
  private readStream(res: IncomingMessage, options: StreamOptions, reconnectable: boolean): void {
    let lastEventId: string | undefined;
    let primed = false;
    let gotResponse = false;
    let buf = '';
    let first = true;
    let data: string[] = [];
    let dataSize = 0;
    /** Set while an event's data is over the limit: it is scanned for its id, not kept. */
    let scanner: TopLevelScanner | undefined;
    /** A line over the limit without its newline yet: `data` is scanned, anything else dropped. */
    let longLine: 'data' | 'drop' | undefined;
    let event = '';
    let id: string | undefined;
    const limit = this.maxMessageBytes;
    /** The event's scanner, started with the data kept so far. */
    const toScanner = (): TopLevelScanner => {
      if (!scanner) {
        // INVARIANT: bounded memory — from here on this event is scanned, not kept.
        scanner = new TopLevelScanner();
        scanner.feed(Buffer.from(data.join('\n')));
        data = [];
        dataSize = 0;
      }
      return scanner;
    };
    const addData = (value: string) => {
      if (scanner) {
        scanner.feed(Buffer.from(`\n${value}`));
        return;
      }
      data.push(value);
      dataSize += value.length + 1;
      if (dataSize > limit) toScanner();
    };
    const dispatchOversized = (s: TopLevelScanner) => {
      const found = s.result();
      const target = found.method ? undefined : (found.id ?? options.requestId);
      if (target !== undefined) {
        gotResponse = true;
        this.deliver(tooLargeResponse(options.replayMessageId ?? target, found.bytes, limit));
      } else this.onerror?.(new Error(`skipped an event of ${found.bytes} bytes (the limit is ${limit})`));
    };
    const dispatch = () => {
      if (id !== undefined) {
        lastEventId = id;
        primed = true;
        options.onresumptiontoken?.(id);
      }
      const payload = data.join('\n');
      const type = event;
      const over = scanner;
      data = [];
      dataSize = 0;
      scanner = undefined;
      event = '';
      id = undefined;
      if (over) {
        if (!type || type === 'message') dispatchOversized(over);
        return;
      }
      if (!payload || (type && type !== 'message')) return;
      try {
        const message = JSONRPCMessageSchema.parse(JSON.parse(payload));
        if ('result' in message || 'error' in message) {
          gotResponse = true;
          if (options.replayMessageId !== undefined)
            (message as { id?: RequestId }).id = options.replayMessageId;
        }
        this.deliver(message);
      } catch (error) {
        this.onerror?.(error as Error);
      }
    };
    const line = (l: string) => {
      if (l === '') {
        if (data.length > 0 || scanner || id !== undefined || event) dispatch();
        return;
      }
      if (l.charCodeAt(0) === 58) return; // ':' comment (keep-alive)
      const colon = l.indexOf(':');
      const field = colon < 0 ? l : l.slice(0, colon);
      let value = colon < 0 ? '' : l.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
      if (field === 'data') addData(value);
      else if (field === 'event') event = value;
      else if (field === 'id') {
        if (!value.includes('\0')) id = value;
      } else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
    };
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      if (first && buf.length > 0) {
        if (buf.charCodeAt(0) === 0xfeff) buf = buf.slice(1);
        first = false;
      }
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        // A CR at the very end may be the first half of CRLF: wait for more.
        if (c === 13 && i === buf.length - 1) break;
        const text = buf.slice(start, i);
        if (longLine === 'data') scanner?.feed(Buffer.from(text));
        else if (longLine === undefined) line(text);
        longLine = undefined;
        if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
        start = i + 1;
      }
      buf = buf.slice(start);
      if (longLine === undefined && buf.length > limit) {
        // A line longer than the limit: a data line makes its event oversized, anything else is dropped.
        longLine = buf.startsWith('data:') ? 'data' : 'drop';
        if (longLine === 'data') {
          const first = data.length === 0 && !scanner;
          toScanner().feed(Buffer.from(`${first ? '' : '\n'}${buf.slice(buf.charCodeAt(5) === 32 ? 6 : 5)}`));
        }
        buf = '';
      } else if (longLine !== undefined && buf.length > 0 && buf.charCodeAt(buf.length - 1) !== 13) {
        // The long line goes on (a CR at the end waits: it may be the first half of CRLF).
        if (longLine === 'data') scanner?.feed(Buffer.from(buf));
        buf = '';
      }
    });
    const ended = (error?: Error) => {
      if (error) this.onerror?.(new Error(`SSE stream disconnected: ${error}`));
      if ((reconnectable || primed) && !gotResponse && !this.closed) {
        this.reconnect(
          {
            resumptionToken: lastEventId,
            onresumptiontoken: options.onresumptiontoken,
            replayMessageId: options.replayMessageId,
          },
          0,
        );
      }
    };
    let done = false;
    res.on('end', () => {
      if (done) return;
      done = true;
      ended();
    });
    res.on('error', (e) => {
      if (done) return;
      done = true;
      ended(e);
    });
    res.on('aborted', () => {
      if (done) return;
      done = true;
      ended(new Error('aborted'));
    });
  }

  /** One HTTP request with the session headers, following redirects only within the origin. */
  private async request(
    method: string,
    extra: Record<string, string>,
    body?: string,
  ): Promise<IncomingMessage> {
    if (this.closed) throw new Error('transport closed');
    const headers: Record<string, string> = {};
    if (this.session) headers['mcp-session-id'] = this.session;
    if (this.protocolVersion) headers['mcp-protocol-version'] = this.protocolVersion;
    Object.assign(headers, this.headers, extra);
    // W3C trace context of the call being forwarded (`traceparent`, `tracestate`), when the process has
    // an OpenTelemetry propagator and the caller's request carried a trace; otherwise nothing is added.
    propagation.inject(context.active(), headers);
    let target = this.url;
    for (let hop = 0; ; hop++) {
      const res = await this.once(target, method, headers, body);
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      const keepsMethod = status === 307 || status === 308 || method === 'GET';
      if (status < 300 || status >= 400 || !location || hop === MAX_REDIRECTS || !keepsMethod) return res;
      let next: URL;
      try {
        next = new URL(location, target);
      } catch {
        return res;
      }
      if (next.origin !== this.url.origin || next.username || next.password) return res;
      res.resume();
      target = next;
    }
  }

  private once(
    url: URL,
    method: string,
    headers: Record<string, string>,
    body: string | undefined,
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(url, { method, headers, agent: this.agent });
      this.open.add(req);
      req.on('response', (res) => {
        res.on('close', () => this.open.delete(req));
        resolve(res);
      });
      req.on('error', (e) => {
        this.open.delete(req);
        reject(e);
      });
      req.on('close', () => {
        if (this.closed) reject(new Error('transport closed'));
      });
      req.end(body);
    });
  }
}

/** The body as text; undefined (and the response destroyed) once it passes `limit` bytes. */
function readText(res: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        chunks.length = 0;
        // Settled first: destroying emits `aborted`, which must not turn this into a failure.
        resolve(undefined);
        res.destroy();
        return;
      }
      chunks.push(c);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('response aborted')));
  });
}

/** Names an unfollowed redirect (without userinfo, query or fragment), as the SDK does. */
function redirectText(res: IncomingMessage, from: URL): string | undefined {
  const status = res.statusCode ?? 0;
  const location = res.headers.location;
  if (status < 300 || status >= 400 || !location) return undefined;
  let target: URL;
  try {
    target = new URL(location, from);
  } catch {
    return undefined;
  }
  target.username = target.password = target.search = target.hash = '';
  return `Redirect to ${target.href} not followed (redirectPolicy: 'same-origin')`;
}
