/** What every ExecLayer PostgreSQL store needs around a transaction. */
import type pg from 'pg';

/**
 * Runs `fn` inside BEGIN … COMMIT on a connection from `pool`; rolls back and rethrows when it fails. A
 * connection whose rollback failed too is unusable and is dropped from the pool instead of returned to it.
 */
export async function pgTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken = false;
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    try {
      await c.query('ROLLBACK');
    } catch {
      broken = true;
    }
    throw err;
  } finally {
    c.release(broken);
  }
}
