/**
 * A TCP proxy that a test controls, to put network faults between ExecLayer and a real PostgreSQL or Redis
 * without touching the shared server. It listens on 127.0.0.1 and forwards every connection to `target`.
 *
 * Modes:
 * - `pass`: bytes flow both ways.
 * - `cut`: every open connection is destroyed at once (both sides see a reset or an end), and new ones are
 *   accepted and destroyed at once — the server is gone.
 * - `freeze`: nothing is forwarded either way, but every socket stays open, as behind a link that silently
 *   stops carrying packets. Bytes are not lost: reading pauses, so they wait in the kernel's buffers and flow
 *   on when the mode goes back to `pass` — as TCP retransmission delivers them once a real link returns. New
 *   connections are accepted and held; their upstream side is opened only when the freeze ends.
 * - `slow`: each chunk is delivered `delayMs` late (order kept).
 * - `strand()`: the connections open now freeze for good while new ones pass — what a NAT or load balancer
 *   that forgot its connections does: the old sockets look open and never carry a byte again.
 *
 * Loopback only: the target must be a loopback address.
 */
import { createServer, type Server, Socket } from 'node:net';

/** What the proxy does with bytes (see the file comment). */
export type ProxyMode = 'pass' | 'cut' | 'freeze' | 'slow';

interface Link {
  client: Socket;
  upstream: Socket | null;
  /** Chunks waiting for their `slow` delay, per direction, so order is kept. */
  timers: Set<NodeJS.Timeout>;
  /** Frozen for good (`strand`). */
  stranded: boolean;
}

/** A running proxy. Create it with `startTcpProxy`. */
export class TcpProxy {
  #mode: ProxyMode = 'pass';
  #delayMs = 0;
  readonly #links = new Set<Link>();
  /** Connections accepted since start (including refused ones). */
  accepted = 0;

  constructor(
    private readonly server: Server,
    private readonly target: { host: string; port: number },
    /** The port the proxy listens on (127.0.0.1). */
    readonly port: number,
  ) {
    server.on('connection', (s) => this.#accept(s));
  }

  /** The current mode. */
  get mode(): ProxyMode {
    return this.#mode;
  }

  /** Open connections (client side). */
  get connections(): number {
    return this.#links.size;
  }

  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Let bytes flow again (after `freeze` or `slow`; after `cut`, new connections are forwarded again). */
  pass(): void {
    this.#mode = 'pass';
    for (const l of this.#links) this.#flow(l);
  }

  /** Destroy every connection and refuse new ones until `pass`. */
  cut(): void {
    this.#mode = 'cut';
    for (const l of [...this.#links]) this.#drop(l);
  }

  /** Stop forwarding, keep every socket open. */
  freeze(): void {
    this.#mode = 'freeze';
    for (const l of this.#links) {
      l.client.pause();
      l.upstream?.pause();
    }
  }

  /** Freeze every open connection for good; new connections pass. */
  strand(): void {
    for (const l of this.#links) {
      l.stranded = true;
      l.client.pause();
      l.upstream?.pause();
    }
    this.#mode = 'pass';
  }

  /** Deliver each chunk `delayMs` late. */
  slow(delayMs: number): void {
    this.#mode = 'slow';
    this.#delayMs = delayMs;
    for (const l of this.#links) this.#flow(l);
  }

  /** Destroy every connection and stop listening. */
  async close(): Promise<void> {
    for (const l of [...this.#links]) this.#drop(l);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.accepted++;
    if (this.#mode === 'cut') {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const link: Link = { client, upstream: null, timers: new Set(), stranded: false };
    this.#links.add(link);
    client.on('error', () => this.#drop(link));
    client.on('close', () => this.#drop(link));
    client.pause();
    if (this.#mode !== 'freeze') this.#flow(link);
  }

  /** Opens the upstream side if needed and resumes both directions. */
  #flow(l: Link): void {
    if (l.stranded) return;
    if (l.upstream === null) {
      const up = new Socket();
      l.upstream = up;
      up.setNoDelay(true);
      up.on('error', () => this.#drop(l));
      up.on('close', () => this.#drop(l));
      this.#pipe(l, l.client, up);
      this.#pipe(l, up, l.client);
      up.connect(this.target.port, this.target.host);
    }
    l.client.resume();
    l.upstream.resume();
  }

  #pipe(l: Link, from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (this.#mode === 'slow') {
        const t = setTimeout(() => {
          l.timers.delete(t);
          if (!to.destroyed) to.write(chunk);
        }, this.#delayMs);
        l.timers.add(t);
        return;
      }
      if (this.#mode === 'freeze' || l.stranded) {
        // A chunk read just as a freeze began goes back in front of the buffer, to flow first on `pass`.
        from.pause();
        from.unshift(chunk);
        return;
      }
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => {
          if (this.#mode !== 'freeze' && !l.stranded) from.resume();
        });
      }
    });
    from.on('end', () => {
      // Half-close is forwarded once pending slow chunks went out.
      const end = () => (l.timers.size === 0 ? to.end() : setTimeout(end, this.#delayMs));
      end();
    });
  }

  #drop(l: Link): void {
    if (!this.#links.delete(l)) return;
    for (const t of l.timers) clearTimeout(t);
    l.client.destroy();
    l.upstream?.destroy();
  }
}

/** Starts a proxy on 127.0.0.1 (a free port) in `pass` mode, forwarding to `target` (a loopback address). */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(target.host)) {
    throw new Error(`tcp proxy target \`${target.host}\` is not a loopback address`);
  }
  const server = createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  return new TcpProxy(server, target, port);
}

/** Starts a proxy in front of the server of `url` (`postgres://…` or `redis://…`). */
export function proxyFor(url: string): Promise<TcpProxy> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol.startsWith('redis') ? 6379 : 5432));
  return startTcpProxy({ host: u.hostname.replace(/^\[|\]$/g, ''), port });
}
