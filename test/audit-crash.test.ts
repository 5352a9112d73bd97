// kill -9 at a random moment while a child appends under load: the log must reopen, verify, and hold every
// record the child had been told was durable.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openAuditLog } from '../src/audit/log.js';
import { decisionEvent } from '../src/audit/testing.js';
import { tempPostgresDatabase } from '../src/testing/services.js';

const CHILD = join(import.meta.dirname, 'audit-child.ts');

/** Start the child; resolves with it once it printed `ready`, collecting `ack` lines into `acked`. */
function startChild(
  url: string,
  keyPath: string,
  agent: string,
  count: number,
  acked: Map<number, number>,
  startAt = 0,
) {
  const args = [CHILD, url, keyPath, agent, String(count), '64', String(startAt)];
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buf = '';
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const ready = new Promise<ChildProcess>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'ready') resolve(child);
        const m = /^ack (\d+) (\d+)$/.exec(line);
        if (m) acked.set(Number(m[1]), Number(m[2]));
        nl = buf.indexOf('\n');
      }
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before ready: ${stderr}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { ready, exited, stderr: () => stderr };
}

async function crashAndRecover(url: string, keyPath: string, rounds: number) {
  let expectedAtLeast = 0;
  for (let round = 0; round < rounds; round++) {
    const acked = new Map<number, number>();
    const c = startChild(url, keyPath, `agent-${round}`, 0, acked);
    const child = await c.ready;
    // Wait for its first acknowledged record (a loaded machine can be slow to start the writer), let it
    // write for a random while, then kill it wherever it is (mid-transaction, mid-fsync, mid-checkpoint).
    for (const start = Date.now(); acked.size === 0 && Date.now() - start < 30_000; ) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 50 + Math.floor(Math.random() * 600)));
    child.kill('SIGKILL');
    await c.exited;
    assert.ok(acked.size > 0, `round ${round}: the child acknowledged nothing (${c.stderr()})`);

    const log = await openAuditLog(url, { keyPath, checkpointIntervalMs: 60_000 });
    try {
      const report = await log.verify();
      assert.equal(report.ok, true, `round ${round}: ${JSON.stringify(report.problems)}`);
      assert.ok(report.size >= expectedAtLeast + acked.size);
      const rows = await log.read(0, report.size);
      for (const [seq, i] of acked) {
        const ev = rows[seq]?.event;
        assert.ok(ev?.type === 'decision', `round ${round}: acknowledged record ${seq} is missing`);
        assert.equal(ev.action.agent, `agent-${round}`);
        assert.equal(ev.decision.id, decisionEvent(i).decision.id);
      }
      // The chain continues from the last committed record.
      const r = await log.append(decisionEvent(-1, { agent: 'after-crash' }));
      assert.equal(r.seq, report.size);
      await log.checkpoint();
      const after = await log.verify();
      assert.equal(after.ok, true, JSON.stringify(after.problems));
      expectedAtLeast = after.size;
    } finally {
      await log.close();
    }
  }
}

describe('audit log survives kill -9', () => {
  it('sqlite: acknowledged records are all present and the log verifies after each crash', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-crash-'));
    try {
      await crashAndRecover(`sqlite:${join(dir, 'audit.db')}`, join(dir, 'audit.db.key'), 3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('postgres: acknowledged records are all present and the log verifies after each crash', async (t) => {
    const url = await tempPostgresDatabase(t);
    if (!url) return;
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-crash-pg-'));
    try {
      await crashAndRecover(url, join(dir, 'audit.key'), 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('two processes on one sqlite file', () => {
  it('interleave into one gapless, verifiable chain', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-two-'));
    const url = `sqlite:${join(dir, 'audit.db')}`;
    const keyPath = join(dir, 'audit.db.key');
    try {
      const ackA = new Map<number, number>();
      const ackB = new Map<number, number>();
      // Both start writing at the same moment, well after both have loaded.
      const startAt = Date.now() + 4000;
      const a = startChild(url, keyPath, 'proc-a', 1500, ackA, startAt);
      const b = startChild(url, keyPath, 'proc-b', 1500, ackB, startAt);
      await Promise.all([a.ready, b.ready]);
      assert.deepEqual(await Promise.all([a.exited, b.exited]), [0, 0], `${a.stderr()} ${b.stderr()}`);
      assert.equal(ackA.size, 1500);
      assert.equal(ackB.size, 1500);
      const all = [...ackA.keys(), ...ackB.keys()].sort((x, y) => x - y);
      assert.deepEqual(
        all,
        Array.from({ length: 3000 }, (_, i) => i),
        'one total order, no seq given twice, no gap',
      );
      const log = await openAuditLog(url, { keyPath });
      try {
        const report = await log.verify();
        assert.equal(report.ok, true, JSON.stringify(report.problems));
        assert.equal(report.size, 3000);
        assert.equal(report.unsignedTail, 0);
        assert.equal((await log.query({ agent: 'proc-a' })).length, 1500);
        // The processes really interleaved: the writer changes several times along the chain.
        let switches = 0;
        for (let s = 1; s < 3000; s++) if (ackA.has(s) !== ackA.has(s - 1)) switches++;
        assert.ok(switches >= 2, `writers switched ${switches} times`);
      } finally {
        await log.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
