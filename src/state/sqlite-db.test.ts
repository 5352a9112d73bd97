import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { openSqlite, retryBusy, retryBusySync } from './sqlite-db.js';

const require = createRequire(import.meta.url);

/**
 * Inserts into `t` through `retry` from a connection without a busy handler (SQLite answers SQLITE_BUSY at
 * once, as it can under contention) while the write lock is held for ~60 ms, and checks it waited.
 */
async function insertsAfterWaiting(file: string, retry: (attempt: () => void) => unknown): Promise<void> {
  const waiter = new Database(file, { timeout: 0 });
  const insert = waiter.prepare('INSERT INTO t VALUES (1)');
  let attempts = 0;
  const started = Date.now();
  await retry(() => {
    attempts++;
    insert.run();
  });
  assert.ok(attempts > 1, 'it was refused first, then retried');
  assert.ok(Date.now() - started >= 50);
  assert.equal((waiter.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 1);
  waiter.close();
}

test('retryBusy waits out another connection that holds the write lock', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'execlayer-busy-')), 's.db');
  const holder = openSqlite(file, { schema: 'CREATE TABLE t (x INTEGER)' });
  holder.exec('BEGIN IMMEDIATE');
  setTimeout(() => holder.exec('COMMIT'), 60);
  await insertsAfterWaiting(file, (attempt) => retryBusy(attempt, 2000));
  holder.close();
});

// The synchronous form, behind a promise so one test serves both.
const retries: Record<string, (attempt: () => unknown, timeoutMs: number) => Promise<unknown>> = {
  retryBusy,
  retryBusySync: async (attempt, timeoutMs) => retryBusySync(attempt, timeoutMs),
};

for (const [name, retry] of Object.entries(retries)) {
  test(`${name} gives up after its timeout with the busy error, and never retries other errors`, async () => {
    let attempts = 0;
    const busy = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    await assert.rejects(
      retry(() => {
        attempts++;
        throw busy;
      }, 40),
      (e: unknown) => e === busy,
    );
    assert.ok(attempts > 1);
    attempts = 0;
    const other = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
    await assert.rejects(
      retry(() => {
        attempts++;
        throw other;
      }, 1000),
      (e: unknown) => e === other,
    );
    assert.equal(attempts, 1, 'a non-busy failure is reported at once');
  });
}

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
     setTimeout(() => { db.exec('COMMIT'); db.close(); }, 60);`,
    { eval: true, workerData: file },
  );
  await once(holder, 'message');
  await insertsAfterWaiting(file, (attempt) => retryBusySync(attempt, 2000));
  await holder.terminate();
});
