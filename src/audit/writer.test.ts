// The writer thread: records are acknowledged only after their commit, the event loop stays free while the
// writer waits or commits, a dead writer fails closed and is replaced, and nothing keeps a process alive.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { isAuditError } from './errors.js';
import { type AuditLog, openAuditLog } from './log.js';
import { decisionEvent } from './testing.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'execlayer-writer-'));
}

/** The running writer thread of `log` (null when none), reached the way only a test should. */
function writerThread(log: AuditLog): Worker | null {
  return (log as unknown as { writer: { worker: Worker | null } }).writer.worker;
}

describe('audit writer thread', () => {
  it('acknowledges a record only after its commit, without blocking the event loop meanwhile', async () => {
    const dir = tempDir();
    const path = join(dir, 'audit.db');
    const log = await openAuditLog(`sqlite:${path}`, { sqlite: { busyTimeoutMs: 30_000 } });
    const blocker = new Database(path);
    try {
      await log.record(decisionEvent(0));
      // Another connection holds SQLite's write lock, on this very thread: a writer on this thread would wait
      // for it in a busy loop and never let it go.
      blocker.prepare('BEGIN IMMEDIATE').run();
      let settled = false;
      const pending = log.append(decisionEvent(1)).finally(() => {
        settled = true;
      });
      // A writer on this thread would sit in SQLite's busy handler for up to busyTimeoutMs (30 s) and no
      // timer would fire meanwhile; timers that keep firing on time show the wait happens elsewhere.
      let worstMs = 0;
      for (let i = 0; i < 20; i++) {
        const start = performance.now();
        await new Promise((r) => setTimeout(r, 10));
        worstMs = Math.max(worstMs, performance.now() - start);
      }
      assert.ok(
        worstMs < 2000,
        `a 10 ms timer took ${Math.round(worstMs)} ms while the writer waited for the lock`,
      );
      assert.equal(settled, false, 'not acknowledged while its transaction cannot commit');
      const rows = blocker.prepare('SELECT count(*) AS n FROM audit_records').get() as { n: number };
      assert.equal(rows.n, 1);
      blocker.prepare('COMMIT').run();
      const receipt = await pending;
      assert.equal(receipt.seq, 1);
      const after = blocker.prepare('SELECT hash FROM audit_records WHERE seq = 1').get() as { hash: Buffer };
      assert.equal(after.hash.toString('hex'), receipt.hash, 'the acknowledged record is in the database');
    } finally {
      blocker.close();
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a writer thread that dies fails its records closed; the next record starts a new one', async () => {
    const dir = tempDir();
    const log = await openAuditLog(`sqlite:${join(dir, 'audit.db')}`, { checkpointEvery: 5 });
    try {
      for (let i = 0; i < 12; i++) await log.record(decisionEvent(i));
      const first = writerThread(log);
      assert.ok(first !== null);
      const doomed = Array.from({ length: 200 }, (_, i) => log.append(decisionEvent(100 + i)));
      // Let the batch reach the writer, then kill it wherever it is.
      await new Promise((r) => setImmediate(r));
      await first.terminate();
      const results = await Promise.allSettled(doomed);
      const failed = results.filter((r) => r.status === 'rejected');
      for (const r of failed) {
        assert.ok(isAuditError(r.reason, 'audit_unavailable'), String(r.reason));
        assert.match(r.reason.message, /audit writer for `.*audit\.db` stopped/);
      }
      assert.ok(failed.length > 0, 'the writer was killed before it answered everything');
      const acked = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.seq] : []));
      // Later records go through a new writer and continue the chain without a gap.
      const next = await log.append(decisionEvent(999));
      assert.notEqual(writerThread(log), first);
      await log.checkpoint();
      const report = await log.verify();
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      assert.equal(next.seq, report.size - 1);
      const rows = await log.read(0, report.size);
      for (const seq of acked) assert.ok(rows[seq]?.event, `acknowledged record ${seq} is present`);
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a writer that cannot open the store rejects records until the store is back', async () => {
    const dir = tempDir();
    const path = join(dir, 'audit.db');
    const log = await openAuditLog(`sqlite:${path}`);
    try {
      await log.record(decisionEvent(0));
      renameSync(path, `${path}.away`);
      await writerThread(log)!.terminate();
      // A new writer cannot open a database that is gone, and never creates a new one in its place.
      await assert.rejects(log.record(decisionEvent(1)), (e) => {
        assert.ok(isAuditError(e, 'audit_unavailable'), String(e));
        assert.match(e.message, /audit\.db` does not exist/);
        return true;
      });
      await assert.rejects(log.record(decisionEvent(2)), (e) => isAuditError(e, 'audit_unavailable'));
      renameSync(`${path}.away`, path);
      let receipt: { seq: number } | null = null;
      for (let i = 0; i < 50 && receipt === null; i++) {
        try {
          receipt = await log.append(decisionEvent(3));
        } catch (e) {
          assert.ok(isAuditError(e, 'audit_unavailable'), String(e));
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      assert.equal(receipt?.seq, 1, 'the refused records left no trace');
      await log.checkpoint();
      assert.equal((await log.verify()).ok, true);
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a lazy record shares the transaction of the next record someone waits on, or goes within 20 ms', async () => {
    const dir = tempDir();
    const log = await openAuditLog(`sqlite:${join(dir, 'audit.db')}`);
    try {
      await log.record(decisionEvent(0));
      const before = log.stats().batches;
      let lazyDone = false;
      const lazy = log.record(decisionEvent(1), { lazy: true }).then(() => {
        lazyDone = true;
      });
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(lazyDone, false, 'a lazy record waits for company');
      await log.record(decisionEvent(2));
      await lazy;
      assert.equal(log.stats().batches - before, 1, 'both went in one transaction');
      const tail = await log.tail(2);
      assert.deepEqual(
        tail.map((r) => [r.seq, r.event?.type === 'decision' && r.event.decision.id]),
        [
          [1, decisionEvent(1).decision.id],
          [2, decisionEvent(2).decision.id],
        ],
        'in the order they were recorded',
      );
      const alone = Date.now();
      await log.record(decisionEvent(3), { lazy: true });
      assert.ok(Date.now() - alone < 1000, 'alone, it is committed after a short wait');
      let flushed = false;
      const late = log.record(decisionEvent(4), { lazy: true }).then(() => {
        flushed = true;
      });
      await log.flush();
      assert.equal(flushed, true, 'flush waits for lazy records too');
      await late;
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a process exits by itself after close, and without close once its records are durable', () => {
    const dir = tempDir();
    try {
      const logUrl = new URL('./log.js', import.meta.url).href;
      const testingUrl = new URL('./testing.js', import.meta.url).href;
      const script = (close: boolean) => `
        const { openAuditLog } = await import(${JSON.stringify(logUrl)});
        const { decisionEvent } = await import(${JSON.stringify(testingUrl)});
        const log = await openAuditLog(${JSON.stringify(`sqlite:${join(dir, close ? 'a.db' : 'b.db')}`)});
        await Promise.all(Array.from({ length: 100 }, (_, i) => log.record(decisionEvent(i))));
        ${close ? 'await log.close();' : ''}
        console.log('recorded');
      `;
      for (const close of [true, false]) {
        const r = spawnSync(
          process.execPath,
          ['--import', 'tsx', '--input-type=module', '--eval', script(close)],
          { encoding: 'utf8', timeout: 30_000 },
        );
        assert.equal(r.error, undefined, `close=${close}: the process did not exit by itself`);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout.trim(), 'recorded');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
