// Fault injection against real stores: unreachable and read-only storage, a full disk, a damaged database
// file, PostgreSQL refusing connections and a backend killed mid-transaction. In each case `record` must
// reject with `audit_unavailable` (callers deny) or opening must fail clearly — and the log must recover.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { isAuditError } from '../src/audit/errors.js';
import { openAuditLog } from '../src/audit/log.js';
import { decisionEvent } from '../src/audit/testing.js';
import { PG_ADMIN_URL, pgAvailable, uniqueName } from '../src/testing/services.js';

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'execlayer-fault-'));
}

/** Mount a small tmpfs at a new directory, or skip (outside CI) when this machine does not allow it. */
function tmpfs(t: TestContext, size: string): string | null {
  const dir = tempDir();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
    return dir;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    if (process.env.CI === 'true') throw e;
    t.skip(`cannot mount a tmpfs here (needs root): ${(e as Error).message.split('\n')[0]}`);
    return null;
  }
}

function unmount(dir: string): void {
  execFileSync('umount', [dir]);
  rmSync(dir, { recursive: true, force: true });
}

describe('sqlite faults', () => {
  it('a damaged database file is refused at start, named, and left untouched', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'audit.db');
      const log = await openAuditLog(`sqlite:${path}`);
      for (let i = 0; i < 3000; i++) void log.record(decisionEvent(i));
      await log.flush();
      await log.close();
      const size = readFileSync(path).length;
      assert.ok(size > 200_000, `database is ${size} bytes`);
      // Overwrite one whole page in the middle of the file with random bytes.
      const page = 4096;
      const offset = Math.floor(size / 2 / page) * page;
      const fd = openSync(path, 'r+');
      writeSync(fd, randomBytes(page), 0, page, offset);
      closeSync(fd);
      const before = sha(path);
      await assert.rejects(openAuditLog(`sqlite:${path}`), (e) => {
        assert.ok(isAuditError(e, 'audit_corrupt'), String(e));
        assert.match(e.message, /audit database `.*audit\.db` is corrupt/);
        assert.match(e.message, /left untouched/);
        return true;
      });
      assert.equal(sha(path), before, 'the damaged file was not modified');
      assert.ok(!existsSync(`${path}-wal`) || readFileSync(`${path}-wal`).length === 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a damaged header, a foreign database, an emptied and a deleted log are refused, never re-created', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'audit.db');
      const log = await openAuditLog(`sqlite:${path}`);
      await log.record(decisionEvent(0));
      await log.close();
      const bytes = readFileSync(path);
      bytes.write('this is not sqlite', 0);
      writeFileSync(path, bytes);
      await assert.rejects(openAuditLog(`sqlite:${path}`), (e) => isAuditError(e, 'audit_corrupt'));
      assert.equal(readFileSync(path).subarray(0, 18).toString(), 'this is not sqlite');

      const foreign = join(dir, 'other.db');
      const db = new Database(foreign);
      db.exec('CREATE TABLE t (x)');
      db.close();
      await assert.rejects(openAuditLog(`sqlite:${foreign}`), /is not an execlayer audit database/);

      writeFileSync(path, '');
      await assert.rejects(openAuditLog(`sqlite:${path}`), /missing or empty but its signing key/);
      assert.equal(readFileSync(path).length, 0, 'the emptied log was not re-created');

      rmSync(path);
      await assert.rejects(openAuditLog(`sqlite:${path}`), /missing or empty but its signing key/);
      assert.ok(!existsSync(path), 'no new database in place of the deleted one');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an unwritable location rejects with audit_unavailable; the log opens once it is writable', async (t) => {
    const mnt = tmpfs(t, '1m');
    if (mnt === null) return;
    try {
      execFileSync('mount', ['-o', 'remount,ro', mnt]);
      const url = `sqlite:${join(mnt, 'audit.db')}`;
      await assert.rejects(openAuditLog(url, { keyPath: join(mnt, 'k') }), (e) => {
        assert.ok(isAuditError(e, 'audit_unavailable') || isAuditError(e, 'audit_key_error'), String(e));
        assert.match(e.message, /audit\.db|k`/);
        return true;
      });
      assert.ok(!existsSync(join(mnt, 'audit.db')));
      execFileSync('mount', ['-o', 'remount,rw', mnt]);
      const log = await openAuditLog(url, { keyPath: join(mnt, 'k') });
      await log.record(decisionEvent(0));
      assert.equal((await log.verify()).size, 1);
      await log.close();
    } finally {
      unmount(mnt);
    }
  });

  it('a full disk rejects records with audit_unavailable; the log recovers when space returns', async (t) => {
    const mnt = tmpfs(t, '400k');
    if (mnt === null) return;
    try {
      const url = `sqlite:${join(mnt, 'audit.db')}`;
      const log = await openAuditLog(url, { keyPath: join(mnt, 'k'), checkpointEvery: 20 });
      await log.record(decisionEvent(0));
      // Fill the disk, then give back a little room so some records fit before it is full again.
      const filler = join(mnt, 'filler');
      const fd = openSync(filler, 'w');
      let written = 0;
      try {
        for (;;) written += writeSync(fd, Buffer.alloc(4096));
      } catch (e) {
        assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
      }
      ftruncateSync(fd, Math.max(0, written - 48 * 1024));
      closeSync(fd);
      const acked: number[] = [];
      let failure: unknown = null;
      for (let i = 1; i < 5000 && failure === null; i++) {
        try {
          acked.push((await log.append(decisionEvent(i))).seq);
        } catch (e) {
          failure = e;
        }
      }
      assert.ok(failure !== null, 'the disk never filled');
      assert.ok(acked.length > 0, 'some records fitted before the disk was full');
      assert.ok(isAuditError(failure, 'audit_unavailable'), String(failure));
      assert.match((failure as Error).message, /full|space/i);
      // Still failing while the disk is full: every caller is told, nobody is silently dropped.
      await assert.rejects(log.record(decisionEvent(9999)), (e) => isAuditError(e, 'audit_unavailable'));
      rmSync(filler);
      const after = await log.append(decisionEvent(10_000));
      assert.equal(after.seq, acked.length + 1);
      await log.checkpoint();
      const report = await log.verify();
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      const rows = await log.read(0, report.size);
      for (const seq of acked) assert.ok(rows[seq]?.event, `acknowledged record ${seq} is present`);
      await log.close();
    } finally {
      unmount(mnt);
    }
  });

  it('records after close reject with audit_unavailable', async () => {
    const dir = tempDir();
    try {
      const log = await openAuditLog(`sqlite:${join(dir, 'a.db')}`);
      await log.close();
      await assert.rejects(log.record(decisionEvent(0)), (e) => isAuditError(e, 'audit_unavailable'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('postgres faults', () => {
  it('connection refused rejects with audit_unavailable and a clear message', async () => {
    const dir = tempDir();
    try {
      await assert.rejects(
        openAuditLog('postgres://postgres@127.0.0.1:1/nowhere', { keyPath: join(dir, 'k') }),
        (e) => {
          assert.ok(isAuditError(e, 'audit_unavailable'), String(e));
          assert.match(
            e.message,
            /cannot open audit store `postgres:\/\/postgres@127\.0\.0\.1:1\/nowhere`: .*ECONNREFUSED/,
          );
          return true;
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a backend killed mid-transaction rejects the batch; the log recovers and verifies', async (t) => {
    if (!(await pgAvailable(t))) return;
    const name = uniqueName('execlayer_test');
    const admin = new pg.Client(PG_ADMIN_URL);
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const u = new URL(PG_ADMIN_URL);
    u.pathname = `/${name}`;
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    const log = await openAuditLog(u.toString(), { keyPath: join(dir, 'k') });
    const blocker = new pg.Client(u.toString());
    try {
      await log.record(decisionEvent(0));
      // Hold the head lock so the store's next transaction waits inside the server.
      await blocker.connect();
      await blocker.query('BEGIN');
      await blocker.query('SELECT size FROM audit_head WHERE id = 1 FOR UPDATE');
      const pending = log.record(decisionEvent(1));
      let pid: number | undefined;
      for (let i = 0; i < 100 && pid === undefined; i++) {
        const r = await admin.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'execlayer-audit' AND wait_event_type = 'Lock'`,
          [name],
        );
        pid = r.rows[0]?.pid;
        if (pid === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(pid !== undefined, 'the store never waited on the lock');
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await assert.rejects(pending, (e) => {
        assert.ok(isAuditError(e, 'audit_unavailable'), String(e));
        return true;
      });
      await blocker.query('ROLLBACK');
      // Idle connections killed too: the pool reconnects.
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'execlayer-audit'`,
        [name],
      );
      await new Promise((r) => setTimeout(r, 100));
      const r = await log.append(decisionEvent(2));
      assert.equal(r.seq, 1, 'the rejected record was not written; the chain continues without a gap');
      await log.checkpoint();
      const report = await log.verify();
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      assert.equal(report.size, 2);
    } finally {
      await blocker.end().catch(() => undefined);
      await log.close();
      rmSync(dir, { recursive: true, force: true });
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});
