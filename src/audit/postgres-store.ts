/**
 * PostgreSQL audit store (`pg`). For several ExecLayer replicas sharing one log: each append locks the
 * single head row (`SELECT … FOR UPDATE`), so processes on any machine extend one gapless chain. A commit
 * with the default `synchronous_commit = on` is durable when `append` resolves.
 */
import type pg from 'pg';
import { messageOf } from '../errors.js';
import {
  CommitUnknownError,
  DEFAULT_STORE_TIMEOUT_MS,
  pgPool,
  pgRun,
  StoreTimeoutError,
} from '../state/pg-db.js';
import type { Checkpoint } from './checkpoint.js';
import { AuditError } from './errors.js';
import { GENESIS_HASH, type StoredRecord } from './record.js';
import type {
  AppendOptions,
  AuditStore,
  ChainHead,
  LateCommit,
  RecordQuery,
  SealedBatch,
  Sealer,
} from './store.js';

/** Default bound of the tools' reads (verify, export, query). */
const DEFAULT_READ_TIMEOUT_MS = 15_000;

/** An append sent up to its COMMIT whose answer never came; `covers`: late commits it told about. */
interface InDoubt {
  seq: number;
  hash: Buffer;
  count: number;
  covers: InDoubt[];
}

/** Which of `doubts` are in the log now: each that landed, or, for one that did not, the ones it covered. */
async function landed(c: pg.PoolClient, doubts: readonly InDoubt[]): Promise<InDoubt[]> {
  const r = await c.query<{ seq: string; hash: Buffer }>(
    'SELECT seq, hash FROM audit_records WHERE seq = ANY($1::bigint[])',
    [doubts.map((d) => d.seq)],
  );
  const found = new Map(r.rows.map((row) => [Number(row.seq), row.hash]));
  const out: InDoubt[] = [];
  for (const d of doubts) {
    // Another replica may hold that seq now: only our own hash proves it is ours.
    if (found.get(d.seq)?.equals(d.hash) === true) out.push(d);
    else out.push(...d.covers);
  }
  return out;
}

function toLateCommit(d: InDoubt): LateCommit {
  return { seq: d.seq, count: d.count, hash: d.hash.toString('hex') };
}

/** Options for `openPostgresStore`. */
export interface PostgresStoreOptions {
  /** Connections in the pool (default 4). */
  poolSize?: number;
  /**
   * Deadline of an append, a head read and the other short operations, connection included (default
   * 2000 ms). When it passes the operation fails with `audit_unavailable`, so the action is denied.
   */
  timeoutMs?: number;
  /** Bound of one read for the tools (verify, export, query), server and client side (default 15 000 ms). */
  statementTimeoutMs?: number;
}

const AUDIT_TABLES = ['audit_meta', 'audit_head', 'audit_records', 'audit_checkpoints'];

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS audit_head (
  id int PRIMARY KEY CHECK (id = 1),
  size bigint NOT NULL, hash bytea NOT NULL, time bigint NOT NULL, frontier bytea NOT NULL,
  cp_size bigint NOT NULL, cp_time bigint NOT NULL, pruned_before bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_records (
  seq bigint PRIMARY KEY,
  v smallint NOT NULL,
  time bigint NOT NULL,
  hash bytea NOT NULL,
  event text,
  type text,
  agent text,
  tool text,
  effect text,
  rule text,
  decision_id text
);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time);
CREATE INDEX IF NOT EXISTS audit_records_agent ON audit_records (agent, seq) WHERE agent IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_records_tool ON audit_records (tool, seq) WHERE tool IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  size bigint PRIMARY KEY, root text NOT NULL, time bigint NOT NULL, key_id text NOT NULL, sig text NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, '\\x${GENESIS_HASH.toString('hex')}', 0, '\\x', 0, 0, 0) ON CONFLICT (id) DO NOTHING;
`;

const CORRUPT_CODES = new Set(['XX001', 'XX002']);

function pgError(e: unknown, location: string, action: string): AuditError {
  if (e instanceof AuditError) return e;
  if (e instanceof StoreTimeoutError || e instanceof CommitUnknownError) {
    // The reason says which store and the bound, e.g. "audit store (postgres) did not answer within 2000 ms".
    return new AuditError('audit_unavailable', e.message, {
      cause: e,
      data: {
        location,
        timeout: e instanceof StoreTimeoutError,
        commitUnknown: e instanceof CommitUnknownError || e.commitSent,
      },
    });
  }
  const code = String((e as { code?: unknown }).code ?? '');
  if (CORRUPT_CODES.has(code)) {
    return new AuditError(
      'audit_corrupt',
      `audit store \`${location}\` reports corruption (${code}): ${messageOf(e)}`,
      {
        cause: e,
        data: { location, pg: code },
      },
    );
  }
  return new AuditError(
    'audit_unavailable',
    `cannot ${action} audit store \`${location}\`: ${messageOf(e)}`,
    {
      cause: e,
      data: { location, pg: code },
    },
  );
}

