/**
 * Screens every message an agent sends before the MCP protocol layer sees it: no batches, valid ids, no
 * duplicate in-flight ids, nothing before `initialize`, no `__proto__` keys (the SDK's schema parse
 * drops them silently, so the decided and the sent arguments could differ from what the agent meant).
 * A request whose params do not fit its method's schema is refused with invalid-params naming the field
 * (the SDK's own parse would answer internal-error with its validator's dump).
 * Wraps any SDK transport before it is given to the SDK's `connect`; bad messages get a JSON-RPC error and
 * never reach a handler.
 */
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  GetPromptRequestSchema,
  InitializeRequestSchema,
  type JSONRPCMessage,
  JSONRPCMessageSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  type MessageExtraInfo,
  PingRequestSchema,
  ReadResourceRequestSchema,
  type RequestId,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { ZodType } from 'zod';

export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const INVALID_PARAMS = -32602;

const MAX_DEPTH = 64;

/** Why a message is refused, or undefined when it may pass. */
export interface Refusal {
  id: RequestId | null;
  code: number;
  message: string;
}

/** Finds a `__proto__` key or excessive nesting anywhere in a parsed JSON value. */
export function findForbiddenKey(value: unknown, path = '', depth = 0): string | undefined {
  if (depth > MAX_DEPTH) return `nesting deeper than ${MAX_DEPTH} levels at \`${path || '/'}\``;
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const r = findForbiddenKey(value[i], `${path}/${i}`, depth + 1);
      if (r) return r;
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (key === '__proto__') return `key \`__proto__\` is not allowed (at \`${path}/${key}\`)`;
    const r = findForbiddenKey((value as Record<string, unknown>)[key], `${path}/${key}`, depth + 1);
    if (r) return r;
  }
  return undefined;
}

function rawId(msg: unknown): RequestId | null {
  if (msg && typeof msg === 'object' && !Array.isArray(msg)) {
    const id = (msg as { id?: unknown }).id;
    if (typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id))) return id;
  }
  return null;
}

const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);

/** A JSON object: not null, not an array. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * True for a request the SDK's message schema accepts as it stands: exactly the request keys, version 2.0,
 * a string or safe-integer id, a string method, and params absent or an object without `_meta`. Such a
 * message parses to an equal copy of itself, so it skips the parse; every other message is parsed.
 */
export function isPlainRequest(raw: unknown): boolean {
  if (!isObject(raw)) return false;
  const m = raw;
  for (const k in m) if (!REQUEST_KEYS.has(k)) return false;
  const p = m.params;
  return (
    m.jsonrpc === '2.0' &&
    (typeof m.id === 'string' || Number.isSafeInteger(m.id)) &&
    typeof m.method === 'string' &&
    (p === undefined || (isObject(p) && !('_meta' in p)))
  );
}

/** The request schemas of the methods a gateway session answers, by method. */
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

/** The shape problems of `tools/call` params an agent most often gets wrong, said plainly. */
function toolCallProblem(p: unknown): string | undefined {
  if (!isObject(p)) return '`params` must be an object';
  if (typeof p.name !== 'string') return '`params.name` must be a string';
  if (p.arguments !== undefined && !isObject(p.arguments)) return '`params.arguments` must be an object';
  return undefined;
}

/**
 * Why a request's params do not fit its method's schema (the first problem, with its field), or undefined
 * when they fit or the method is not one a session answers.
 */
export function malformedRequest(msg: { method: string; params?: unknown }): string | undefined {
  const plain = msg.method === 'tools/call' ? toolCallProblem(msg.params) : undefined;
  if (plain !== undefined) return `invalid tools/call request: ${plain}`;
  const r = REQUEST_SCHEMAS.get(msg.method)?.safeParse(msg);
  if (!r || r.success) return undefined;
  const issue = r.error.issues[0];
  const path = issue?.path.length ? `\`${issue.path.join('.')}\`: ` : '';
  const what = (issue?.message ?? 'malformed').replace(/^Invalid input: /, '').toLowerCase();
  return `invalid ${msg.method} request: ${path}${what}`;
}

/** A JSON-RPC error response for a refused message. */
export function errorResponse(r: Refusal): JSONRPCMessage {
  return {
    jsonrpc: '2.0',
    id: r.id,
    error: { code: r.code, message: r.message },
  } as unknown as JSONRPCMessage;
}

