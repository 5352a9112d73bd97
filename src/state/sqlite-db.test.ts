import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { isSqliteBusy, openSqlite, retryBusy } from './sqlite-db.js';

test('retryBusy waits out another connection that holds the write lock', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'execlayer-busy-')), 's.db');
  const holder = openSqlite(file);
  holder.exec('CREATE TABLE t (x INTEGER)');
  // No busy handler on this connection: SQLite answers SQLITE_BUSY at once, as it can under contention.
  const waiter = new Database(file, { timeout: 0 });
  holder.exec('BEGIN IMMEDIATE');
  const insert = waiter.prepare('INSERT INTO t VALUES (1)');
  assert.throws(
    () => insert.run(),
    (e: unknown) => isSqliteBusy(e),
    'the lock is really held',
  );
  setTimeout(() => holder.exec('COMMIT'), 60);
  let attempts = 0;
  const started = Date.now();
  await retryBusy(() => {
    attempts++;
    insert.run();
  }, 2000);
  assert.ok(attempts > 1, 'it was refused first, then retried');
  assert.ok(Date.now() - started >= 50);
  assert.equal((waiter.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 1);
  holder.close();
  waiter.close();
});

test('retryBusy gives up after its timeout with the busy error, and never retries other errors', async () => {
  let attempts = 0;
  const busy = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
  await assert.rejects(
    retryBusy(() => {
      attempts++;
      throw busy;
    }, 40),
    (e: unknown) => e === busy,
  );
  assert.ok(attempts > 1);
  attempts = 0;
  const other = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
  await assert.rejects(
    retryBusy(() => {
      attempts++;
      throw other;
    }, 1000),
    (e: unknown) => e === other,
  );
  assert.equal(attempts, 1, 'a non-busy failure is reported at once');
});
