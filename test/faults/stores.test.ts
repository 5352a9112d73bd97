// Store outages with the real parts: real PostgreSQL and Redis, reached through a TCP proxy the test
// controls (src/testing/tcp-proxy.ts). `freeze` stops every byte but keeps the sockets open — the case that
// used to hang every call for ~20 s; `cut` resets every connection and refuses new ones. Each test asserts
// the deny came within its bound and named the store, that the guarded function never ran, and that
// service came back on its own within seconds of the link returning. Measured times are printed as
// `# measure …` lines (docs/benchmarks.md quotes them).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { postgresApprovalStore } from '../../src/approvals/postgres.js';
import { openAuditLog } from '../../src/audit/log.js';
import { decisionEvent } from '../../src/audit/testing.js';
import { PostgresToolPinStore } from '../../src/enforce/mcp/pins.js';
import { DeniedError } from '../../src/runtime/errors.js';
import { createExecLayer, type ExecLayer } from '../../src/runtime/exec-layer.js';
import {
  PG_ADMIN_URL,
  REDIS_URL,
  redisAvailable,
  tempPostgresDatabase,
  uniqueName,
} from '../../src/testing/services.js';
import { proxyFor } from '../../src/testing/tcp-proxy.js';
import type { StoreEvent } from '../../src/types.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Slack over a deadline for timers, the writer thread and a loaded machine. */
const SLACK_MS = 700;
/** How soon after the link returns service must be back. */
const RESUME_BOUND_MS = 5000;

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  // A store left holding a resource after its test (a writer thread whose link was cut mid-append, a
  // reconnecting client) must not keep this file's process alive once every test has reported: say what
  // it was, then end the process, so a suite run always finishes.
  setTimeout(() => {
    const left = process.getActiveResourcesInfo().filter((r) => r !== 'Timeout' && r !== 'TTYWrap');
    process.stderr.write(
      `# resources still held after the store fault tests: ${left.join(', ') || 'none'}\n`,
    );
    process.exit(process.exitCode ?? 0);
  }, 2000).unref();
});
function tempKey(): string {
  const d = mkdtempSync(join(tmpdir(), 'execlayer-faults-'));
  dirs.push(d);
  return join(d, 'audit.key');
}

function measure(what: string, ms: number): void {
  console.log(`# measure ${what}: ${Math.round(ms)} ms`);
}

/** A guarded function that counts how often it really ran. */
function guarded(layer: ExecLayer, agent: string, tool: string) {
  const ran = { n: 0 };
  const fn = layer.guard(
    async () => {
      ran.n++;
      return 'ok';
    },
    { agent, tool },
  );
  return { ran, call: () => fn({}) };
}

/** Calls `call` and returns the DeniedError it must throw, with how long the deny took. */
async function expectDenied(call: () => Promise<unknown>): Promise<{ err: DeniedError; ms: number }> {
  const t0 = performance.now();
  try {
    await call();
  } catch (e) {
    const ms = performance.now() - t0;
    assert.ok(e instanceof DeniedError, `expected a deny, got ${String(e)}`);
    return { err: e, ms };
  }
  assert.fail('the call was allowed while its store was unreachable');
}

/** Time until `call` succeeds, trying every 100 ms; fails after `boundMs`. */
async function timeToResume(call: () => Promise<unknown>, boundMs = RESUME_BOUND_MS): Promise<number> {
  const t0 = performance.now();
  let last: unknown;
  while (performance.now() - t0 < boundMs) {
    try {
      await call();
      return performance.now() - t0;
    } catch (e) {
      last = e;
      await sleep(100);
    }
  }
  assert.fail(`service did not resume within ${boundMs} ms: ${String(last)}`);
}

/** After a recovery, a steady run of calls all succeed (no stale connection denies a few seconds later). */
async function steady(call: () => Promise<unknown>, n = 20, gapMs = 100): Promise<void> {
  for (let i = 0; i < n; i++) {
    await call();
    await sleep(gapMs);
  }
}

