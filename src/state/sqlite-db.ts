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

/** Opens (creating if needed) the SQLite file at `path` in WAL mode. Throws when it cannot. */
export function openSqlite(path: string, options: SqliteOpenOptions = {}): Database.Database {
  const db = new Database(path, { timeout: options.busyTimeoutMs ?? 2000 });
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