/** Transport wrapper that applies the screen. */
export class ScreenedTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: (<T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void) | undefined;
  private readonly inFlight = new Set<RequestId>();
  private initializeId: RequestId | undefined;
  private initialized = false;
  private readonly requireInitialize: boolean;
  private readonly validated: boolean;

  /**
   * `requireInitialize` is off for HTTP (the transport enforces it). `validated`: the inner transport
   * delivers only messages it already checked against the JSON-RPC message schema, so they are not
   * parsed a second time.
   */
  constructor(
    readonly inner: Transport,
    opts: { requireInitialize: boolean; validated?: boolean },
  ) {
    this.requireInitialize = opts.requireInitialize;
    this.validated = opts.validated ?? false;
  }

  get sessionId(): string | undefined {
    return this.inner.sessionId;
  }

  setProtocolVersion(version: string): void {
    this.inner.setProtocolVersion?.(version);
  }

  async start(): Promise<void> {
    this.inner.onmessage = (m, extra) => this.receive(m, extra);
    this.inner.onclose = () => this.onclose?.();
    this.inner.onerror = (e) => this.onerror?.(e);
    await this.inner.start();
  }

  /** True while a request with this id awaits its response. */
  isInFlight(id: RequestId): boolean {
    return this.inFlight.has(id);
  }

  /** Checks one raw (already JSON-parsed) message; undefined when it may pass. */
  check(raw: unknown): Refusal | undefined {
    if (Array.isArray(raw)) {
      return {
        id: null,
        code: INVALID_REQUEST,
        message: 'json-rpc batches are not supported: send one message at a time',
      };
    }
    const bad = findForbiddenKey(raw);
    if (bad) return { id: rawId(raw), code: INVALID_REQUEST, message: `invalid message: ${bad}` };
    const m = raw as { id?: unknown; method?: unknown };
    if (m && typeof m === 'object' && typeof m.method === 'string' && 'id' in m) {
      const id = rawId(raw);
      if (id === null) {
        return { id: null, code: INVALID_REQUEST, message: 'invalid request id: use a string or an integer' };
      }
      if (this.inFlight.has(id)) {
        return {
          id: null,
          code: INVALID_REQUEST,
          message: `request id \`${String(id)}\` is already in use by a pending request`,
        };
      }
      if (m.method === 'initialize') {
        if (this.initialized || this.initializeId !== undefined) {
          return { id, code: INVALID_REQUEST, message: 'the session is already initialized' };
        }
      } else if (this.requireInitialize && !this.initialized && m.method !== 'ping') {
        return {
          id,
          code: INVALID_REQUEST,
          message: `received \`${m.method}\` before \`initialize\`: initialize the session first`,
        };
      }
    }
    return undefined;
  }

  private receive(raw: unknown, extra?: MessageExtraInfo): void {
    const refusal = this.check(raw);
    if (refusal) {
      void this.inner.send(errorResponse(refusal)).catch((e: unknown) => this.onerror?.(e as Error));
      return;
    }
    let msg = raw as JSONRPCMessage;
    if (!this.validated && !isPlainRequest(raw)) {
      const parsed = JSONRPCMessageSchema.safeParse(raw);
      if (!parsed.success) {
        const r = { id: rawId(raw), code: INVALID_REQUEST, message: 'invalid json-rpc message' };
        void this.inner.send(errorResponse(r)).catch((e: unknown) => this.onerror?.(e as Error));
        return;
      }
      msg = parsed.data;
    }
    if ('method' in msg && 'id' in msg) {
      const why = malformedRequest(msg);
      if (why !== undefined) {
        // Nothing is decided or forwarded for it: the SDK's handler never sees the request.
        const r = { id: msg.id, code: INVALID_PARAMS, message: why };
        void this.inner.send(errorResponse(r)).catch((e: unknown) => this.onerror?.(e as Error));
        return;
      }
      this.inFlight.add(msg.id);
      if (msg.method === 'initialize') this.initializeId = msg.id;
    }
    this.onmessage?.(msg, extra);
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (!('method' in message) && 'id' in message && message.id !== undefined) {
      this.inFlight.delete(message.id);
      if (this.initializeId !== undefined && message.id === this.initializeId) {
        this.initializeId = undefined;
        if ('result' in message) this.initialized = true;
      }
    }
    await this.inner.send(message, options);
  }

  async close(): Promise<void> {
    await this.inner.close();
  }
}
