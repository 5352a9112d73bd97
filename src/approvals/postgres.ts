/**
 * Approvals in PostgreSQL, for several stateless ExecLayer replicas. Each store operation is one
 * transaction; transaction-scoped advisory locks on the binding, the approval and the approver serialise
 * exactly the operations that must not interleave (two replicas consuming one grant, two creating one
 * pending request, one approver racing the rate cap).
 */
import type pg from 'pg';
import { DEFAULT_STORE_TIMEOUT_MS, pgPool, pgRun } from '../state/pg-db.js';
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
  ttl_ms BIGINT NOT NULL,
  uses INTEGER NOT NULL,
  used INTEGER NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  decided_at BIGINT,
  approver TEXT,
  note TEXT,
  decision_id TEXT
);
CREATE INDEX IF NOT EXISTS approvals_binding ON approvals (binding, status);
CREATE INDEX IF NOT EXISTS approvals_approver ON approvals (approver, decided_at);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, expires_at);
CREATE INDEX IF NOT EXISTS approvals_created ON approvals (created_at);
`;

const STORE = 'approval store (postgres)';
/** Replicas starting together wait for each other's schema transaction. */
const SCHEMA_TIMEOUT_MS = 15_000;

class PostgresBackend implements ApprovalBackend {
  readonly #pool: pg.Pool;
  readonly #timeoutMs: number;

  constructor(pool: pg.Pool, timeoutMs: number) {
    this.#pool = pool;
    this.#timeoutMs = timeoutMs;
  }

  // A transaction whose COMMIT went unanswered may have consumed a grant: the call is denied all the same,
  // and the grant stays used (fail closed; the approver grants again).
  transaction<T>(fn: (tx: ApprovalTx) => Promise<T>): Promise<T> {
    return pgRun(this.#pool, { store: STORE, timeoutMs: this.#timeoutMs, transaction: true }, (c) =>
      fn(approvalTx(c)),
    );
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}

/** The approval engine's queries on one connection inside a transaction. */
function approvalTx(c: pg.PoolClient): ApprovalTx {
  const rows = async (sql: string, params: unknown[]) =>
    (await c.query<ApprovalRow>(sql, params)).rows.map(fromRow);
  return {
    lock: async (key) => void (await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [key])),
    get: async (id) => (await rows('SELECT * FROM approvals WHERE id = $1 FOR UPDATE', [id]))[0],
    pendingFor: (b) =>
      rows("SELECT * FROM approvals WHERE binding = $1 AND status = 'pending' FOR UPDATE", [b]),
    grantsFor: (b, now) =>
      rows(
        "SELECT * FROM approvals WHERE binding = $1 AND status = 'granted' AND used < uses AND expires_at > $2 ORDER BY created_at FOR UPDATE",
        [b, now],
      ),
    insert: async (a, binding) =>
      void (await c.query(
        `INSERT INTO approvals (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
        toValues(a, binding),
      )),
    update: async (a) =>
      void (await c.query(
        'UPDATE approvals SET status = $1, used = $2, expires_at = $3, decided_at = $4, approver = $5, note = $6 WHERE id = $7',
        [a.status, a.used, a.expiresAt, a.decidedAt ?? null, a.approver ?? null, a.note ?? null, a.id],
      )),
    decisionsSince: async (approver, since) =>
      Number(
        (
          await c.query<{ n: string }>(
            'SELECT count(*) AS n FROM approvals WHERE approver = $1 AND decided_at > $2',
            [approver, since],
          )
        ).rows[0]?.n ?? 0,
      ),
    due: (now) =>
      rows(
        "SELECT * FROM approvals WHERE status IN ('pending', 'granted') AND expires_at <= $1 ORDER BY id FOR UPDATE",
        [now],
      ),
    list: (f: ApprovalFilter) =>
      rows(
        `SELECT * FROM approvals WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR agent = $2)
           ORDER BY created_at DESC, id DESC LIMIT $3`,
        [f.status ?? null, f.agent ?? null, f.limit ?? 100],
      ),
  };
}

/** Options for the PostgreSQL approval store. */
export interface PostgresApprovalStoreOptions extends ApprovalStoreOptions {
  /** Max pooled connections. Default 10. */
  poolSize?: number;
  /**
   * Deadline of one store operation, connection included (default 2000 ms). When it passes the operation
   * fails with `store_error`, so the action is denied.
   */
  timeoutMs?: number;
}

/** Connects, creates the schema if needed and returns the store. Rejects when the database is unreachable. */
export async function postgresApprovalStore(
  url: string,
  options: PostgresApprovalStoreOptions = {},
): Promise<ApprovalStore> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
  const pool = pgPool(url, {
    max: options.poolSize ?? 10,
    timeoutMs,
    applicationName: 'execlayer-approvals',
  });
  const backend = new PostgresBackend(pool, timeoutMs);
  try {
    const schema = {
      store: STORE,
      timeoutMs: SCHEMA_TIMEOUT_MS,
      transaction: true,
      begin: `SET LOCAL statement_timeout = ${SCHEMA_TIMEOUT_MS}`,
    };
    await pgRun(pool, schema, async (c) => {
      // Replicas starting together must not race on CREATE TABLE.
      await c.query("SELECT pg_advisory_xact_lock(hashtextextended('execlayer:approvals:schema', 0))");
      await c.query(SCHEMA);
    });
  } catch (err) {
    await pool.end();
    throw err;
  }
  return new ApprovalStoreImpl(backend, options);
}
