/**
 * Added latency per decision from limit checks, each backend beside its floor in the same run:
 *   memory  vs a bare Map increment
 *   SQLite  vs a bare prepared UPDATE (WAL, synchronous=NORMAL, autocommit)
 *   Redis   vs a bare INCR over loopback
 * One `calls` limit per decision (the common case), plus a three-limit decision for context.
 * Prints p50/p99 per operation and the ratio to the floor. Run: npm run bench:limits
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { MemoryLimitStore } from '../src/limits/memory.js';
import { RedisLimitStore } from '../src/limits/redis.js';
import { SqliteLimitStore } from '../src/limits/sqlite.js';
import type { LimitStore } from '../src/limits/types.js';
import { openSqlite } from '../src/state/sqlite-db.js';
import type { Action, LimitSpec } from '../src/types.js';

const REDIS_URL = process.env.EXECLAYER_TEST_REDIS ?? 'redis://127.0.0.1:6379';
const one: LimitSpec[] = [{ id: 'rate', kind: 'calls', max: 1e12, windowMs: 60_000, scope: ['agent'] }];
const three: LimitSpec[] = [
  ...one,
  { id: 'budget', kind: 'sum', max: 1e15, windowMs: 86_400_000, sumOf: 'args.amount', scope: ['agent'] },
  { id: 'per-tool', kind: 'calls', max: 1e12, windowMs: 3_600_000, scope: ['agent', 'tool'] },
];
const action: Action = { agent: 'support-bot', tool: 'payments.refund', args: { amount: 5 } };

interface Stats {
  p50: number;
  p99: number;
}

/** Per-op latency in ns: batches of `batch` ops timed together (timer overhead stays out of µs-scale ops). */
async function measure(
  fn: () => unknown,
  opts: { batches: number; batch: number; async: boolean },
): Promise<Stats> {
  const samples: number[] = [];
  const runBatch = async (): Promise<void> => {
    if (opts.async) for (let i = 0; i < opts.batch; i++) await (fn() as Promise<unknown>);
    else for (let i = 0; i < opts.batch; i++) fn();
  };
  for (let w = 0; w < Math.min(200, opts.batches); w++) await runBatch();
  for (let b = 0; b < opts.batches; b++) {
    const t0 = process.hrtime.bigint();
    await runBatch();
    samples.push(Number(process.hrtime.bigint() - t0) / opts.batch);
  }
  samples.sort((a, b) => a - b);
  return {
    p50: samples[Math.floor(samples.length * 0.5)] ?? 0,
    p99: samples[Math.floor(samples.length * 0.99)] ?? 0,
  };
}

function us(ns: number): string {
  return ns < 1000 ? `${(ns / 1000).toFixed(3)} µs` : `${(ns / 1000).toFixed(2)} µs`;
}

const rows: string[][] = [['backend', 'operation', 'p50', 'p99', 'p50 / floor']];
function report(backend: string, op: string, s: Stats, floor?: Stats): void {
  rows.push([backend, op, us(s.p50), us(s.p99), floor ? `${(s.p50 / floor.p50).toFixed(1)}x` : 'floor']);
}

async function consumeRelease(store: LimitStore, specs: LimitSpec[]): Promise<void> {
  const r = await store.consume(specs, action, [], Date.now());
  if (!r.ok) throw new Error(r.reason);
  await store.release(r.ticket);
}

async function main(): Promise<void> {
  // memory
  {
    const m = new Map<string, number>();
    const key = 'rate\u0000support-bot';
    const floor = await measure(() => m.set(key, (m.get(key) ?? 0) + 1), {
      batches: 2000,
      batch: 1000,
      async: false,
    });
    const store = new MemoryLimitStore();
    const now = Date.now();
    const sync = await measure(() => store.consumeSync(one, action, [], now), {
      batches: 2000,
      batch: 1000,
      async: false,
    });
    const viaPromise = await measure(() => consumeRelease(store, one), {
      batches: 1000,
      batch: 200,
      async: true,
    });
    const three3 = await measure(() => consumeRelease(store, three), {
      batches: 1000,
      batch: 200,
      async: true,
    });
    report('memory', 'bare Map increment', floor);
    report('memory', 'consumeSync, 1 calls limit', sync, floor);
    report('memory', 'await consume+release, 1 limit', viaPromise, floor);
    report('memory', 'await consume+release, 3 limits', three3, floor);
  }
  // SQLite
  {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-bench-'));
    try {
      const raw: Database.Database = openSqlite(join(dir, 'floor.db'));
      raw.exec('CREATE TABLE c (key TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID');
      raw.prepare("INSERT INTO c VALUES ('rate|support-bot', 0)").run();
      const upd = raw.prepare('UPDATE c SET v = v + 1 WHERE key = ?');
      const floor = await measure(() => upd.run('rate|support-bot'), {
        batches: 500,
        batch: 100,
        async: false,
      });
      const store = new SqliteLimitStore(join(dir, 'limits.db'));
      const sync = await measure(() => store.consumeSync(one, action, [], Date.now()), {
        batches: 500,
        batch: 100,
        async: false,
      });
      const viaPromise = await measure(() => consumeRelease(store, one), {
        batches: 500,
        batch: 100,
        async: true,
      });
      const three3 = await measure(() => consumeRelease(store, three), {
        batches: 300,
        batch: 100,
        async: true,
      });
      report('sqlite', 'bare prepared UPDATE', floor);
      report('sqlite', 'consumeSync, 1 calls limit', sync, floor);
      report('sqlite', 'await consume+release, 1 limit', viaPromise, floor);
      report('sqlite', 'await consume+release, 3 limits', three3, floor);
      raw.close();
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  // Redis
  {
    const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0 });
    r.on('error', () => {});
    let up = true;
    try {
      await r.connect();
    } catch {
      up = false;
    }
    if (!up) rows.push(['redis', `not reachable at ${REDIS_URL}: skipped`, '', '', '']);
    else {
      const prefix = `bench_${process.pid}:`;
      const floor = await measure(() => r.incr(`${prefix}floor`), { batches: 300, batch: 50, async: true });
      const store = await RedisLimitStore.open(REDIS_URL, { prefix });
      const viaPromise = await measure(() => consumeRelease(store, one), {
        batches: 300,
        batch: 50,
        async: true,
      });
      const three3 = await measure(() => consumeRelease(store, three), {
        batches: 300,
        batch: 50,
        async: true,
      });
      report('redis', 'bare INCR', floor);
      report('redis', 'await consume+release, 1 limit', viaPromise, floor);
      report('redis', 'await consume+release, 3 limits', three3, floor);
      await store.close();
      const keys = await r.keys(`${prefix}*`);
      if (keys.length > 0) await r.del(...keys);
    }
    r.disconnect();
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  '));
  console.log(
    '\ntargets (p50 added per decision, one calls limit): memory <= 1 µs, sqlite <= 20 µs, redis <= 300 µs',
  );
}

await main();
