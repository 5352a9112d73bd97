/**
 * SQLite audit store (better-sqlite3, WAL). The embedded default.
 *
 * Durability: WAL with `synchronous=FULL`, so every commit fsyncs the WAL before `append` resolves. NORMAL
 * would survive a process crash but not a power cut or kernel panic; evidence must survive both, and group
 * commit (many records per transaction) makes the one fsync per batch cheap.
 *
 * Several processes may share one file: each append runs in `BEGIN IMMEDIATE` (SQLite's write lock, waited
 * for up to `busyTimeoutMs`) and re-reads the head inside it, so writers interleave into one gapless chain.
 */
import { chmodSync, closeSync, existsSync, fchmodSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { messageOf } from '../errors.js';
import { retryBusy, retryBusySync } from '../state/sqlite-db.js';
import type { Checkpoint } from './checkpoint.js';
import { AuditError } from './errors.js';
import { GENESIS_HASH, type StoredRecord } from './record.js';
import type { AuditStore, ChainHead, RecordQuery, SealedBatch, Sealer } from './store.js';

/** `PRAGMA application_id` of an ExecLayer audit database ("EXLA"). */
export const SQLITE_APPLICATION_ID = 0x45584c41;
const SCHEMA_VERSION = 1;

/** Options for `openSqliteStore`. */
export interface SqliteStoreOptions {
  /** Create the database when the file does not exist (default true). It is never re-created over a file. */
  create?: boolean;
  /** Run `PRAGMA quick_check` on open to find a damaged file before writing to it (default true). */
  quickCheck?: boolean;
  /** How long a writer waits for another process's write lock (default 10 000 ms). */
  busyTimeoutMs?: number;
  /**
   * Read the file through a memory map of up to this many bytes (default 0: none). A full scan (verify,
   * export) then costs less than with a read() call per page. The read-only tools set it; a long-running
   * enforcement point does not, because an I/O error on a mapped page is a signal that ends the process
   * instead of an error it can answer with a deny. SQLite never writes through the map, and nothing
   * shrinks this file under a reader.
   */
  mmapBytes?: number;
}

type Row = [
  number,
  number,
  number,
  Buffer,
  string | null,
  string | null,
  string | null,
  string | null,
  string | null,
  string | null,
  string | null,
];

const INSERT =
  'INSERT INTO audit_records (seq, v, time, hash, event, type, agent, tool, effect, rule, decision_id) VALUES';
const ROW = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
const COLUMNS = 11;
const ROW_COLUMNS = 'seq, v, time, hash, event, type, agent, tool, effect, rule, decision_id';
/** Rows per multi-row INSERT (x 11 parameters, well under SQLite's limit of 32 766). */
const INSERT_ROWS = 32;
function bindRow(params: unknown[], at: number, r: StoredRecord): void {
  const c = r.index;
  params[at] = r.seq;
  params[at + 1] = r.v;
  params[at + 2] = r.time;
  params[at + 3] = r.hash;
  params[at + 4] = r.event;
  params[at + 5] = c?.type ?? null;
  params[at + 6] = c?.agent ?? null;
  params[at + 7] = c?.tool ?? null;
  params[at + 8] = c?.effect ?? null;
  params[at + 9] = c?.rule ?? null;
  params[at + 10] = c?.decisionId ?? null;
}

function toStored(r: Row): StoredRecord {
  return {
    seq: r[0],
    v: r[1],
    time: r[2],
    hash: r[3],
    event: r[4],
    index: { type: r[5], agent: r[6], tool: r[7], effect: r[8], rule: r[9], decisionId: r[10] },
  };
}

function sqliteError(e: unknown, path: string, action: string): AuditError {
  if (e instanceof AuditError) return e;
  const code = String((e as { code?: unknown }).code ?? '');
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return new AuditError(
      'audit_corrupt',
      `audit database \`${path}\` is corrupt (${code}): it was left untouched; restore it from a backup or move it aside`,
      { cause: e, data: { path, sqlite: code } },
    );
  }
  return new AuditError('audit_unavailable', `cannot ${action} audit database \`${path}\`: ${messageOf(e)}`, {
    cause: e,
    data: { path, sqlite: code },
  });
}

/** The tables of an audit database; every one must exist in a log once created. */
const AUDIT_TABLES = ['audit_meta', 'audit_head', 'audit_records', 'audit_checkpoints'];

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  size INTEGER NOT NULL, hash BLOB NOT NULL, time INTEGER NOT NULL, frontier BLOB NOT NULL,
  cp_size INTEGER NOT NULL, cp_time INTEGER NOT NULL, pruned_before INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS audit_records (
  seq INTEGER PRIMARY KEY,
  v INTEGER NOT NULL,
  time INTEGER NOT NULL,
  hash BLOB NOT NULL,
  event TEXT,
  type TEXT,
  agent TEXT,
  tool TEXT,
  effect TEXT,
  rule TEXT,
  decision_id TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time);
