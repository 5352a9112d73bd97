/**
 * The client side of a stdio connection from the gateway to one upstream process, with a bounded reader.
 * The SDK's `StdioClientTransport` buffers every line whole and, when one passes its limit (10 MiB), closes
 * the transport, which kills the upstream and fails every call in flight on it. Here a line over the limit
 * is skipped in constant memory up to its newline; if it was the answer to a request, that request gets a
 * "result too large" JSON-RPC error (`RESULT_TOO_LARGE`) and the process keeps running. Everything else
 * (spawn, environment, framing, close) behaves as the SDK's transport; the protocol stays the SDK's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { deserializeMessage, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js';

/** JSON-RPC error code (implementation-defined range) of a response the reader refused as too large. */
export const RESULT_TOO_LARGE = -32098;
/** `error.data` key of such a response: `{ bytes, limit }`. */
export const TOO_LARGE_KEY = 'execlayer.dev/tooLarge';

const NEWLINE = 0x0a;
/** How long `close` waits for the process after closing its stdin, and again after SIGTERM (as the SDK). */
const CLOSE_GRACE_MS = 2000;

/** What the reader found on one line over the limit. */
export interface OversizedLine {
  bytes: number;
  /** The top-level `id`, when it had one (string or number). */
  id?: RequestId;
  /** It had a top-level `method` (a request or notification from the upstream). */
  method: boolean;
}

/**
 * Splits a byte stream into newline-terminated lines. A line within `limit` bytes is handed on whole; a
 * longer one is scanned as it streams past (for its top-level `id` and whether it has a `method`) and
 * handed on as an `OversizedLine`. Memory stays within `limit` plus one chunk whatever the input.
 */
export class BoundedLineReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private scanner: TopLevelScanner | undefined;

  constructor(
    private readonly limit: number,
    private readonly onLine: (line: string) => void,
    private readonly onOversized: (line: OversizedLine) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      this.take(chunk.subarray(start, end));
      if (nl === -1) return;
      this.endLine();
      start = nl + 1;
    }
  }

  private take(part: Buffer): void {
    if (part.length === 0) return;
    if (this.scanner) {
      this.scanner.feed(part);
      return;
    }
    this.chunks.push(part);
    this.size += part.length;
    if (this.size > this.limit) {
      // INVARIANT: bounded memory — from here on the line is scanned, not kept.
      this.scanner = new TopLevelScanner();
      for (const c of this.chunks) this.scanner.feed(c);
      this.chunks = [];
      this.size = 0;
    }
  }

  private endLine(): void {
    const scanner = this.scanner;
    if (scanner) {
      this.scanner = undefined;
      this.onOversized(scanner.result());
      return;
    }
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    this.size = 0;
    const line = buf.toString('utf8').replace(/\r$/, '');
    if (line.trim() !== '') this.onLine(line);
  }

  clear(): void {
    this.chunks = [];
    this.size = 0;
    this.scanner = undefined;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MAX_CAPTURE = 256;

/**
 * Follows a JSON text byte by byte without keeping it: nesting depth, strings and escapes, the names of the
 * top-level keys and the raw value of the top-level `id`. Enough to answer the right request.
 */
export class TopLevelScanner {
  private bytes = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private expectKey = false;
  private key: number[] | undefined;
  private lastKey = '';
  private idRaw: number[] | undefined;
  private idDone = false;
  private idText = '';
  private method = false;

  feed(buf: Buffer): void {
    this.bytes += buf.length;
    for (let i = 0; i < buf.length; i++) this.step(buf[i]!);
  }

  private step(b: number): void {
    if (this.inString) {
      if (this.escaped) this.escaped = false;
      else if (b === BACKSLASH) this.escaped = true;
      else if (b === QUOTE) {
        this.inString = false;
        if (this.key) {
          this.lastKey = this.key.length <= MAX_CAPTURE ? Buffer.from(this.key).toString('utf8') : '';
          if (this.lastKey === 'method') this.method = true;
          this.key = undefined;
          return;
        }
      }
      this.capture(b);
      return;
    }
    if (b === QUOTE) {
      this.inString = true;
      if (this.depth === 1 && this.expectKey) {
        this.expectKey = false;
        this.key = [];
      } else this.capture(b);
      return;
    }
    if (b === 0x7b || b === 0x5b) {
      // { [
      this.capture(b);
      this.depth += 1;
      if (this.depth === 1 && b === 0x7b) this.expectKey = true;
      return;
    }
    if (b === 0x7d || b === 0x5d) {
      // } ]
      if (this.depth === 1) this.finishId();
      else this.capture(b);
      this.depth -= 1;
      return;
    }
    if (this.depth === 1 && b === 0x3a && this.lastKey === 'id' && !this.idDone) {
      // ':' after the top-level key `id`
      this.idRaw = [];
      return;
    }
    if (this.depth === 1 && b === 0x2c) {
      // ','
      this.finishId();
      this.expectKey = true;
      this.lastKey = '';
      return;
    }
    if (b > 0x20) this.capture(b);
  }

  private capture(b: number): void {
    if (this.key) {
      if (this.key.length <= MAX_CAPTURE) this.key.push(b);
      return;
    }
    if (this.idRaw && this.idRaw.length <= MAX_CAPTURE) this.idRaw.push(b);
  }

  private finishId(): void {
    if (!this.idRaw) return;
    if (this.idRaw.length <= MAX_CAPTURE) this.idText = Buffer.from(this.idRaw).toString('utf8');
    this.idRaw = undefined;
    this.idDone = true;
  }

  result(): OversizedLine {
    const out: OversizedLine = { bytes: this.bytes, method: this.method };
    try {
      const id = this.idText ? (JSON.parse(this.idText) as unknown) : undefined;
      if (typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id))) out.id = id;
    } catch {
      // not a usable id: nobody is answered
    }
    return out;
  }
}

