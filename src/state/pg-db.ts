/**
 * What every ExecLayer PostgreSQL store needs around its operations: a pool set up to notice dead and
 * silent connections, and one runner that gives each operation a client-side deadline.
 *
 * INVARIANT: every wait is bounded — an operation (getting a connection, every statement, COMMIT) that has
 * not finished by its deadline rejects with `StoreTimeoutError` naming the store, and the connection it used
 * is destroyed, never returned to the pool: a connection whose answer is late may never answer, and one that
 * lost bytes would answer the next caller with the last one's reply. The server ends its side by itself too:
 * `statement_timeout` stops a statement stuck on a lock, `idle_in_transaction_session_timeout` ends a
 * transaction whose client went silent, so its row locks do not block the other replicas.
 */
import type { Socket } from 'node:net';
import pg from 'pg';
import { messageOf } from '../errors.js';

/** Default deadline of one store operation against PostgreSQL or Redis (ms). */
export const DEFAULT_STORE_TIMEOUT_MS = 2000;

/** Options of `pgPool`. */
export interface PgPoolOptions {
  /** Connections in the pool (default 4). */
  max?: number;
  /** Deadline of one operation (default `DEFAULT_STORE_TIMEOUT_MS`); also the connect and idle-in-transaction bound. */
  timeoutMs?: number;
  /** Server-side bound of one statement (default `timeoutMs`). */
  statementTimeoutMs?: number;
  /** Shown in `pg_stat_activity`. */
  applicationName?: string;
}

/** A pool whose connections detect a dead server and whose server ends abandoned transactions. */
export function pgPool(url: string, o: PgPoolOptions = {}): pg.Pool {
  const timeoutMs = o.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
  const pool = new pg.Pool({
    connectionString: url,
    max: o.max ?? 4,
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: o.statementTimeoutMs ?? timeoutMs,
    idle_in_transaction_session_timeout: timeoutMs,
    // TCP keepalive finds a peer that vanished without a word (a real partition, a dead host) on idle pooled
    // connections; the deadline below covers connections that are in use.
    keepAlive: true,
    keepAliveInitialDelayMillis: 5000,
    ...(o.applicationName === undefined ? {} : { application_name: o.applicationName }),
  });
  // An idle connection killed by the server (restart, pg_terminate_backend) emits here; the pool drops it
  // and the next checkout connects afresh. Without a listener the error would crash the process.
  pool.on('error', () => undefined);
  pool.on('connect', (c) => born.set(c, performance.now()));
  return pool;
}

/** When each pooled connection was opened, and when each pool last saw an operation time out. */
const born = new WeakMap<pg.Client, number>();
const lastTimeout = new WeakMap<pg.Pool, number>();

/** An operation that did not finish by its deadline. `commitSent`: COMMIT was on the wire, fate unknown. */
export class StoreTimeoutError extends Error {
  readonly code = 'store_timeout';
  constructor(
    store: string,
    readonly timeoutMs: number,
    readonly commitSent: boolean,
  ) {
    super(`${store} did not answer within ${timeoutMs} ms`);
    this.name = 'StoreTimeoutError';
  }
}

/** The connection broke while COMMIT was on the wire: the transaction may or may not have committed. */
export class CommitUnknownError extends Error {
  readonly code = 'commit_unknown';
  constructor(store: string, cause: unknown) {
    super(`${store} lost the connection during commit (${messageOf(cause)})`, {
      cause,
    });
    this.name = 'CommitUnknownError';
  }
}

const CONNECTION_CODES = new Set(['57P01', '57P02', '57P03', 'ECONNRESET', 'EPIPE', 'ECONNREFUSED']);

/** True for an error that says the connection broke, not that the server refused the statement. */
export function isConnectionError(e: unknown): boolean {
  if (e instanceof StoreTimeoutError) return false;
  const code = String((e as { code?: unknown } | null)?.code ?? '');
  if (code.startsWith('08') || CONNECTION_CODES.has(code)) return true;
  const msg = messageOf(e);
  return /connection terminated|not queryable|connection ended|socket hang up|ECONNRESET|EPIPE/i.test(msg);
}

/** Options of one `pgRun` operation. */
export interface PgRunOptions {
  /** How errors name the store, e.g. `audit store (postgres)`. */
  store: string;
  /** Deadline of the whole operation, connection included (ms); errors name it. */
  timeoutMs: number;
  /** An earlier end (`performance.now()` ms), for a caller that already waited in a queue. */
  deadline?: number;
  /** Run `fn` inside BEGIN … COMMIT. */
  transaction?: boolean;
  /** Statements sent with BEGIN in the same round trip (e.g. `SET LOCAL statement_timeout = 2000`). */
  begin?: string;
  /**
   * `fn` only reads: a broken connection may be retried once at any point. Otherwise a transaction whose
   * connection broke before COMMIT was sent is retried once (the server rolled it back); a statement run
   * outside a transaction, or a COMMIT, whose connection broke is not (it may have committed).
   */
  readOnly?: boolean;
}

type Stage = 'connect' | 'begin' | 'body' | 'commit';

/**
 * Runs `fn` on a pooled connection within `o.timeoutMs`. On a deadline the connection is destroyed and the
 * call rejects with `StoreTimeoutError`; a broken stale connection (the server restarted since it was
 * pooled) is retried once on a fresh one when that cannot run a write twice (see `PgRunOptions.readOnly`).
 * Errors `fn` throws on a live connection roll the transaction back and are rethrown as they are.
 */