CREATE INDEX IF NOT EXISTS audit_records_agent ON audit_records (agent, seq) WHERE agent IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_records_tool ON audit_records (tool, seq) WHERE tool IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  size INTEGER PRIMARY KEY, root TEXT NOT NULL, time INTEGER NOT NULL, key_id TEXT NOT NULL, sig TEXT NOT NULL
) STRICT;
`;

/** The SQLite backend. Create it with `openSqliteStore`. */
export class SqliteAuditStore implements AuditStore {
  readonly kind = 'sqlite';
  private closed = false;
  private readonly stmts: ReturnType<SqliteAuditStore['prepare']>;
  private readonly appendTx: Database.Transaction<(seal: Sealer) => SealedBatch>;
  private readonly params: unknown[] = new Array(INSERT_ROWS * COLUMNS);
  private readonly single: unknown[] = new Array(COLUMNS);

  constructor(
    private readonly db: Database.Database,
    readonly location: string,
    private readonly busyTimeoutMs: number,
  ) {
    this.stmts = this.prepare();
    this.appendTx = db.transaction((seal: Sealer) => {
      const head = this.readHead();
      const batch = seal(head);
      const rows = batch.rows;
      // Many rows per statement: one call into SQLite per INSERT_ROWS records instead of one per record.
      const wide = this.stmts.insertMany;
      const params = this.params;
      let i = 0;
      for (; i + INSERT_ROWS <= rows.length; i += INSERT_ROWS) {
        for (let j = 0; j < INSERT_ROWS; j++) bindRow(params, j * COLUMNS, rows[i + j]!);
        wide.run(params);
      }
      const one = this.stmts.insert;
      const single = this.single;
      for (; i < rows.length; i++) {
        bindRow(single, 0, rows[i]!);
        one.run(single);
      }
      const h = batch.head;
      this.stmts.updateHead.run(
        h.size,
        h.hash,
        h.time,
        h.frontier,
        h.checkpointSize,
        h.checkpointTime,
        h.prunedBefore,
      );
      for (const cp of batch.checkpoints) {
        this.stmts.insertCheckpoint.run(cp.size, cp.root, cp.time, cp.keyId, cp.sig);
      }
      return batch;
    });
  }

  private prepare() {
    const db = this.db;
    return {
      head: db.prepare(
        'SELECT size, hash, time, frontier, cp_size, cp_time, pruned_before FROM audit_head WHERE id = 1',
      ),
      insert: db.prepare(`${INSERT} ${ROW}`),
      insertMany: db.prepare(`${INSERT} ${Array(INSERT_ROWS).fill(ROW).join(', ')}`),
      updateHead: db.prepare(
        'UPDATE audit_head SET size = ?, hash = ?, time = ?, frontier = ?, cp_size = ?, cp_time = ?, pruned_before = ? WHERE id = 1',
      ),
      insertCheckpoint: db.prepare(
        'INSERT INTO audit_checkpoints (size, root, time, key_id, sig) VALUES (?, ?, ?, ?, ?)',
      ),
      // The chunk reader (verification, proofs, export): rows in seq order because the query says so.
      read: db
        .prepare(`SELECT ${ROW_COLUMNS} FROM audit_records WHERE seq >= ? ORDER BY seq LIMIT ?`)
        .raw(true),
      checkpoints: db.prepare('SELECT size, root, time, key_id, sig FROM audit_checkpoints ORDER BY size'),
      seqAtTime: db.prepare('SELECT min(seq) AS seq FROM audit_records WHERE time >= ?'),
      meta: db.prepare('SELECT value FROM audit_meta WHERE key = ?').pluck(),
      setMeta: db.prepare('INSERT OR IGNORE INTO audit_meta (key, value) VALUES (?, ?)'),
    };
  }

  private readHead(): ChainHead {
    const r = this.stmts.head.get() as
      | {
          size: number;
          hash: Buffer;
          time: number;
          frontier: Buffer;
          cp_size: number;
          cp_time: number;
          pruned_before: number;
        }
      | undefined;
    if (r === undefined) {
      throw new AuditError('audit_corrupt', `audit database \`${this.location}\` has no head row`);
    }
    return {
      size: r.size,
      hash: r.hash,
      time: r.time,
      frontier: r.frontier,
      checkpointSize: r.cp_size,
      checkpointTime: r.cp_time,
      prunedBefore: r.pruned_before,
    };
  }

  private guard<T>(action: string, fn: () => T): Promise<T> {
    if (this.closed) {
      return Promise.reject(
        new AuditError('audit_unavailable', `audit database \`${this.location}\` is closed`),
      );
    }
    // Each operation is one statement or one transaction, rolled back whole when it fails: safe to retry.
    return retryBusy(fn, this.busyTimeoutMs).catch((e: unknown) => {
      throw sqliteError(e, this.location, action);
    });
  }

  append(seal: Sealer): Promise<SealedBatch> {
    return this.guard('write', () => this.appendTx.immediate(seal));
  }

  head(): Promise<ChainHead> {
    return this.guard('read', () => this.readHead());
  }

  read(from: number, limit: number): Promise<StoredRecord[]> {
    return this.guard('read', () => (this.stmts.read.all(from, limit) as Row[]).map(toStored));
  }

  query(q: RecordQuery): Promise<StoredRecord[]> {
    return this.guard('query', () => {
      const where: string[] = ['event IS NOT NULL'];
      const params: unknown[] = [];
      const eq = (col: string, v: string | undefined) => {
        if (v !== undefined) {
          where.push(`${col} = ?`);
          params.push(v);
        }
      };
      eq('agent', q.agent);
      eq('tool', q.tool);
      eq('effect', q.effect);
      eq('rule', q.rule);
      eq('type', q.type);
      eq('decision_id', q.decisionId);
      if (q.since !== undefined) {
        where.push('time >= ?');
        params.push(q.since);
      }
      if (q.until !== undefined) {
        where.push('time < ?');
        params.push(q.until);
      }
      if (q.afterSeq !== undefined) {
        where.push('seq > ?');
        params.push(q.afterSeq);
      }
      const order = q.order === 'desc' ? 'DESC' : 'ASC';
      const limit = q.limit ?? -1;
      const sql = `SELECT ${ROW_COLUMNS} FROM audit_records WHERE ${where.join(' AND ')} ORDER BY seq ${order} LIMIT ?`;
      return (
        this.db
          .prepare(sql)
          .raw(true)
          .all(...params, limit) as Row[]
      ).map(toStored);
    });
  }

  checkpoints(): Promise<Checkpoint[]> {
    return this.guard('read', () =>
      (
        this.stmts.checkpoints.all() as Array<{
          size: number;
          root: string;
          time: number;
          key_id: string;
          sig: string;
        }>
      ).map((r) => ({ size: r.size, root: r.root, time: r.time, keyId: r.key_id, sig: r.sig })),
    );
  }

  seqAtTime(time: number): Promise<number> {
    return this.guard('read', () => {
      const r = this.stmts.seqAtTime.get(time) as { seq: number | null };
      return r.seq ?? this.readHead().size;
    });
  }

  prune(before: number): Promise<number> {
    return this.guard('prune', () =>
      this.db
        .transaction(() => {
          const head = this.readHead();
          const cp = this.db.prepare('SELECT 1 FROM audit_checkpoints WHERE size = ?').get(before);
          if (cp === undefined) {
            throw new AuditError(
              'invalid_request',
              `no checkpoint at size ${before}: records can only be pruned below a signed checkpoint`,
            );
          }
          if (before <= head.prunedBefore) return 0;
          const n = this.db
            .prepare(
              'UPDATE audit_records SET event = NULL, type = NULL, agent = NULL, tool = NULL, effect = NULL, rule = NULL, decision_id = NULL WHERE seq >= ? AND seq < ? AND event IS NOT NULL',
            )
            .run(head.prunedBefore, before).changes;
          this.db.prepare('UPDATE audit_head SET pruned_before = ? WHERE id = 1').run(before);
          return n;
        })
        .immediate(),
    );
  }

  bindPublicKey(pem: string): Promise<string> {
    return this.bindMeta('public_key', pem);
  }

  publicKey(): Promise<string | null> {
    return this.meta('public_key');
  }

  bindMeta(key: string, value: string): Promise<string> {
    return this.guard('write', () =>
      this.db
        .transaction(() => {
          this.stmts.setMeta.run(key, value);
          return this.stmts.meta.get(key) as string;
        })
        .immediate(),
    );
  }

  meta(key: string): Promise<string | null> {
    return this.guard('read', () => (this.stmts.meta.get(key) as string | undefined) ?? null);
  }

  /** Run raw SQL against the database. For tests and repair tools only; never used by the log. */
  unsafeExec(sql: string, ...params: unknown[]): void {
    this.db.prepare(sql).run(...params);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    try {
      this.db.close();
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(sqliteError(e, this.location, 'close'));
    }
  }
}

