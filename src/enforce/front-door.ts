/**
 * What every HTTP front door (`execlayer serve`, the standalone decision API server) puts in front of
 * its handlers so that clients who have not authenticated cannot hold it: Node's header, request and
 * keep-alive deadlines, and a connection cap that, when full, closes the oldest connection that has not
 * yet authenticated rather than turning away an agent with a valid credential.
 *
 * Node's deadlines and what they do to MCP traffic:
 * - `headersTimeout`: from the first byte of a request (or from accept, for a connection that sends
 *   nothing) until its headers are complete. Slow or absent headers are cut there.
 * - `requestTimeout`: until the whole request, body included, has arrived. A request stops being timed
 *   once it is complete, so the response is never cut: a standalone SSE GET or a POST answered with a
 *   long event stream lives as long as the session.
 * - `keepAliveTimeout`: idle time between two requests on one connection, never during a response.
 * The socket inactivity timeout (`server.timeout`) stays 0: it would cut quiet SSE streams.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { DEFAULT_HTTP_LIMITS } from '../config/load.js';

/** The deadlines and cap of one HTTP server (milliseconds, connections). */
export interface FrontDoorLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
}

/** The connection cap used when none is configured. */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/**
 * 1024, or half the process's soft open-file limit when that is lower: past the limit the kernel refuses
 * every new socket, an authenticated agent's included, so the cap must bite first and leave room for
 * upstream pipes and store connections.
 */
export function defaultMaxConnections(limitsFile = '/proc/self/limits'): number {
  const soft = openFileLimit(limitsFile);
  if (soft === undefined) return DEFAULT_MAX_CONNECTIONS;
  return Math.max(16, Math.min(DEFAULT_MAX_CONNECTIONS, Math.floor(soft / 2)));
}

/** The soft `Max open files` of this process (Linux), or undefined where it cannot be read. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync(limitsFile, 'utf8'));
    return m?.[1] !== undefined ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Counts of what the connection cap did, for status and tests. */
export interface ConnectionStats {
  open: number;
  authenticated: number;
  /** Unauthenticated connections closed to make room for a new one. */
  evicted: number;
  /** New connections closed because every open one had authenticated. */
  refused: number;
}

const GUARDS = new WeakMap<Socket, ConnectionGuard>();

/**
 * Own accounting of a server's connections, in accept order. `server.maxConnections` would refuse the
 * newest connection, so a flood of idle sockets would lock every agent out until they time out; here
 * the newest is kept and the oldest unauthenticated one goes.
 */
export class ConnectionGuard {
  /** Not yet authenticated, oldest first (a Set iterates in insertion order). */
  private readonly fresh = new Set<Socket>();
  private readonly trusted = new Set<Socket>();
  private evicted = 0;
  private refused = 0;

  constructor(private readonly max: number) {}

  /** Admits a just-accepted socket, closing the oldest unauthenticated one when the cap is reached. */
  admit(socket: Socket): void {
    if (this.fresh.size + this.trusted.size >= this.max) {
      const oldest = this.fresh.values().next();
      if (oldest.done) {
        this.refused++;
        socket.destroy();
        return;
      }
      this.evicted++;
      this.fresh.delete(oldest.value);
      oldest.value.destroy();
    }
    this.fresh.add(socket);
    GUARDS.set(socket, this);
    socket.once('close', () => {
      this.fresh.delete(socket);
      this.trusted.delete(socket);
    });
  }

  /** Marks a socket as carrying an authenticated client: it is no longer evicted for newcomers. */
  trust(socket: Socket): void {
    if (this.fresh.delete(socket)) this.trusted.add(socket);
  }

  stats(): ConnectionStats {
    return {
      open: this.fresh.size + this.trusted.size,
      authenticated: this.trusted.size,
      evicted: this.evicted,
      refused: this.refused,
    };
  }
}

/**
 * Records that a request on `socket` authenticated. Called by `createAuthenticator` on success; a socket
 * of a server without a guard is left alone.
 */
export function markAuthenticated(socket: Socket | undefined): void {
  if (!socket) return;
  // A TLS socket (or, for HTTP/2, the proxy that forwards to it) leads to the raw socket the guard counts.
  const raw = (socket as Socket & { [RAW_SOCKET]?: Socket })[RAW_SOCKET] ?? socket;
  GUARDS.get(raw)?.trust(raw);
}

const RAW_SOCKET = Symbol('execlayer.rawSocket');

/** Links a TLS socket to the raw socket it runs over, so authenticating on it trusts the counted socket. */
export function linkSocket(tls: Socket, raw: Socket): void {
  (tls as Socket & { [RAW_SOCKET]?: Socket })[RAW_SOCKET] = raw;
}

/**
 * Applies the deadlines to `server` and installs the connection cap. Call before `listen`. Node checks
 * the header and request deadlines every `connectionsCheckingInterval` (30 s by default, set when the
 * server is created), so pass `checkingIntervalMs(limits)` to `createServer` too, or a deadline can be
 * overrun by up to that interval.
 */
export function guardServer(server: Server, limits: FrontDoorLimits): ConnectionGuard {
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // INVARIANT: no socket inactivity timeout — an SSE stream that is quiet between keep-alive comments is
  // not idle, and cutting it would drop the agent's session stream.
  server.timeout = 0;
  const guard = new ConnectionGuard(limits.maxConnections);
  server.on('connection', (socket: Socket) => guard.admit(socket));
  return guard;
}

/** How often Node should check the header and request deadlines: a quarter of the header deadline, 100–1000 ms. */
export function checkingIntervalMs(limits: Pick<FrontDoorLimits, 'headersTimeoutMs'>): number {
  return Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4)));
}

/** The limits of `config.http` (the configuration's defaults when not given), the cap defaulted. */
export function frontDoorLimits(
  http: {
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    maxConnections?: number;
  } = DEFAULT_HTTP_LIMITS,
): FrontDoorLimits {
  return {
    headersTimeoutMs: http.headersTimeoutMs,
    requestTimeoutMs: http.requestTimeoutMs,
    keepAliveTimeoutMs: http.keepAliveTimeoutMs,
    maxConnections: http.maxConnections ?? defaultMaxConnections(),
  };
}
