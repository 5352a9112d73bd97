/**
 * Opens a better-sqlite3 database the way every ExecLayer SQLite store wants it: WAL, a bounded busy
 * timeout (a locked file becomes a store error, never a hang), and the file path taken from a store URL.
 */
import Database from 'better-sqlite3';

/** Options for `openSqlite`. */
export interface SqliteOpenOptions {
  /** How long a write waits for another process's lock before failing. Default 2000 ms. */
  busyTimeoutMs?: number;
  /** Statements that create the store's tables; run again from the start if SQLite answers busy. */
  schema?: string;
  /**
   * `FULL` fsyncs every commit, for state that must survive an OS crash too (tool pins). Default `NORMAL`:
   * in WAL mode a process crash loses nothing; only an OS crash can lose the last commits.
   */
  synchronous?: 'NORMAL' | 'FULL';
}

/** How long a write waits for another process's lock unless told otherwise. */
export const DEFAULT_BUSY_TIMEOUT_MS = 2000;

/**
 * Opens (creating if needed) the SQLite file at `path` in WAL mode and creates the store's tables. Several
 * processes may open one new file at once: a busy answer is waited out for up to the busy timeout. Throws
 * when it cannot.
 */
export function openSqlite(path: string, options: SqliteOpenOptions = {}): Database.Database {
  const timeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const db = new Database(path, { timeout: timeoutMs });
  try {
    retryBusySync(() => {
      if (path !== ':memory:') db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${options.synchronous ?? 'NORMAL'}`);
      if (options.schema !== undefined) db.exec(options.schema);
    }, timeoutMs);
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
    const r = tryOnce(attempt, start, delay, timeoutMs);
    if (r !== undefined) return r.value;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** One attempt: its value, or undefined when SQLite was busy and there is time for another after `delay`. */
function tryOnce<T>(
  attempt: () => T,
  start: number,
  delay: number,
  timeoutMs: number,
): { value: T } | undefined {
  try {
    return { value: attempt() };
  } catch (e) {
    if (!isSqliteBusy(e) || Date.now() - start + delay > timeoutMs) throw e;
    return undefined;
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * `retryBusy` for start-up, where there is no event loop worth keeping free yet (opening a file, creating
 * its tables): the thread sleeps between attempts. A store whose tables could not be created because another
 * process was creating them at that instant would otherwise refuse everything until its next reopen.
 */
export function retryBusySync<T>(attempt: () => T, timeoutMs: number): T {
  const start = Date.now();
  for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
    const r = tryOnce(attempt, start, delay, timeoutMs);
    if (r !== undefined) return r.value;
    Atomics.wait(pause, 0, 0, delay);
  }
}