/**
 * Create `path` empty and owner-only (0600 whatever the umask), for SQLite to fill: every call's arguments
 * end up in this file. Another process creating it at the same instant is fine (SQLite treats the empty
 * file as a new database).
 */
function createPrivateFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw new AuditError('audit_unavailable', `cannot create audit database \`${path}\`: ${messageOf(e)}`, {
      cause: e,
      data: { path },
    });
  }
  try {
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}

/**
 * Open (or, when the file does not exist and `create` allows, create) an SQLite audit store. A file that
 * exists but is empty, damaged or not an ExecLayer audit database is refused with `audit_corrupt` and left
 * untouched — never re-created.
 */
export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): SqliteAuditStore {
  const exists = existsSync(path);
  if (!exists && options.create === false) {
    throw new AuditError('audit_unavailable', `audit database \`${path}\` does not exist`, {
      data: { path },
    });
  }
  // A zero-byte file is what SQLite leaves between creating a database and writing its first page, so a
  // process starting beside another one may see it; openAuditLog refuses it when the log's key exists.
  if (exists && options.create === false && statSync(path).size === 0) {
    throw new AuditError('audit_corrupt', `audit database \`${path}\` is an empty file: it holds no log`, {
      data: { path },
    });
  }
  const busyTimeoutMs = Math.max(0, Math.floor(options.busyTimeoutMs ?? 10_000));
  if (!exists) createPrivateFile(path);
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: exists, timeout: busyTimeoutMs });
  } catch (e) {
    throw sqliteError(e, path, 'open');
  }
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    const mmapBytes = Math.max(0, Math.floor(options.mmapBytes ?? 0));
    if (mmapBytes > 0) db.pragma(`mmap_size = ${mmapBytes}`);
    const appId = db.pragma('application_id', { simple: true }) as number;
    const tables = db
      .prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'")
      .pluck()
      .get() as number;
    if (appId !== SQLITE_APPLICATION_ID && !(appId === 0 && tables === 0 && options.create !== false)) {
      throw new AuditError(
        'audit_corrupt',
        `\`${path}\` is not an execlayer audit database (application_id ${appId}): it was left untouched`,
        { data: { path } },
      );
    }
    if (exists && options.quickCheck !== false) {
      const result = db.pragma('quick_check(5)') as Array<{ quick_check: string }>;
      const problems = result.map((r) => r.quick_check).filter((m) => m !== 'ok');
      if (problems.length > 0) {
        throw new AuditError(
          'audit_corrupt',
          `audit database \`${path}\` is corrupt (${problems.join('; ')}): it was left untouched; restore it from a backup or move it aside`,
          { data: { path, problems } },
        );
      }
    }
    // Another process creating the same file at this instant can make these answer busy at once (both hold
    // a read lock and want the write lock): wait that out instead of failing the open.
    const mode = retryBusySync(
      () => db.pragma('journal_mode = WAL', { simple: true }) as string,
      busyTimeoutMs,
    );
    if (mode !== 'wal')
      throw new AuditError('audit_unavailable', `cannot enable wal on \`${path}\` (got ${mode})`);
    db.pragma('synchronous = FULL');
    if (appId !== SQLITE_APPLICATION_ID) {
      // SQLite gives the WAL and shared-memory files the database file's mode; make sure, before the
      // first record is written.
      for (const f of [`${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
      const create = db.transaction(() => {
        db.exec(SCHEMA);
        db.prepare('INSERT OR IGNORE INTO audit_head VALUES (1, 0, ?, 0, ?, 0, 0, 0)').run(
          GENESIS_HASH,
          Buffer.alloc(0),
        );
        db.pragma(`application_id = ${SQLITE_APPLICATION_ID}`);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      });
      retryBusySync(() => create.immediate(), busyTimeoutMs);
    } else {
      // INVARIANT: a log with a table dropped is tampered with, not merely unavailable: refused, named.
      const present = new Set(
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[],
      );
      const missingTables = AUDIT_TABLES.filter((t) => !present.has(t));
      if (missingTables.length > 0) {
        throw new AuditError(
          'audit_corrupt',
          `audit database \`${path}\` has no ${missingTables.join(', ')} table: it was altered; it was left untouched`,
          { data: { path, missingTables } },
        );
      }
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new AuditError(
          'audit_unavailable',
          `audit database \`${path}\` has schema version ${version}; this execlayer reads up to ${SCHEMA_VERSION}`,
        );
      }
    }
    return new SqliteAuditStore(db, path, busyTimeoutMs);
  } catch (e) {
    db.close();
    throw sqliteError(e, path, 'open');
  }
}
