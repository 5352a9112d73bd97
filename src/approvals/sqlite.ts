/**
 * Approvals in a SQLite file (the embedded default). Each store operation is one IMMEDIATE transaction,
 * so processes sharing the file never both consume the same grant or both create a pending request.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { DEFAULT_BUSY_TIMEOUT_MS, openSqlite, retryBusy } from '../state/sqlite-db.js';
import {
  type ApprovalBackend,
  type ApprovalRow,
  ApprovalStoreImpl,
  type ApprovalTx,
  COLUMNS,
  fromRow,
  toValues,
} from './engine.js';
import type { ApprovalFilter, ApprovalStore, ApprovalStoreOptions } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS approvals (
  id TEXT PRIMARY KEY,
  binding TEXT NOT NULL,
  status TEXT NOT NULL,
  agent TEXT NOT NULL,
  tool TEXT NOT NULL,
  args_digest TEXT NOT NULL,
  policy TEXT NOT NULL,
  session TEXT,
  on_behalf_of TEXT,
  rule TEXT NOT NULL,
  reason TEXT NOT NULL,
  args TEXT NOT NULL,
  approvers TEXT NOT NULL,
  ttl_ms INTEGER NOT NULL,
  uses INTEGER NOT NULL,
  used INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  decided_at INTEGER,
  approver TEXT,
  note TEXT,
  decision_id TEXT
);
CREATE INDEX IF NOT EXISTS approvals_binding ON approvals (binding, status);
CREATE INDEX IF NOT EXISTS approvals_approver ON approvals (approver, decided_at);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, expires_at);
CREATE INDEX IF NOT EXISTS approvals_created ON approvals (created_at);
`;

type Stmt = BetterSqlite3.Statement;
interface Stmts {
  get: Stmt;
  pending: Stmt;
  grants: Stmt;
  insert: Stmt;
  update: Stmt;
  since: Stmt;
  due: Stmt;
  list: Stmt;
  begin: Stmt;
  commit: Stmt;
  rollback: Stmt;
}

class SqliteBackend implements ApprovalBackend {
  readonly #db: BetterSqlite3.Database;
  readonly #s: Stmts;
  #chain: Promise<unknown> = Promise.resolve();

  readonly #busyTimeoutMs: number;

  constructor(path: string, busyTimeoutMs?: number) {
    this.#busyTimeoutMs = busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    this.#db = openSqlite(path, { busyTimeoutMs: this.#busyTimeoutMs, schema: SCHEMA });
    const db = this.#db;
    try {
      this.#s = {
        get: db.prepare('SELECT * FROM approvals WHERE id = ?'),
        pending: db.prepare("SELECT * FROM approvals WHERE binding = ? AND status = 'pending'"),
        grants: db.prepare(
          "SELECT * FROM approvals WHERE binding = ? AND status = 'granted' AND used < uses AND expires_at > ? ORDER BY created_at",
        ),
        insert: db.prepare(
          `INSERT INTO approvals (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`,
        ),
        update: db.prepare(
          'UPDATE approvals SET status = ?, used = ?, expires_at = ?, decided_at = ?, approver = ?, note = ? WHERE id = ?',
        ),
        since: db.prepare('SELECT count(*) FROM approvals WHERE approver = ? AND decided_at > ?').pluck(),
        due: db.prepare("SELECT * FROM approvals WHERE status IN ('pending', 'granted') AND expires_at <= ?"),
        list: db.prepare(
          `SELECT * FROM approvals WHERE (@status IS NULL OR status = @status) AND (@agent IS NULL OR agent = @agent)
           ORDER BY created_at DESC, id DESC LIMIT @limit`,
        ),
        begin: db.prepare('BEGIN IMMEDIATE'),
        commit: db.prepare('COMMIT'),
        rollback: db.prepare('ROLLBACK'),
      };
    } catch (err) {
      db.close();
      throw err;
    }
  }

  transaction<T>(fn: (tx: ApprovalTx) => Promise<T>): Promise<T> {
    const s = this.#s;
    const one = (st: BetterSqlite3.Statement, ...a: unknown[]) => {
      const r = st.get(...a) as ApprovalRow | undefined;
      return r === undefined ? undefined : fromRow(r);
    };
    const many = (st: BetterSqlite3.Statement, ...a: unknown[]) =>
      (st.all(...a) as ApprovalRow[]).map(fromRow);
    const tx: ApprovalTx = {
      lock: async () => {},
      get: async (id) => one(s.get, id),
      pendingFor: async (b) => many(s.pending, b),
      grantsFor: async (b, now) => many(s.grants, b, now),
      insert: async (a, binding) => void s.insert.run(...toValues(a, binding)),
      update: async (a) =>
        void s.update.run(
          a.status,
          a.used,
          a.expiresAt,
          a.decidedAt ?? null,
          a.approver ?? null,
          a.note ?? null,
          a.id,
        ),
      decisionsSince: async (approver, since) => s.since.get(approver, since) as number,
      due: async (now) => many(s.due, now),
      list: async (f: ApprovalFilter) =>
        many(s.list, { status: f.status ?? null, agent: f.agent ?? null, limit: f.limit ?? 100 }),
    };
    const run = async (): Promise<T> => {
      // Nothing has run before BEGIN: waiting out another process's write lock is safe.
      await retryBusy(() => s.begin.run(), this.#busyTimeoutMs);
      try {
        const out = await fn(tx);
        s.commit.run();
        return out;
      } catch (err) {
        if (this.#db.inTransaction) s.rollback.run();
        throw err;
      }
    };
    // One transaction at a time on this connection: awaits inside `fn` must not interleave another.
    const p = this.#chain.then(run, run);
    this.#chain = p.catch(() => {});
    return p;
  }

  async close(): Promise<void> {
    await this.#chain;
    this.#db.close();
  }
}

/** Options for the SQLite approval store. */
export interface SqliteApprovalStoreOptions extends ApprovalStoreOptions {
  busyTimeoutMs?: number;
}

/** Opens (creating) the approvals table in the SQLite file at `path`. Throws at start-up when it cannot. */
export function sqliteApprovalStore(path: string, options: SqliteApprovalStoreOptions = {}): ApprovalStore {
  return new ApprovalStoreImpl(new SqliteBackend(path, options.busyTimeoutMs), options);
}