export async function pgRun<T>(
  pool: pg.Pool,
  o: PgRunOptions,
  fn: (c: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const deadline = Math.min(performance.now() + o.timeoutMs, o.deadline ?? Number.POSITIVE_INFINITY);
  for (let attempt = 0; ; attempt++) {
    const r = await attemptOnce(pool, o, deadline, fn);
    if (r.ok) return r.value;
    const retry =
      attempt === 0 &&
      isConnectionError(r.error) &&
      // INVARIANT: a connection that broke before COMMIT was sent ended its transaction uncommitted (the
      // server rolls back a transaction whose connection is gone), so running it again cannot write twice.
      (r.stage === 'begin' || r.stage === 'body' || (o.readOnly === true && r.stage !== 'connect'));
    if (!retry) throw r.error;
  }
}

type Attempt<T> = { ok: true; value: T } | { ok: false; error: unknown; stage: Stage };

/**
 * A pooled connection opened before the pool's last timeout. A timeout means the path to the server went
 * silent; the idle connections that crossed it then may be dead without knowing it (a NAT or load balancer
 * that forgot them never sends a reset), and each would cost a caller a full deadline to find out. They are
 * closed when next checked out and replaced by fresh ones.
 */
function suspect(pool: pg.Pool, c: pg.PoolClient): boolean {
  const t = lastTimeout.get(pool);
  return t !== undefined && (born.get(c) ?? 0) < t;
}

/** A connection from `pool` by `deadline`, never one opened before the pool's last timeout. */
async function checkout(pool: pg.Pool, o: PgRunOptions, deadline: number): Promise<Settled<pg.PoolClient>> {
  for (;;) {
    const connecting = pool.connect();
    const got = await beforeDeadline(connecting, deadline);
    if (got === TIMEOUT) {
      // The pool may still hand the connection over later; it goes straight back.
      connecting.then(
        (c) => c.release(),
        () => undefined,
      );
      lastTimeout.set(pool, performance.now());
      return { ok: false, error: new StoreTimeoutError(o.store, o.timeoutMs, false) };
    }
    if (!got.ok || !suspect(pool, got.value)) return got;
    destroy(got.value);
    got.value.release(true);
  }
}

async function attemptOnce<T>(
  pool: pg.Pool,
  o: PgRunOptions,
  deadline: number,
  fn: (c: pg.PoolClient) => Promise<T>,
): Promise<Attempt<T>> {
  const got = await checkout(pool, o, deadline);
  if (!got.ok) return { ok: false, error: got.error, stage: 'connect' };
  const c = got.value;
  // A checked-out connection the server kills emits 'error'; the failing query reports it too.
  const onError = () => undefined;
  c.on('error', onError);
  let stage = 'begin' as Stage;
  const run = async (): Promise<T> => {
    if (o.transaction === true) {
      await c.query(o.begin === undefined ? 'BEGIN' : `BEGIN; ${o.begin}`);
      stage = 'body';
      const out = await fn(c);
      stage = 'commit';
      await c.query('COMMIT');
      return out;
    }
    // Outside a transaction every statement commits on its own: once sent, its fate is unknown.
    stage = 'commit';
    return fn(c);
  };
  const done = await beforeDeadline(run(), deadline);
  c.removeListener('error', onError);
  if (done === TIMEOUT) {
    lastTimeout.set(pool, performance.now());
    destroy(c);
    c.release(true);
    return { ok: false, error: new StoreTimeoutError(o.store, o.timeoutMs, stage === 'commit'), stage };
  }
  if (done.ok) {
    c.release();
    return { ok: true, value: done.value };
  }
  const e = done.error;
  if (isConnectionError(e) || stage === 'commit') {
    // A connection that broke, or a COMMIT that failed, is not reused.
    destroy(c);
    c.release(true);
    const lost = stage === 'commit' && isConnectionError(e);
    return { ok: false, error: lost ? new CommitUnknownError(o.store, e) : e, stage };
  }
  // The server refused a statement (or `fn` threw): roll back on the same connection, within the deadline.
  const rolledBack =
    o.transaction === true && stage === 'body'
      ? await beforeDeadline(c.query('ROLLBACK'), deadline)
      : { ok: true as const, value: undefined };
  if (rolledBack === TIMEOUT || !rolledBack.ok) {
    destroy(c);
    c.release(true);
  } else c.release();
  return { ok: false, error: e, stage };
}

const TIMEOUT = Symbol('timeout');
type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Settles with `p`'s outcome, or TIMEOUT once `deadline` (performance.now() ms) has passed. */
function beforeDeadline<T>(p: Promise<T>, deadline: number): Promise<Settled<T> | typeof TIMEOUT> {
  const ms = deadline - performance.now();
  // A late rejection after the deadline is expected (the connection is destroyed) and is not unhandled.
  p.catch(() => undefined);
  if (ms <= 0) return Promise.resolve(TIMEOUT);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(TIMEOUT), ms);
    p.then(
      (value) => {
        clearTimeout(t);
        resolve({ ok: true, value });
      },
      (error: unknown) => {
        clearTimeout(t);
        resolve({ ok: false, error });
      },
    );
  });
}

/** Closes the connection's socket at once, without the goodbye a silent peer would never acknowledge. */
function destroy(c: pg.PoolClient): void {
  (c as unknown as { connection?: { stream?: Socket } }).connection?.stream?.destroy();
}

/**
 * Runs `fn` inside BEGIN … COMMIT on a connection from `pool` with the default deadline; rolls back and
 * rethrows when it fails.
 */
export function pgTransaction<T>(
  pool: pg.Pool,
  fn: (c: pg.PoolClient) => Promise<T>,
  o: { store?: string; timeoutMs?: number } = {},
): Promise<T> {
  return pgRun(
    pool,
    {
      store: o.store ?? 'store (postgres)',
      timeoutMs: o.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS,
      transaction: true,
    },
    fn,
  );
}
