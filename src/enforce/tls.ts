/**
 * The TLS front door: one TLS listener that speaks HTTP/2 and HTTP/1.1 (ALPN), with the certificate and
 * key read from files and reloaded when they change.
 *
 * Node's HTTP/2 server enforces none of the HTTP/1 deadlines for the HTTP/1 connections it accepts
 * (`allowHTTP1`), so this module terminates TLS itself and hands each decrypted connection to the server
 * for its protocol: an `http.Server` for HTTP/1.1 — every header, request and keep-alive deadline of
 * src/enforce/front-door.ts applies as on plain HTTP — or a plaintext HTTP/2 server for `h2`, whose
 * sessions get the same deadlines by hand: handshake and first request within the header deadline, each
 * request body within the request deadline, a session without open streams closed after the keep-alive
 * deadline. Both call the same request handler; HTTP/2 requests are adapted so that handler code written
 * for HTTP/1 (a `Host` header, `connection: close` on refusals) behaves the same.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import {
  createServer as createHttp2Server,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  constants as h2,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import {
  createSecureContext,
  createServer as createTlsServer,
  type TLSSocket,
  type Server as TlsServer,
} from 'node:tls';
import {
  type ConnectionGuard,
  checkingIntervalMs,
  type FrontDoorLimits,
  guardServer,
  linkSocket,
} from './front-door.js';

/** Certificate and key files (PEM). */
export interface TlsFiles {
  cert: string;
  key: string;
}

/** Why TLS could not be set up: a file that cannot be read, or a certificate and key that do not fit. */
export class TlsError extends Error {
  readonly code = 'tls_invalid';
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'TlsError';
  }
}

/** Reads and checks a certificate/key pair; throws `TlsError` saying which file is wrong and why. */
export function readTlsPair(files: TlsFiles): { cert: Buffer; key: Buffer } {
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new TlsError(`cannot read the TLS ${what} file \`${file}\`: ${(e as Error).message}`, e);
    }
  };
  const cert = read('certificate', files.cert);
  const key = read('key', files.key);
  try {
    // Parses both and checks that the key belongs to the certificate.
    createSecureContext({ cert, key });
  } catch (e) {
    throw new TlsError(
      `the TLS certificate \`${files.cert}\` and key \`${files.key}\` cannot be used together: ${(e as Error).message}`,
      e,
    );
  }
  return { cert, key };
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A listening-ready TLS front door. `server` is what to `listen()` on. */
export interface TlsFrontDoor {
  server: TlsServer;
  /** The connection cap over the raw sockets. */
  connections: ConnectionGuard;
  /** Stops watching the files and closes every connection. */
  close(): Promise<void>;
}

const STARTED = Symbol('execlayer.tls.started');

function started(socket: unknown): void {
  (socket as { [STARTED]?: () => void } | undefined)?.[STARTED]?.();
}

/** HTTP/1 connection headers, which HTTP/2 forbids (RFC 9113 §8.2.2); dropped from HTTP/2 responses. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/**
 * Creates the TLS front door for `handler` with the deadlines and connection cap of `limits`, and
 * watches the files: a changed pair that checks out replaces the old one for new connections; one that
 * does not is reported through `log` and the working pair stays (a broken file never stops the server).
 */