/**
 * The error response that stands in for an answer refused as too large. `bytes` is the answer's size, or
 * undefined when reading stopped at the limit.
 */
export function tooLargeResponse(id: RequestId, bytes: number | undefined, limit: number): JSONRPCMessage {
  return {
    jsonrpc: '2.0',
    id,
    error: {
      code: RESULT_TOO_LARGE,
      message: `result too large: ${bytes === undefined ? 'more than ' : ''}${bytes ?? limit} bytes; the limit is ${limit}`,
      data: { [TOO_LARGE_KEY]: { ...(bytes !== undefined ? { bytes } : {}), limit } },
    },
  };
}

/** How to start one stdio upstream. */
export interface StdioUpstreamParams {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Largest message read from the upstream, in bytes; a longer line is refused (see the file comment). */
  maxMessageBytes: number;
}

/** A stdio client transport with a bounded reader (see the file comment). */
export class StdioUpstreamTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: (<T extends JSONRPCMessage>(message: T) => void) | undefined;
  private child: ChildProcess | undefined;
  private readonly reader: BoundedLineReader;
  /** The upstream's stderr, readable from construction on so no early line is lost. */
  readonly stderr = new PassThrough();

  constructor(private readonly params: StdioUpstreamParams) {
    this.reader = new BoundedLineReader(
      params.maxMessageBytes,
      (line) => this.line(line),
      (o) => this.oversized(o),
    );
  }

  /** Pid of the upstream process while it runs. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  start(): Promise<void> {
    if (this.child) throw new Error('StdioUpstreamTransport already started');
    return new Promise((resolve, reject) => {
      const child = spawn(this.params.command, this.params.args, {
        env: { ...getDefaultEnvironment(), ...this.params.env },
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        ...(this.params.cwd ? { cwd: this.params.cwd } : {}),
      });
      this.child = child;
      child.on('error', (err) => {
        reject(err);
        this.onerror?.(err);
      });
      child.on('spawn', () => resolve());
      child.on('close', () => {
        if (this.child === child) this.child = undefined;
        this.reader.clear();
        this.onclose?.();
      });
      child.stdin?.on('error', (err) => this.onerror?.(err));
      child.stdout?.on('data', (chunk: Buffer) => this.reader.push(chunk));
      child.stdout?.on('error', (err) => this.onerror?.(err));
      child.stderr?.pipe(this.stderr);
    });
  }

  private line(line: string): void {
    let message: JSONRPCMessage;
    try {
      message = deserializeMessage(line);
    } catch (err) {
      this.onerror?.(err as Error);
      return;
    }
    this.onmessage?.(message);
  }

  private oversized(o: OversizedLine): void {
    const limit = this.params.maxMessageBytes;
    const what = `a message of ${o.bytes} bytes (the limit is ${limit})`;
    if (o.id !== undefined && !o.method) {
      // The answer to one of our requests: that request fails; the upstream keeps running.
      this.onmessage?.(tooLargeResponse(o.id, o.bytes, limit));
      return;
    }
    if (o.id !== undefined) {
      // A request from the upstream: refused, so it does not wait for an answer that never comes.
      void this.send({
        jsonrpc: '2.0',
        id: o.id,
        error: { code: -32600, message: `request too large: ${o.bytes} bytes; the limit is ${limit}` },
      }).catch(() => {});
    }
    this.onerror?.(new Error(`skipped ${what}`));
  }

  async close(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child) return;
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const grace = () =>
      Promise.race([closed, new Promise<void>((r) => setTimeout(r, CLOSE_GRACE_MS).unref())]);
    try {
      child.stdin?.end();
    } catch {
      // already gone
    }
    await grace();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await grace();
    }
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      const stdin = this.child?.stdin;
      if (!stdin) {
        reject(new Error('Not connected'));
        return;
      }
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once('drain', resolve);
    });
  }
}
