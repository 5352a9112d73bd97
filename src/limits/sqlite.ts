/**
 * SQLite limit store (the embedded default). Counters live in `limit_counters` keyed by counter key with
 * the current fixed window in a column; concurrency slots are rows in `limit_leases`. A single-limit
 * consume is one conditional UPSERT (atomic on its own); several limits run in one IMMEDIATE
 * transaction that rolls back unless all pass. Several processes may share the file.
 */
import { randomUUID } from 'node:crypto';
import type BetterSqlite3 from 'better-sqlite3';
import { DEFAULT_BUSY_TIMEOUT_MS, openSqlite, retryBusy } from '../state/sqlite-db.js';
import type { Action, LimitSpec } from '../types.js';
import {
  amountOf,
  type CompiledLimit,
  compileLimit,
  counterKey,
  exceededResult,
  invalidResult,
  storeErrorResult,
  windowStart,
} from './spec.js';
import type {
  LimitResult,
  LimitStore,
  LimitStoreOptions,
  LimitTicket,
  ReleaseOptions,
  TicketEntry,
} from './types.js';
import { DEFAULT_LEASE_MS, DEFAULT_STEPS_IDLE_MS } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS limit_counters (
  key TEXT PRIMARY KEY,
  win INTEGER NOT NULL,
  value REAL NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS limit_leases (
  key TEXT NOT NULL,
  lease TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (key, lease)
) WITHOUT ROWID;
`;

interface Stmts {
  db: BetterSqlite3.Database;
  add: BetterSqlite3.Statement;
  get: BetterSqlite3.Statement;
  leaseClean: BetterSqlite3.Statement;
  leaseAdd: BetterSqlite3.Statement;
  leaseCount: BetterSqlite3.Statement;
  leaseDel: BetterSqlite3.Statement;
  refund: BetterSqlite3.Statement;
  sweepCounters: BetterSqlite3.Statement;
  sweepLeases: BetterSqlite3.Statement;
  begin: BetterSqlite3.Statement;
  commit: BetterSqlite3.Statement;
  rollback: BetterSqlite3.Statement;
}

/** The counters one `consume` takes, validated. */
type Plan = { c: CompiledLimit; key: string; amount: number }[];

/** A database failure inside a consume attempt, with the limit being taken when it happened. */
class LimitStoreFailure extends Error {
  readonly code: unknown;
  constructor(
    override readonly cause: unknown,
    readonly spec: LimitSpec | undefined,
  ) {
    super('limit store failure', { cause });
    // SQLite's code, so `retryBusy` can tell a busy database from other failures.
    this.code = (cause as { code?: unknown } | null)?.code;
  }
}

/** Options for the SQLite limit store. */
export interface SqliteLimitStoreOptions extends LimitStoreOptions {
  /** How long a consume waits for another process's write lock. Default 2000 ms. */
  busyTimeoutMs?: number;
  /** After the file could not be opened, how long to wait before trying again. Default 1000 ms. */
  reopenMs?: number;
}

const SWEEP_EVERY = 4096;

/** Limit store in a SQLite file. Opening failures are retried lazily; until then consume fails closed. */
export class SqliteLimitStore implements LimitStore {
  readonly #path: string;
  readonly #opts: SqliteLimitStoreOptions;
  readonly #leaseMs: number;
  readonly #stepsIdleMs: number;
  #s: Stmts | undefined;
  #openError: unknown;
  #nextOpen = 0;
  #ops = 0;
  #closed = false;

  constructor(path: string, options: SqliteLimitStoreOptions = {}) {
    this.#path = path;
    this.#opts = options;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#stepsIdleMs = options.stepsIdleMs ?? DEFAULT_STEPS_IDLE_MS;
    this.#ensure();
  }

  /** Why the file could not be opened, if it could not. */
  get openError(): unknown {
    return this.#s === undefined ? this.#openError : undefined;
  }

  #ensure(): Stmts | undefined {
    if (this.#s !== undefined) return this.#s;
    const now = Date.now();
    if (this.#closed || now < this.#nextOpen) return undefined;
    let db: BetterSqlite3.Database | undefined;
    try {
      db = openSqlite(this.#path, {
        schema: SCHEMA,
        ...(this.#opts.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: this.#opts.busyTimeoutMs }),
      });
      this.#s = {
        db,
        add: db.prepare(
          `INSERT INTO limit_counters (key, win, value, expires_at) VALUES (?, ?, ?, ?)
           ON CONFLICT(key) DO UPDATE SET
             value = CASE WHEN limit_counters.win = excluded.win THEN limit_counters.value + excluded.value ELSE excluded.value END,
             win = excluded.win,
             expires_at = excluded.expires_at
           WHERE (CASE WHEN limit_counters.win = excluded.win THEN limit_counters.value ELSE 0 END) + excluded.value <= ?
           RETURNING value`,
        ),
        get: db.prepare('SELECT win, value FROM limit_counters WHERE key = ?'),
        leaseClean: db.prepare('DELETE FROM limit_leases WHERE key = ? AND expires_at <= ?'),
        leaseCount: db.prepare('SELECT count(*) AS n FROM limit_leases WHERE key = ?').pluck(),
        leaseAdd: db.prepare('INSERT INTO limit_leases (key, lease, expires_at) VALUES (?, ?, ?)'),
        leaseDel: db.prepare('DELETE FROM limit_leases WHERE key = ? AND lease = ?'),
        refund: db.prepare('UPDATE limit_counters SET value = max(0, value - ?) WHERE key = ? AND win = ?'),
        sweepCounters: db.prepare('DELETE FROM limit_counters WHERE expires_at <= ?'),
        sweepLeases: db.prepare('DELETE FROM limit_leases WHERE expires_at <= ?'),
        begin: db.prepare('BEGIN IMMEDIATE'),
        commit: db.prepare('COMMIT'),
        rollback: db.prepare('ROLLBACK'),
      };
      return this.#s;
    } catch (err) {
      db?.close();
      this.#openError = err;
      this.#nextOpen = now + (this.#opts.reopenMs ?? 1000);
      return undefined;
    }
  }

  async consume(
    specs: readonly LimitSpec[],
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): Promise<LimitResult> {
    const p = this.#plan(specs, action, roles, nowMs);
    if ('result' in p) return p.result;
    try {
      // Another process may hold the file's write lock: wait for it as long as SQLite's busy timeout would.
      return await retryBusy(
        () => this.#consumeOnce(p.s, p.plan, action, roles, nowMs),
        this.#opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
      );
    } catch (err) {
      return storeErrorResult((err as LimitStoreFailure).spec ?? specs[0], (err as LimitStoreFailure).cause);
    }
  }

  /** Synchronous `consume` (better-sqlite3 is synchronous; a busy database is not waited for). Never throws. */
  consumeSync(
    specs: readonly LimitSpec[],
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): LimitResult {
    const p = this.#plan(specs, action, roles, nowMs);
    if ('result' in p) return p.result;
    try {
      return this.#consumeOnce(p.s, p.plan, action, roles, nowMs);
    } catch (err) {
      return storeErrorResult((err as LimitStoreFailure).spec ?? specs[0], (err as LimitStoreFailure).cause);
    }
  }

  /** Validates every spec against the action before the store is touched; the counters to take. */
  #plan(
    specs: readonly LimitSpec[],
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): { result: LimitResult } | { s: Stmts; plan: Plan } {
    if (specs.length === 0) return { result: { ok: true, ticket: { entries: [], released: false } } };
    const plan: Plan = [];
    for (const spec of specs) {
      const c = compileLimit(spec);
      if (c.invalid !== null) return { result: invalidResult(c, c.invalid, 'evaluation_error') };
      const k = counterKey(c, action, roles);
      if (typeof k === 'string') return { result: invalidResult(c, k, 'invalid_action') };
      const amount = amountOf(c, action);
      if (typeof amount === 'string') return { result: invalidResult(c, amount, 'invalid_action') };
      if (amount > c.max) return { result: exceededResult(c, action, roles, 0, amount, nowMs) };
      plan.push({ c, key: k.key, amount });
    }
    const s = this.#ensure();
    // INVARIANT: fail closed — no database, no allowance.
    if (s === undefined)
      return {
        result: storeErrorResult(specs[0], this.#closed ? new Error('store closed') : this.#openError),
      };
    return { s, plan };
  }

  /**
   * One attempt at taking every counter of `plan` in one transaction. Throws a `LimitStoreFailure` (after
   * rolling back) when the database fails; the result otherwise.
   */
  #consumeOnce(s: Stmts, plan: Plan, action: Action, roles: readonly string[], nowMs: number): LimitResult {
    let current: CompiledLimit | undefined;
    try {
      if ((++this.#ops & (SWEEP_EVERY - 1)) === 0) {
        s.sweepCounters.run(nowMs);
        s.sweepLeases.run(nowMs);
      }
      const single = plan.length === 1 && plan[0]?.c.kind !== 'concurrent';
      if (!single) s.begin.run();
      const entries: TicketEntry[] = [];
      for (const p of plan) {
        current = p.c;
        const e = this.#take(s, p.c, p.key, p.amount, nowMs);
        if (typeof e === 'number') {
          if (!single) s.rollback.run();
          return exceededResult(p.c, action, roles, e, p.amount, nowMs);
        }
        entries.push(e);
      }
      if (!single) s.commit.run();
      return { ok: true, ticket: { entries, released: false } };
    } catch (err) {
      try {
        if (s.db.inTransaction) s.rollback.run();
      } catch {
        // The rollback error adds nothing to the original one.
      }
      throw new LimitStoreFailure(err, current?.spec);
    }
  }

  /** Adds to one counter; returns the ticket entry, or the current usage when it would exceed. */
  #take(s: Stmts, c: CompiledLimit, key: string, amount: number, nowMs: number): TicketEntry | number {
    if (c.kind === 'concurrent') {
      s.leaseClean.run(key, nowMs);
      const n = s.leaseCount.get(key) as number;
      if (n + 1 > c.max) return n;
      const lease = randomUUID();
      s.leaseAdd.run(key, lease, nowMs + this.#leaseMs);
      return { kind: c.kind, key, amount: 1, window: 0, lease };
    }
    const win = c.windowMs > 0 ? windowStart(c.windowMs, nowMs) : 0;
    const exp = c.windowMs > 0 ? win + c.windowMs : nowMs + this.#stepsIdleMs;
    const row = s.add.get(key, win, amount, exp, c.max);
    if (row !== undefined) return { kind: c.kind, key, amount, window: win };
    const cur = s.get.get(key) as { win: number; value: number } | undefined;
    return cur === undefined || cur.win !== win ? 0 : cur.value;
  }

  release(ticket: LimitTicket, options?: ReleaseOptions): Promise<void> {
    if (ticket.released) return Promise.resolve();
    ticket.released = true;
    const refund = options?.refund === true;
    const s = this.#ensure();
    if (s === undefined) return Promise.resolve(); // Leases expire on their own.
    try {
      for (const e of ticket.entries) {
        if (e.kind === 'concurrent') {
          if (e.lease !== undefined) s.leaseDel.run(e.key, e.lease);
        } else if (refund) s.refund.run(e.amount, e.key, e.window);
      }
    } catch {
      // A lost release only makes the limit stricter until the lease or window expires (fails closed).
    }
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#s?.db.close();
    this.#s = undefined;
    return Promise.resolve();
  }
}