export function createTlsFrontDoor(
  handler: Handler,
  limits: FrontDoorLimits,
  files: TlsFiles,
  log: (line: string) => void,
): TlsFrontDoor {
  const pair = readTlsPair(files);
  const server = createTlsServer({ ...pair, ALPNProtocols: ['h2', 'http/1.1'] });
  const http1: Server = createHttpServer(
    { connectionsCheckingInterval: checkingIntervalMs(limits) },
    handler,
  );
  http1.headersTimeout = limits.headersTimeoutMs;
  http1.requestTimeout = limits.requestTimeoutMs;
  http1.keepAliveTimeout = limits.keepAliveTimeoutMs;
  http1.timeout = 0;
  const http2: Http2Server = createHttp2Server({}, (req: Http2ServerRequest, res: Http2ServerResponse) => {
    adaptHttp2(req, res);
    handler(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  });
  guardHttp2(http2, limits);

  // The connection cap counts raw sockets, from accept to close, handshakes included.
  const connections = guardServer(server as unknown as Server, limits);
  const pending = new Map<string, Socket>();
  const keyOf = (s: Socket) => `${s.remoteAddress}|${s.remotePort}`;
  // Every raw socket, so that closing the front door ends HTTP/2 sessions too (`server.close()` alone
  // waits for each connection to end on its own).
  const open = new Set<Socket>();
  server.on('connection', (raw: Socket) => {
    open.add(raw);
    raw.once('close', () => open.delete(raw));
    pending.set(keyOf(raw), raw);
    // INVARIANT: every wait is bounded — the handshake and the first request's headers (HTTP/1.1) or the
    // session's setup (HTTP/2, whose idle and stream deadlines take over) finish within the header
    // deadline.
    const timer = setTimeout(() => raw.destroy(), limits.headersTimeoutMs);
    timer.unref();
    raw.once('close', () => {
      clearTimeout(timer);
      if (pending.get(keyOf(raw)) === raw) pending.delete(keyOf(raw));
    });
    (raw as Socket & { [STARTED]?: () => void })[STARTED] = () => clearTimeout(timer);
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    const raw = pending.get(keyOf(socket));
    if (raw !== undefined) {
      pending.delete(keyOf(socket));
      linkSocket(socket, raw);
      const clear = (raw as Socket & { [STARTED]?: () => void })[STARTED];
      if (clear !== undefined) (socket as TLSSocket & { [STARTED]?: () => void })[STARTED] = clear;
    }
    (socket.alpnProtocol === 'h2' ? http2 : http1).emit('connection', socket);
  });
  // Reached through the socket the request or session sees (for HTTP/2 a proxy that forwards reads).
  http1.on('request', (req: IncomingMessage) => started(req.socket));
  http2.on('session', (session) => started(session.socket));
  server.on('tlsClientError', () => {
    // A failed handshake closes its socket; nothing else to do (and nothing to log per stranger).
  });

  let current = pair;
  const reload = () => {
    try {
      const next = readTlsPair(files);
      if (next.cert.equals(current.cert) && next.key.equals(current.key)) return;
      server.setSecureContext(next);
      current = next;
      log(`tls: certificate reloaded from ${files.cert}`);
    } catch (e) {
      log(`tls: kept the current certificate: ${(e as Error).message}`);
    }
  };
  // Polling, not fs.watch: certificate renewers replace files by rename, which fs.watch can lose.
  watchFile(files.cert, { interval: 1000, persistent: false }, reload);
  watchFile(files.key, { interval: 1000, persistent: false }, reload);
  return {
    server,
    connections,
    close: async () => {
      unwatchFile(files.cert, reload);
      unwatchFile(files.key, reload);
      http1.closeAllConnections();
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const raw of open) raw.destroy();
      await closed;
    },
  };
}

/** Per-session and per-stream deadlines for HTTP/2, the counterparts of Node's HTTP/1 ones. */
function guardHttp2(server: Http2Server, limits: FrontDoorLimits): void {
  server.on('session', (session) => {
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      // A session with an open stream (an SSE stream waiting for events) is not idle.
      if (open === 0) idle = setTimeout(() => closeSession(session), limits.keepAliveTimeoutMs).unref();
    };
    arm();
    session.on('stream', (stream: ServerHttp2Stream) => {
      open++;
      clearTimeout(idle);
      // The request (headers arrived with the stream) must be fully sent within the request deadline.
      const body = setTimeout(() => stream.close(h2.NGHTTP2_CANCEL), limits.requestTimeoutMs).unref();
      stream.once('end', () => clearTimeout(body));
      stream.once('close', () => {
        clearTimeout(body);
        open--;
        arm();
      });
    });
    session.once('close', () => clearTimeout(idle));
  });
}

/**
 * Closes an idle session: GOAWAY first, then, if the client still holds it open (say, by never reading a
 * response), destroyed after a grace period — a client cannot keep a session past its deadline.
 */
function closeSession(session: Http2Session): void {
  session.close();
  setTimeout(() => {
    if (!session.destroyed) session.destroy();
  }, 1000).unref();
}

/** Makes an HTTP/2 request look like HTTP/1 to the handlers: `Host` from `:authority`, no hop-by-hop headers. */
function adaptHttp2(req: Http2ServerRequest, res: Http2ServerResponse): void {
  const authority = req.headers[':authority'];
  if (req.headers.host === undefined && typeof authority === 'string') req.headers.host = authority;
  const writeHead = res.writeHead.bind(res) as (status: number, ...rest: unknown[]) => Http2ServerResponse;
  (res as { writeHead: unknown }).writeHead = (status: number, ...rest: unknown[]) =>
    writeHead(status, ...rest.map((r) => (r !== null && typeof r === 'object' ? withoutHopByHop(r) : r)));
  const setHeader = res.setHeader.bind(res);
  (res as { setHeader: unknown }).setHeader = (name: string, value: string | number | readonly string[]) =>
    HOP_BY_HOP.has(name.toLowerCase()) ? res : setHeader(name, value);
}

function withoutHopByHop(headers: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  return out;
}
