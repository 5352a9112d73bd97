/**
 * The stdio front door's transport: newline-delimited JSON-RPC on a readable/writable pair (the
 * gateway's stdin/stdout). Unlike the SDK's stdio transport it bounds each message, refuses invalid
 * UTF-8 instead of decoding it to U+FFFD, and answers unparsable input with a JSON-RPC error instead
 * of dropping it. Parsed values go to `onmessage` raw; `ScreenedTransport` validates them.
 */
import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage, MessageExtraInfo } from '@modelcontextprotocol/sdk/types.js';
import { errorResponse, INVALID_REQUEST, PARSE_ERROR } from './screen.js';

/** Newline-delimited JSON-RPC over a stream pair with size and encoding checks. */
export class StdioFrontTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: (<T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void) | undefined;
  private chunks: Buffer[] = [];
  private size = 0;
  private discarding = false;
  private closed = false;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
    private readonly maxMessageBytes: number,
  ) {}

  private readonly onData = (chunk: Buffer) => {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) {
        this.push(chunk.subarray(start));
        return;
      }
      this.push(chunk.subarray(start, nl));
      this.flushLine();
      start = nl + 1;
    }
  };

  private readonly onEnd = () => {
    void this.close();
  };

  private push(part: Buffer): void {
    if (part.length === 0 || this.discarding) return;
    if (this.size + part.length > this.maxMessageBytes) {
      // Drop the rest of this line; the error goes out once its end arrives.
      this.discarding = true;
      this.chunks = [];
      this.size = 0;
      return;
    }
    this.chunks.push(part);
    this.size += part.length;
  }

  private flushLine(): void {
    if (this.discarding) {
      this.discarding = false;
      this.reply(null, INVALID_REQUEST, `message exceeds the limit of ${this.maxMessageBytes} bytes`);
      return;
    }
    const line = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    this.size = 0;
    let text: string;
    try {
      text = this.decoder.decode(line);
    } catch {
      this.reply(null, PARSE_ERROR, 'message is not valid utf-8');
      return;
    }
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      this.reply(null, PARSE_ERROR, `parse error: ${(err as Error).message.toLowerCase()}`);
      return;
    }
    this.onmessage?.(value as JSONRPCMessage);
  }

  private reply(id: null, code: number, message: string): void {
    void this.send(errorResponse({ id, code, message })).catch((e: unknown) => this.onerror?.(e as Error));
  }

  async start(): Promise<void> {
    this.input.on('data', this.onData);
    this.input.on('end', this.onEnd);
    this.input.on('error', (e: Error) => this.onerror?.(e));
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) return Promise.resolve();
    const json = `${JSON.stringify(message)}\n`;
    return new Promise((resolve) => {
      if (this.output.write(json)) resolve();
      else this.output.once('drain', resolve);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.input.off('data', this.onData);
    this.input.off('end', this.onEnd);
    if (this.input.listenerCount('data') === 0) this.input.pause();
    this.onclose?.();
  }
}