async function adminQuery(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client(PG_ADMIN_URL);
  await c.connect();
  try {
    return await c.query(sql, params);
  } finally {
    await c.end();
  }
}

function dbName(url: string): string {
  return new URL(url).pathname.slice(1);
}

describe('audit trail on PostgreSQL behind a faulty link', () => {
  test('freeze: an allowed call is denied within the deadline, naming the store; unfreeze: it resumes; verify passes', async (t) => {
    const pgUrl = await tempPostgresDatabase(t);
    if (!pgUrl) return;
    const proxy = await proxyFor(pgUrl);
    t.after(() => proxy.close());
    const agent = uniqueName('audit');
    const policy = { version: 1, agents: { [agent]: { rules: [{ id: 'run', allow: 'job.run' }] } } };
    const auditKey = tempKey();
    const layer = await createExecLayer({
      policy,
      store: { audit: proxy.url(pgUrl), limits: 'memory:', approvals: 'memory:', state: 'memory:', auditKey },
    });
    const ok: string[] = [];
    const denied: string[] = [];
    try {
      const { ran, call } = guarded(layer, agent, 'job.run');
      const tracked = async () => {
        const before = ran.n;
        await call();
        assert.equal(ran.n, before + 1);
      };
      for (let i = 0; i < 3; i++) await tracked();

      proxy.freeze();
      const before = ran.n;
      const { err, ms } = await expectDenied(call);
      measure('audit postgres freeze → deny (default 2000 ms deadline)', ms);
      assert.match(err.decision.reason, /audit store \(postgres\) did not answer within 2000 ms/);
      assert.equal(err.decision.code, 'store_error');
      assert.ok(ms >= 1900 && ms < 2000 + SLACK_MS, `denied after ${Math.round(ms)} ms`);
      assert.equal(ran.n, before, 'the guarded function never ran');
      denied.push(err.decision.id);

      // Two calls at once while frozen: each is answered within its own bound, not one after the other.
      const both = await Promise.all([expectDenied(call), expectDenied(call)]);
      for (const b of both) {
        assert.ok(b.ms < 2000 + SLACK_MS, `queued call denied after ${Math.round(b.ms)} ms`);
        denied.push(b.err.decision.id);
      }
      assert.equal(ran.n, before);

      proxy.pass();
      const resumed = await timeToResume(call);
      measure('audit postgres unfreeze → first allowed call', resumed);
      await steady(tracked, 10);

      proxy.cut();
      const cut = await expectDenied(call);
      measure('audit postgres cut → deny', cut.ms);
      assert.ok(cut.ms < 2000 + SLACK_MS);
      assert.match(cut.err.decision.reason, /audit/);
      denied.push(cut.err.decision.id);
      proxy.pass();
      measure('audit postgres restore after cut → first allowed call', await timeToResume(call));
      await steady(tracked, 10);
      assert.equal(ran.n, before + 1 + 10 + 1 + 10, 'every allowed call ran once, no denied one ran');
      await layer.flush();
    } finally {
      await layer.close();
    }

    // Every acknowledged record is there, the log verifies, and no denied call is recorded as allowed.
    const log = await openAuditLog(pgUrl, { keyPath: auditKey });
    try {
      const report = await log.verify();
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      const decisions = (await log.query({ type: 'decision' })).map((r) => r.event);
      for (const e of decisions)
        if (e?.type === 'decision' && e.decision.effect === 'allow') ok.push(e.decision.id);
      assert.equal(ok.length, 3 + 1 + 10 + 1 + 10, 'one allow record per call that ran');
      // A denied call's own deny record is written lazily and is lost while the store is down; what must
      // never be there is an allow for it — unless a late-commit note says its append landed after the deny.
      const notes = (await log.query({ type: 'store' })).map((r) => r.event as StoreEvent);
      const noted = (seq: number) => notes.some((n) => seq >= n.seq && seq < n.seq + n.count);
      for (const r of await log.query({ type: 'decision', effect: 'allow' })) {
        const e = r.event;
        if (e?.type === 'decision' && denied.includes(e.decision.id)) {
          assert.ok(noted(r.seq), `denied call ${e.decision.id} is recorded as allowed without a note`);
        }
      }
    } finally {
      await log.close();
    }
  });

  test('stranded connections (sockets open, never another byte): one deny within the deadline, then fresh connections', async (t) => {
    const pgUrl = await tempPostgresDatabase(t);
    if (!pgUrl) return;
    const proxy = await proxyFor(pgUrl);
    t.after(() => proxy.close());
    const agent = uniqueName('strand');
    const layer = await createExecLayer({
      policy: { version: 1, agents: { [agent]: { rules: [{ id: 'run', allow: 'job.run' }] } } },
      store: {
        audit: proxy.url(pgUrl),
        limits: 'memory:',
        approvals: 'memory:',
        state: 'memory:',
        auditKey: tempKey(),
        timeoutMs: 1000,
      },
    });
    t.after(() => layer.close());
    const { ran, call } = guarded(layer, agent, 'job.run');
    // Several pooled connections, all of which the link then forgets.
    await Promise.all([call(), call(), call(), call()]);
    proxy.strand();
    const { err, ms } = await expectDenied(call);
    measure('audit postgres stranded connection → deny (store.timeoutMs 1000)', ms);
    assert.match(err.decision.reason, /audit store \(postgres\) did not answer within 1000 ms/);
    assert.ok(ms < 1000 + SLACK_MS);
    const n = ran.n;
    measure('audit postgres stranded → first allowed call on a fresh connection', await timeToResume(call));
    await steady(call, 10);
    assert.equal(ran.n, n + 11);
  });

  test('PostgreSQL restart: every pooled connection killed, the next append succeeds at once', async (t) => {
    const pgUrl = await tempPostgresDatabase(t);
    if (!pgUrl) return;
    const log = await openAuditLog(pgUrl, { keyPath: tempKey() });
    try {
      for (let round = 0; round < 5; round++) {
        // Warm every pooled connection: the writer's and the reader's.
        await Promise.all([log.append(decisionEvent(round * 3)), log.tail(1)]);
        const killed = await adminQuery(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [dbName(pgUrl)],
        );
        assert.ok(killed.rowCount !== null && killed.rowCount >= 1, 'connections were killed');
        // No pause: the pool has not necessarily noticed yet — exactly the stale-connection case.
        const r = await log.append(decisionEvent(round * 3 + 1));
        assert.equal(r.seq, round * 2 + 1);
        assert.equal((await log.tail(1))[0]?.seq, r.seq, 'reads recover too');
      }
      const report = await log.verify();
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      assert.equal(report.size, 10);
    } finally {
      await log.close();
    }
  });

  test('a COMMIT that lands after its deadline: the caller was refused, and the log says so and verifies', async (t) => {
    const pgUrl = await tempPostgresDatabase(t);
    if (!pgUrl) return;
    const proxy = await proxyFor(pgUrl);
    t.after(() => proxy.close());
    const log = await openAuditLog(proxy.url(pgUrl), { keyPath: tempKey() });
    const db = new pg.Client(pgUrl);
    await db.connect();
    try {
      const first = await log.append(decisionEvent(0));
      // Make COMMIT itself slow on the server (a deferred trigger that sleeps), so the link can be frozen
      // while the commit runs: the server commits, its answer never arrives.
      await db.query(`CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(0.8); RETURN NULL; END $$`);
      await db.query(`CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON audit_records
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`);
      const t0 = performance.now();
      const pending = log.append(decisionEvent(1));
      let committing = false;
      for (let i = 0; i < 200 && !committing; i++) {
        const r = await db.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND query = 'COMMIT' AND state = 'active'`,
          [dbName(pgUrl)],
        );
        committing = (r.rowCount ?? 0) > 0;
        if (!committing) await sleep(10);
      }
      assert.ok(committing, 'the append never reached COMMIT');
      proxy.freeze();
      await assert.rejects(pending, (e: Error) => {
        assert.match(e.message, /audit store \(postgres\) did not answer within 2000 ms/);
        return true;
      });
      const ms = performance.now() - t0;
      assert.ok(ms < 2000 + SLACK_MS, `refused after ${Math.round(ms)} ms`);
      await db.query('DROP TRIGGER slow_commit ON audit_records');
      const landed = await db.query<{ n: string }>('SELECT count(*) AS n FROM audit_records WHERE seq = 1');
      assert.equal(
        landed.rows[0]?.n,
        '1',
        'the refused append did commit on the server (the case under test)',
      );

      proxy.pass();
      await timeToResume(() => log.append(decisionEvent(2)));
      const records = await log.read(0, 10);
      assert.deepEqual(
        records.map((r) => r.event?.type),
        ['decision', 'decision', 'store', 'decision'],
        'the late record, the note about it, then the next append',
      );
      const note = records[2]!.event as StoreEvent;
      assert.equal(note.status, 'late_commit');
      assert.equal(note.seq, first.seq + 1);
      assert.equal(note.count, 1);
      assert.equal(note.hash, records[1]!.hash);
      assert.match(note.reason, /callers were told they were not recorded/);
      // Told once: later appends do not repeat it.
      await log.append(decisionEvent(3));
      assert.equal((await log.query({ type: 'store' })).length, 1);
      await log.checkpoint();
      const report = await log.verify();
      assert.equal(report.ok, true, JSON.stringify(report.problems));
    } finally {
      await db.end();
      await log.close();
    }
  });

  test('an append refused before its COMMIT was sent leaves no record and no note', async (t) => {
    const pgUrl = await tempPostgresDatabase(t);
    if (!pgUrl) return;
    const proxy = await proxyFor(pgUrl);
    t.after(() => proxy.close());
    const log = await openAuditLog(proxy.url(pgUrl), { keyPath: tempKey(), postgres: { timeoutMs: 800 } });
    try {
      await log.append(decisionEvent(0));
      proxy.freeze();
      const t0 = performance.now();
      await assert.rejects(
        log.append(decisionEvent(1)),
        /audit store \(postgres\) did not answer within 800 ms/,
      );
      const ms = performance.now() - t0;
      measure('audit postgres freeze → refused append (timeoutMs 800)', ms);
      assert.ok(ms >= 750 && ms < 800 + SLACK_MS, `refused after ${Math.round(ms)} ms`);
      proxy.pass();
      await timeToResume(() => log.append(decisionEvent(2)));
      const records = await log.read(0, 10);
      assert.deepEqual(
        records.map((r) => (r.event?.type === 'decision' ? r.event.decision.id : r.event?.type)),
        [decisionEvent(0).decision.id, decisionEvent(2).decision.id],
      );
      assert.equal((await log.verify()).ok, true);
    } finally {
      await log.close();
    }
  });
});

describe('limits and the stop switch on Redis behind a faulty link', () => {
  async function redisLayer(t: { after(fn: () => Promise<void> | void): void }, which: 'limits' | 'state') {
    const proxy = await proxyFor(REDIS_URL);
    t.after(() => proxy.close());
    const agent = uniqueName(which);
    t.after(async () => {
      const r = new Redis(REDIS_URL);
      const keys = await r.keys(`*${agent}*`);
      if (keys.length > 0) await r.del(...keys);
      await r.hdel('execlayer:suspended', agent);
      r.disconnect();
    });
    const rule =
      which === 'limits'
        ? { id: 'run', allow: 'job.run', limit: { calls: 10_000, per: 'hour' } }
        : { id: 'run', allow: 'job.run' };
    const layer = await createExecLayer({
      policy: { version: 1, agents: { [agent]: { rules: [rule] } } },
      store: {
        audit: 'memory:',
        approvals: 'memory:',
        limits: which === 'limits' ? proxy.url(REDIS_URL) : 'memory:',
        state: which === 'state' ? proxy.url(REDIS_URL) : 'memory:',
      },
    });
    t.after(() => layer.close());
    return { proxy, agent, layer, ...guarded(layer, agent, 'job.run') };
  }

  for (const which of ['limits', 'state'] as const) {
    const store = which === 'limits' ? 'limit store' : 'agent state store';
    test(`${which}: freeze → deny within 500 ms naming redis; unfreeze and cut/restore → allowed again, and stays so`, async (t) => {
      if (!(await redisAvailable(t))) return;
      const { proxy, ran, call } = await redisLayer(t, which);
      await call();
      assert.equal(ran.n, 1);

      proxy.freeze();
      const { err, ms } = await expectDenied(call);
      measure(`redis ${which} freeze → deny (default 500 ms deadline)`, ms);
      assert.ok(ms >= 450 && ms < 500 + SLACK_MS, `denied after ${Math.round(ms)} ms`);
      assert.match(
        err.decision.reason,
        new RegExp(`${store} unavailable \\(redis did not answer within 500 ms\\)`),
      );
      // While the link stays frozen every call is still denied within the bound (none hangs behind another).
      for (let i = 0; i < 3; i++) assert.ok((await expectDenied(call)).ms < 500 + SLACK_MS);
      assert.equal(ran.n, 1, 'the guarded function never ran');

      proxy.pass();
      measure(`redis ${which} unfreeze → first allowed call`, await timeToResume(call));
      // The old complaint: still denying 30 s after the network came back. A steady run must all pass.
      await steady(call, 20);

      proxy.cut();
      const cut = await expectDenied(call);
      measure(`redis ${which} cut → deny`, cut.ms);
      assert.ok(cut.ms < 500 + SLACK_MS);
      assert.match(cut.err.decision.reason, new RegExp(`${store} unavailable \\(redis`));
      proxy.pass();
      measure(`redis ${which} restore after cut → first allowed call`, await timeToResume(call));
      await steady(call, 20);
      assert.equal(ran.n, 1 + 1 + 20 + 1 + 20);
    });
  }

  test('limits: a stranded connection is replaced after one deny, not kept denying', async (t) => {
    if (!(await redisAvailable(t))) return;
    const { proxy, ran, call } = await redisLayer(t, 'limits');
    await call();
    proxy.strand();
    const { err, ms } = await expectDenied(call);
    measure('redis limits stranded → deny (default 500 ms deadline)', ms);
    assert.match(err.decision.reason, /redis did not answer within 500 ms/);
    assert.ok(ms < 500 + SLACK_MS);
    measure('redis limits stranded → first allowed call on a fresh connection', await timeToResume(call));
    await steady(call, 20);
    assert.equal(ran.n, 1 + 1 + 20);
  });

  test('limits: a slow link within the deadline still allows; one slower than it denies in time', async (t) => {
    if (!(await redisAvailable(t))) return;
    const { proxy, ran, call } = await redisLayer(t, 'limits');
    await call();
    proxy.slow(100);
    const t0 = performance.now();
    await call();
    assert.ok(performance.now() - t0 >= 190, 'the round trip really was slowed');
    proxy.slow(1500);
    const { ms } = await expectDenied(call);
    assert.ok(ms < 500 + SLACK_MS, `denied after ${Math.round(ms)} ms`);
    proxy.pass();
    await timeToResume(call);
    await steady(call, 10);
    assert.equal(ran.n, 2 + 1 + 10);
  });

  test('state: a suspend made after the link returned stops the next call', async (t) => {
    if (!(await redisAvailable(t))) return;
    const { proxy, agent, call } = await redisLayer(t, 'state');
    proxy.freeze();
    await expectDenied(call);
    proxy.pass();
    await timeToResume(call);
    const r = new Redis(REDIS_URL);
    try {
      await r.hset(
        'execlayer:suspended',
        agent,
        JSON.stringify({ agent, by: 'ops', at: Date.now(), reason: 'drill' }),
      );
      const { err } = await expectDenied(call);
      assert.match(err.decision.reason, /is suspended by ops: drill/);
    } finally {
      await r.hdel('execlayer:suspended', agent);
      r.disconnect();
    }
  });
});

describe('approvals and tool pins on PostgreSQL behind a faulty link', () => {
  test('approvals: frozen → fails within the deadline naming the store; unfrozen → answers again', async (t) => {
    const pgUrl = await tempPostgresDatabase(t);
    if (!pgUrl) return;
    const proxy = await proxyFor(pgUrl);
    t.after(() => proxy.close());
    const store = await postgresApprovalStore(proxy.url(pgUrl), { timeoutMs: 1000 });
    t.after(() => store.close());
    const binding = { agent: 'a', tool: 'mail.send', argsDigest: 'd', policy: 'p' };
    assert.deepEqual(await store.list(), []);
    proxy.freeze();
    const t0 = performance.now();
    await assert.rejects(store.list(), /approval store \(postgres\) did not answer within 1000 ms/);
    const ms = performance.now() - t0;
    measure('approvals postgres freeze → error (timeoutMs 1000)', ms);
    assert.ok(ms >= 950 && ms < 1000 + SLACK_MS, `failed after ${Math.round(ms)} ms`);
    // Looking for a grant fails closed (no grant) within the same bound.
    const t1 = performance.now();
    assert.equal(await store.consumeGrant(binding, Date.now()), undefined);
    assert.ok(performance.now() - t1 < 1000 + SLACK_MS);
    proxy.pass();
    measure('approvals postgres unfreeze → answers', await timeToResume(() => store.list()));
  });

  test('tool pins: every pooled connection stranded → one failure, then fresh connections for all', async (t) => {
    const pgUrl = await tempPostgresDatabase(t);
    if (!pgUrl) return;
    const proxy = await proxyFor(pgUrl);
    t.after(() => proxy.close());
    const pins = new PostgresToolPinStore(proxy.url(pgUrl), { timeoutMs: 800 });
    t.after(() => pins.close());
    // Four pooled connections (the pool's size), all idle when the link forgets them.
    await Promise.all(['a', 'b', 'c', 'd'].map((x) => pins.check(`t.${x}`, 'h')));
    proxy.strand();
    await assert.rejects(pins.check('t.a', 'h'), /did not answer within 800 ms/);
    // Without the eviction each stale idle connection would cost another caller a full deadline.
    const t0 = performance.now();
    for (const x of ['a', 'b', 'c', 'd', 'a', 'b'])
      assert.equal((await pins.check(`t.${x}`, 'h')).status, 'match');
    const ms = performance.now() - t0;
    measure('tool pins postgres stranded pool → six checks after the first failure', ms);
    assert.ok(ms < 800, `the later checks took ${Math.round(ms)} ms`);
  });

  test('tool pins: frozen → a pin check fails within the deadline; unfrozen → it answers; restart → no stale failure', async (t) => {
    const pgUrl = await tempPostgresDatabase(t);
    if (!pgUrl) return;
    const proxy = await proxyFor(pgUrl);
    t.after(() => proxy.close());
    const pins = new PostgresToolPinStore(proxy.url(pgUrl), { timeoutMs: 1000 });
    t.after(() => pins.close());
    assert.equal((await pins.check('files.read', 'h1')).status, 'pinned');
    proxy.freeze();
    const t0 = performance.now();
    await assert.rejects(
      pins.check('files.read', 'h1'),
      /tool pin store \(postgres\) did not answer within 1000 ms/,
    );
    assert.ok(performance.now() - t0 < 1000 + SLACK_MS);
    proxy.pass();
    await timeToResume(() => pins.check('files.read', 'h1'));
    await adminQuery(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
      [dbName(pgUrl)],
    );
    assert.equal((await pins.check('files.read', 'h1')).status, 'match');
  });
});