interface RecordRow {
  seq: string;
  v: number;
  time: string;
  hash: Buffer;
  event: string | null;
  type?: string | null;
  agent?: string | null;
  tool?: string | null;
  effect?: string | null;
  rule?: string | null;
  decision_id?: string | null;
}

function toStored(r: RecordRow): StoredRecord {
  const row: StoredRecord = {
    seq: Number(r.seq),
    v: r.v,
    time: Number(r.time),
    hash: r.hash,
    event: r.event,
  };
  if (r.type !== undefined) {
    row.index = {
      type: r.type,
      agent: r.agent ?? null,
      tool: r.tool ?? null,
      effect: r.effect ?? null,
      rule: r.rule ?? null,
      decisionId: r.decision_id ?? null,
    };
  }
  return row;
}

interface HeadRow {
  size: string;
  hash: Buffer;
  time: string;
  frontier: Buffer;
  cp_size: string;
  cp_time: string;
  pruned_before: string;
}

function toHead(r: HeadRow | undefined, location: string): ChainHead {
  if (r === undefined) throw new AuditError('audit_corrupt', `audit store \`${location}\` has no head row`);
  return {
    size: Number(r.size),
    hash: r.hash,
    time: Number(r.time),
    frontier: r.frontier,
    checkpointSize: Number(r.cp_size),
    checkpointTime: Number(r.cp_time),
    prunedBefore: Number(r.pruned_before),
  };
}

const HEAD_SQL =
  'SELECT size, hash, time, frontier, cp_size, cp_time, pruned_before FROM audit_head WHERE id = 1';

/** The PostgreSQL backend. Create it with `openPostgresStore`. */
export class PostgresAuditStore implements AuditStore {
  readonly kind = 'postgres';
  private closed = false;

  /** Appends that timed out with COMMIT on the wire: they may have committed (see `append`). */
  private inDoubt: InDoubt[] = [];

  constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
    /** Deadline of appends and short operations (ms). */
    readonly timeoutMs: number = DEFAULT_STORE_TIMEOUT_MS,
    /** Deadline of the tools' reads (ms). */
    readonly readTimeoutMs: number = DEFAULT_READ_TIMEOUT_MS,
  ) {}

  private get label(): string {
    return 'audit store (postgres)';
  }

  /** One transaction within the append deadline (see `pgRun` for the retry and timeout rules). */
  private async tx<T>(action: string, fn: (c: pg.PoolClient) => Promise<T>, deadline?: number): Promise<T> {
    if (this.closed) throw new AuditError('audit_unavailable', `audit store \`${this.location}\` is closed`);
    const timeoutMs = this.timeoutMs;
    try {
      return await pgRun(
        this.pool,
        {
          store: this.label,
          timeoutMs,
          transaction: true,
          ...(deadline === undefined ? {} : { deadline }),
          // The session's statement_timeout is sized for the tools' long reads; a write waits less.
          begin: `SET LOCAL statement_timeout = ${Math.max(1, Math.ceil(timeoutMs))}`,
        },
        fn,
      );
    } catch (e) {
      throw pgError(e, this.location, action);
    }
  }

  private async q<R extends pg.QueryResultRow>(
    action: string,
    sql: string,
    params: unknown[] = [],
    timeoutMs = this.readTimeoutMs,
  ): Promise<R[]> {
    if (this.closed) throw new AuditError('audit_unavailable', `audit store \`${this.location}\` is closed`);
    try {
      return await pgRun(
        this.pool,
        { store: this.label, timeoutMs, readOnly: true },
        async (c) => (await c.query<R>(sql, params)).rows,
      );
    } catch (e) {
      throw pgError(e, this.location, action);
    }
  }

  /**
   * Appends under the head row lock, within the append deadline (`timeoutMs`, or the earlier `options.deadline`).
   *
   * WHY "IN DOUBT" IS TRACKED: an append whose deadline passed while its COMMIT was on the wire may still
   * commit on the server — the bytes were on their way when the link froze, and arrive when it returns. Its
   * callers were told it failed and denied their actions, so those records would say "allowed" about actions
   * that never ran. Sending it again would be wrong too (it may have committed). The chain itself stays
   * sound either way, since records and head row commit in one transaction: the next append reads whichever
   * head is there, and verification passes. What would be missing is what happened, so the store remembers
   * what it sent (first seq, its hash, the count) and looks for it in its next append, after taking the head
   * row lock. Holding that lock settles the question: the earlier transaction held the same lock until it
   * committed or rolled back (or the server ended it, `idle_in_transaction_session_timeout`). Records that
   * landed are handed to `seal`, which writes a `store` event saying their callers were told they failed.
   */
  async append(seal: Sealer, options: AppendOptions = {}): Promise<SealedBatch> {
    const doubts = this.inDoubt;
    let sent: InDoubt | null = null;
    try {
      const out = await this.tx(
        'write',
        async (c) => {
          sent = null;
          const head = toHead((await c.query<HeadRow>(`${HEAD_SQL} FOR UPDATE`)).rows[0], this.location);
          const late = doubts.length === 0 ? [] : await landed(c, doubts);
          const batch = seal(head, late.map(toLateCommit));
          const first = batch.rows[0];
          if (first !== undefined)
            sent = { seq: first.seq, hash: first.hash, count: batch.rows.length, covers: late };
          const rows = batch.rows;
          if (rows.length > 0) {
            const seqs = new Array<number>(rows.length);
            const vs = new Array<number>(rows.length);
            const times = new Array<number>(rows.length);
            const hashes = new Array<string>(rows.length);
            const events = new Array<string | null>(rows.length);
            const cols: Array<Array<string | null>> = [[], [], [], [], [], []];
            for (let i = 0; i < rows.length; i++) {
              const r = rows[i]!;
              seqs[i] = r.seq;
              vs[i] = r.v;
              times[i] = r.time;
              hashes[i] = r.hash.toString('hex');
              events[i] = r.event;
              const x = r.index;
              cols[0]!.push(x?.type ?? null);
              cols[1]!.push(x?.agent ?? null);
              cols[2]!.push(x?.tool ?? null);
              cols[3]!.push(x?.effect ?? null);
              cols[4]!.push(x?.rule ?? null);
              cols[5]!.push(x?.decisionId ?? null);
            }
            await c.query(
              `INSERT INTO audit_records (seq, v, time, hash, event, type, agent, tool, effect, rule, decision_id)
           SELECT s, v, t, decode(h, 'hex'), e, ty, ag, tl, ef, ru, di
           FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
             AS u(s, v, t, h, e, ty, ag, tl, ef, ru, di)`,
              [seqs, vs, times, hashes, events, ...cols],
            );
          }
          const h = batch.head;
          await c.query(
            'UPDATE audit_head SET size = $1, hash = $2, time = $3, frontier = $4, cp_size = $5, cp_time = $6, pruned_before = $7 WHERE id = 1',
            [h.size, h.hash, h.time, h.frontier, h.checkpointSize, h.checkpointTime, h.prunedBefore],
          );
          for (const cp of batch.checkpoints) {
            await c.query(
              'INSERT INTO audit_checkpoints (size, root, time, key_id, sig) VALUES ($1, $2, $3, $4, $5)',
              [cp.size, cp.root, cp.time, cp.keyId, cp.sig],
            );
          }
          return batch;
        },
        options.deadline,
      );
      // Every doubt checked in a committed transaction is settled: absent, or told about in it.
      this.inDoubt = this.inDoubt.filter((d) => !doubts.includes(d));
      return out;
    } catch (e) {
      const cause = e instanceof AuditError ? e.cause : e;
      const unknown =
        (cause instanceof StoreTimeoutError && cause.commitSent) || cause instanceof CommitUnknownError;
      if (unknown && sent !== null) this.inDoubt = [...this.inDoubt.filter((d) => !doubts.includes(d)), sent];
      throw e;
    }
  }

  async head(): Promise<ChainHead> {
    return toHead((await this.q<HeadRow>('read', HEAD_SQL))[0], this.location);
  }

  async read(from: number, limit: number): Promise<StoredRecord[]> {
    // The chunk reader (verification, proofs, export): rows in seq order because the query says so.
    const rows = await this.q<RecordRow>(
      'read',
      'SELECT seq, v, time, hash, event, type, agent, tool, effect, rule, decision_id FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2',
      [from, limit],
    );
    return rows.map(toStored);
  }

  async query(q: RecordQuery): Promise<StoredRecord[]> {
    const where: string[] = ['event IS NOT NULL'];
    const params: unknown[] = [];
    const add = (cond: string, v: unknown) => {
      params.push(v);
      where.push(cond.replace('?', `$${params.length}`));
    };
    if (q.agent !== undefined) add('agent = ?', q.agent);
    if (q.tool !== undefined) add('tool = ?', q.tool);
    if (q.effect !== undefined) add('effect = ?', q.effect);
    if (q.rule !== undefined) add('rule = ?', q.rule);
    if (q.type !== undefined) add('type = ?', q.type);
    if (q.decisionId !== undefined) add('decision_id = ?', q.decisionId);
    if (q.since !== undefined) add('time >= ?', q.since);
    if (q.until !== undefined) add('time < ?', q.until);
    if (q.afterSeq !== undefined) add('seq > ?', q.afterSeq);
    const order = q.order === 'desc' ? 'DESC' : 'ASC';
    let sql = `SELECT seq, v, time, hash, event FROM audit_records WHERE ${where.join(' AND ')} ORDER BY seq ${order}`;
    if (q.limit !== undefined) {
      params.push(q.limit);
      sql += ` LIMIT $${params.length}`;
    }
    return (await this.q<RecordRow>('query', sql, params)).map(toStored);
  }

  async checkpoints(): Promise<Checkpoint[]> {
    const rows = await this.q<{ size: string; root: string; time: string; key_id: string; sig: string }>(
      'read',
      'SELECT size, root, time, key_id, sig FROM audit_checkpoints ORDER BY size',
    );
    return rows.map((r) => ({
      size: Number(r.size),
      root: r.root,
      time: Number(r.time),
      keyId: r.key_id,
      sig: r.sig,
    }));
  }

  async seqAtTime(time: number): Promise<number> {
    const rows = await this.q<{ seq: string | null; size: string }>(
      'read',
      'SELECT (SELECT min(seq) FROM audit_records WHERE time >= $1) AS seq, (SELECT size FROM audit_head WHERE id = 1) AS size',
      [time],
    );
    const r = rows[0];
    return Number(r?.seq ?? r?.size ?? 0);
  }

  prune(before: number): Promise<number> {
    return this.tx('prune', async (c) => {
      const head = toHead((await c.query<HeadRow>(`${HEAD_SQL} FOR UPDATE`)).rows[0], this.location);
      const cp = await c.query('SELECT 1 FROM audit_checkpoints WHERE size = $1', [before]);
      if (cp.rowCount === 0) {
        throw new AuditError(
          'invalid_request',
          `no checkpoint at size ${before}: records can only be pruned below a signed checkpoint`,
        );
      }
      if (before <= head.prunedBefore) return 0;
      const r = await c.query(
        'UPDATE audit_records SET event = NULL, type = NULL, agent = NULL, tool = NULL, effect = NULL, rule = NULL, decision_id = NULL WHERE seq >= $1 AND seq < $2 AND event IS NOT NULL',
        [head.prunedBefore, before],
      );
      await c.query('UPDATE audit_head SET pruned_before = $1 WHERE id = 1', [before]);
      return r.rowCount ?? 0;
    });
  }

  bindPublicKey(pem: string): Promise<string> {
    return this.tx('write', async (c) => {
      await c.query(
        "INSERT INTO audit_meta (key, value) VALUES ('public_key', $1) ON CONFLICT (key) DO NOTHING",
        [pem],
      );
      const r = await c.query<{ value: string }>("SELECT value FROM audit_meta WHERE key = 'public_key'");
      return r.rows[0]!.value;
    });
  }

  async publicKey(): Promise<string | null> {
    return this.meta('public_key');
  }

  bindMeta(key: string, value: string): Promise<string> {
    return this.tx('write', async (c) => {
      await c.query('INSERT INTO audit_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [
        key,
        value,
      ]);
      const r = await c.query<{ value: string }>('SELECT value FROM audit_meta WHERE key = $1', [key]);
      return r.rows[0]!.value;
    });
  }

  async meta(key: string): Promise<string | null> {
    const r = await this.q<{ value: string }>('read', 'SELECT value FROM audit_meta WHERE key = $1', [key]);
    return r[0]?.value ?? null;
  }

  /** Run raw SQL. For tests and repair tools only; never used by the log. */
  async unsafeExec(sql: string, ...params: unknown[]): Promise<void> {
    await this.q('exec', sql, params);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end().catch(() => undefined);
  }
}

