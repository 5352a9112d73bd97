import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { isSqliteBusy, openSqlite, retryBusy, retryBusySync } from './sqlite-db.js';

const require = createRequire(import.meta.url);

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

test('retryBusySync sleeps between attempts until another thread releases the lock', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'execlayer-busy-')), 's.db');
  openSqlite(file, { schema: 'CREATE TABLE t (x INTEGER)' }).close();
  // The lock is held by another thread, since this one blocks while it waits.
  const holder = new Worker(
    `const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
     const { parentPort, workerData } = require('node:worker_threads');
     const db = new Database(workerData);
     db.exec('BEGIN IMMEDIATE');
     parentPort.postMessage('held');
     setTimeout(() => { db.exec('COMMIT'); db.close(); }, 80);`,
    { eval: true, workerData: file },
  );
  await once(holder, 'message');
  const waiter = new Database(file, { timeout: 0 });
  const insert = waiter.prepare('INSERT INTO t VALUES (1)');
  let attempts = 0;
  const started = Date.now();
  retryBusySync(() => {
    attempts++;
    insert.run();
  }, 2000);
  assert.ok(attempts > 1, 'it was refused first, then retried');
  assert.ok(Date.now() - started >= 50);
  assert.equal((waiter.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 1);
  waiter.close();
  await holder.terminate();
  const other = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
  attempts = 0;
  assert.throws(
    () =>
      retryBusySync(() => {
        attempts++;
        throw other;
      }, 1000),
    (e: unknown) => e === other,
  );
  assert.equal(attempts, 1, 'a non-busy failure is reported at once');
});
