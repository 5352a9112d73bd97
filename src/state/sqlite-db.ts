/**
 * Opens a better-sqlite3 database the way every ExecLayer SQLite store wants it: WAL, a bounded busy
 * timeout (a locked file becomes a store error, never a hang), and the file path taken from a store URL.
 */
import Database from 'better-sqlite3';

/** Options for `openSqlite`. */
export interface SqliteOpenOptions {
  /** How long a write waits for another process's lock before failing. Default 2000 ms. */
  busyTimeoutMs?: number;
}

/** How long a write waits for another process's lock unless told otherwise. */
export const DEFAULT_BUSY_TIMEOUT_MS = 2000;

/** Opens (creating if needed) the SQLite file at `path` in WAL mode. Throws when it cannot. */
export function openSqlite(path: string, options: SqliteOpenOptions = {}): Database.Database {
  const db = new Database(path, { timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
  try {
    if (path !== ':memory:') db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode: a process crash loses nothing; only an OS crash can lose the last commits.
    db.pragma('synchronous = NORMAL');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** The file path of a `sqlite:` URL (`sqlite:./x.db`, `sqlite:///abs/x.db`, `sqlite::memory:`). */
export function sqlitePath(url: string): string {
  const rest = url.slice('sqlite:'.length);
  if (rest.startsWith('//')) return rest.slice(2) || ':memory:';
  return rest || './execlayer.db';
}

/** True for SQLITE_BUSY and its extended codes (`SQLITE_BUSY_RECOVERY`, `SQLITE_BUSY_SNAPSHOT`, …). */
export function isSqliteBusy(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

/**
 * Runs `attempt` — one whole transaction, or a statement that takes SQLite's write lock — again while
 * SQLite answers SQLITE_BUSY, for up to `timeoutMs` in all. SQLite's busy handler covers the usual waits,
 * but with many processes opening one WAL file at once `BEGIN IMMEDIATE` can still fail with SQLITE_BUSY
 * at once (seen with 16 gateway processes sharing one store: tool pins withheld, records refused). A
 * transaction that failed was rolled back whole, so `attempt` must only be safe to run again from the start.
 */
export async function retryBusy<T>(attempt: () => T, timeoutMs: number): Promise<T> {
  const start = Date.now();
  for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
    try {
      return attempt();
    } catch (e) {
      if (!isSqliteBusy(e) || Date.now() - start + delay > timeoutMs) throw e;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