/**
 * Connect to PostgreSQL at `url` and create the audit tables if needed (under an advisory lock, so replicas
 * starting together do not race). Rejects with `audit_unavailable` when the server cannot be reached.
 */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresAuditStore> {
  const location = redact(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
  const readTimeoutMs = Math.max(timeoutMs, options.statementTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS);
  const pool = pgPool(url, {
    max: options.poolSize ?? 4,
    timeoutMs,
    statementTimeoutMs: readTimeoutMs,
    applicationName: 'execlayer-audit',
  });
  const store = new PostgresAuditStore(pool, location, timeoutMs, readTimeoutMs);
  try {
    // Replicas starting together wait for each other's schema transaction: the tools' longer bound.
    await pgRun(
      pool,
      { store: 'audit store (postgres)', timeoutMs: readTimeoutMs, transaction: true },
      async (c) => {
        await c.query("SELECT pg_advisory_xact_lock(hashtext('execlayer_audit_schema'))");
        // INVARIANT: tables are created only in a database that has none of them; a log with some of its
        // tables dropped was tampered with and is refused, never quietly given new empty ones.
        const missing = await c.query<{ t: string }>(
          'SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NULL',
          [AUDIT_TABLES],
        );
        if (missing.rows.length > 0 && missing.rows.length < AUDIT_TABLES.length) {
          const missingTables = missing.rows.map((r) => r.t);
          throw new AuditError(
            'audit_corrupt',
            `audit store \`${location}\` has no ${missingTables.join(', ')} table: it was altered; it was left untouched`,
            { data: { location, missingTables } },
          );
        }
        await c.query(SCHEMA);
      },
    );
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw pgError(e, location, 'open');
  }
  return store;
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
