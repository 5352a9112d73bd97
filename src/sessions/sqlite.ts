/**
 * SQLite session store (the embedded default). Deltas and endorsements are rows keyed by (scope, id), so
 * appends are idempotent `INSERT OR IGNORE`s; several processes may share the file.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { type Endorsement, type FlowDelta, MAX_DELTAS, type SessionRecord } from '../flows/state.js';
import { openSqlite } from '../state/sqlite-db.js';
import { DEFAULT_SESSION_IDLE_MS, parseRow, type SessionStore, type SessionStoreOptions } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS flow_deltas (
  scope TEXT NOT NULL,
  id TEXT NOT NULL,
  at INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (scope, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_endorsements (
  scope TEXT NOT NULL,
  id TEXT NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (scope, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_sessions (
  scope TEXT PRIMARY KEY,
  touched INTEGER NOT NULL
) WITHOUT ROWID;
`;

/** Options for the SQLite session store. */
export interface SqliteSessionStoreOptions extends SessionStoreOptions {
  /** How long a write waits for another process's lock. Default 2000 ms. */
  busyTimeoutMs?: number;
}

const SWEEP_EVERY = 4096;

/** Session store in a SQLite file. */
export class SqliteSessionStore implements SessionStore {
  readonly #db: BetterSqlite3.Database;
  readonly #idleMs: number;
  readonly #s: Record<
    'count' | 'addDelta' | 'addEndorse' | 'touch' | 'touched' | 'deltas' | 'endorsements' | 'stale',
    BetterSqlite3.Statement
  >;
  readonly #forget: (scope: string) => void;
  #ops = 0;

  constructor(path: string, options: SqliteSessionStoreOptions = {}) {
    this.#db = openSqlite(path, {
      schema: SCHEMA,
      ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
    });
    this.#idleMs = options.idleMs ?? DEFAULT_SESSION_IDLE_MS;
    const db = this.#db;
    this.#s = {
      count: db.prepare('SELECT count(*) FROM flow_deltas WHERE scope = ?').pluck(),
      addDelta: db.prepare('INSERT OR IGNORE INTO flow_deltas (scope, id, at, body) VALUES (?, ?, ?, ?)'),
      addEndorse: db.prepare('INSERT OR IGNORE INTO flow_endorsements (scope, id, body) VALUES (?, ?, ?)'),
      touch: db.prepare(
        'INSERT INTO flow_sessions (scope, touched) VALUES (?, ?) ON CONFLICT(scope) DO UPDATE SET touched = excluded.touched',
      ),
      touched: db.prepare('SELECT touched FROM flow_sessions WHERE scope = ?').pluck(),
      deltas: db.prepare('SELECT body FROM flow_deltas WHERE scope = ?').pluck(),
      endorsements: db.prepare('SELECT body FROM flow_endorsements WHERE scope = ?').pluck(),
      stale: db.prepare('SELECT scope FROM flow_sessions WHERE touched < ? LIMIT 256').pluck(),
    };
    const del = [
      db.prepare('DELETE FROM flow_deltas WHERE scope = ?'),
      db.prepare('DELETE FROM flow_endorsements WHERE scope = ?'),
      db.prepare('DELETE FROM flow_sessions WHERE scope = ?'),
    ];
    this.#forget = db.transaction((scope: string) => {
      for (const d of del) d.run(scope);
    });
  }

  async append(scope: string, delta: FlowDelta): Promise<void> {
    this.#expire(scope);
    this.#db
      .transaction(() => {
        // One past the cap is kept, so the fold sees the session as saturated (fail closed).
        if ((this.#s.count.get(scope) as number) <= MAX_DELTAS)
          this.#s.addDelta.run(scope, delta.id, delta.at, JSON.stringify(delta));
        this.#s.touch.run(scope, Date.now());
      })
      .immediate();
    this.#sweep();
  }

  async endorse(scope: string, e: Endorsement): Promise<void> {
    this.#expire(scope);
    this.#db
      .transaction(() => {
        this.#s.addEndorse.run(scope, `${e.resultDigest}:${e.approvalId}`, JSON.stringify(e));
        this.#s.touch.run(scope, Date.now());
      })
      .immediate();
  }

  async load(scope: string): Promise<SessionRecord> {
    const touched = this.#s.touched.get(scope) as number | undefined;
    if (touched === undefined || Date.now() - touched > this.#idleMs) return { deltas: [], endorsements: [] };
    return {
      deltas: (this.#s.deltas.all(scope) as string[]).map((t) => parseRow<FlowDelta>(t, 'flow delta')),
      endorsements: (this.#s.endorsements.all(scope) as string[]).map((t) =>
        parseRow<Endorsement>(t, 'endorsement'),
      ),
    };
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }

  /** A session idle past the limit starts afresh. */
  #expire(scope: string): void {
    const touched = this.#s.touched.get(scope) as number | undefined;
    if (touched !== undefined && Date.now() - touched > this.#idleMs) this.#forget(scope);
  }

  #sweep(): void {
    if (++this.#ops % SWEEP_EVERY !== 0) return;
    for (const s of this.#s.stale.all(Date.now() - this.#idleMs) as string[]) this.#forget(s);
  }
}
