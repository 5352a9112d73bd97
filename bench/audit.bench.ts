/**
 * Audit trail benchmark: durable records per second with group commit on SQLite and PostgreSQL, each beside
 * its FLOOR measured in the same run (plain better-sqlite3 / pg inserts of rows of the same size, the same
 * durability settings and the same batch sizes, no hashing); verification speed; and what recording adds
 * to one decision on the hot path (the `record()` enqueue) plus the awaited durability latency. Every timed
 * run, audit log and floor alike, starts after `sync`, with nothing of an earlier run left to write back.
 *
 *   npm run bench:audit
 *   BENCH_RECORDS=50000 BENCH_RUNS=3 BENCH_INFLIGHT=4096 npm run bench:audit
 *   BENCH_PG=0 npm run bench:audit       # SQLite only
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { readSigningKey } from '../src/audit/checkpoint.js';
import { type AuditLog, openAuditLog } from '../src/audit/log.js';
import { openSqliteStore } from '../src/audit/sqlite-store.js';
import { decisionEvent } from '../src/audit/testing.js';
import { canonicalJson } from '../src/canonical-json.js';
import type { DecisionEvent } from '../src/types.js';
import { settleDisk } from './lib/disk.js';
import { formatCount, formatRatio, formatUs, markdownTable } from './lib/format.js';
import { median, summarize } from './lib/stats.js';
import { clockOverheadUs } from './lib/timer.js';

const N = Number(process.env.BENCH_RECORDS ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 4096);
const PG_URL = process.env.EXECLAYER_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const WITH_PG = process.env.BENCH_PG !== '0';

/**
 * SQLite verification is timed as users run it: the built `execlayer audit verify` in a process of its own.
 * In this process the 100k events kept for the audit runs made every garbage collection during
 * verification slower (158k records/s in one run against 208–233k for the same log verified by the command).
 */
const CLI = fileURLToPath(new URL('../bin/execlayer.js', import.meta.url));
const events: DecisionEvent[] = Array.from({ length: N }, (_, i) => decisionEvent(i));
const avgBytes = Math.round(
  events.reduce((t, e) => t + Buffer.byteLength(canonicalJson(e)), 0) / Math.max(1, events.length),
);

/**
 * The floors' rows: the records' canonical texts, made before each floor run and dropped after it. Kept for
 * the whole benchmark, 100k of them slowed the audit runs' garbage collection (by about a third on two
 * cores), a cost no enforcement point carries.
 */
function floorTexts(n: number): string[] {
  return events.slice(0, n).map((e) => canonicalJson(e));
}

interface Throughput {
  rate: number;
  avgBatch: number;
  /** Share of the run the event loop was busy (the callers, serialisation, settling promises). */
  loopBusy: number;
  /** Event-loop delay during the run (ms): how long a timer or request waited behind the log's work. */
  loopDelayP50: number;
  loopDelayP99: number;
}

/** `n` records through `log.record` from INFLIGHT concurrent callers; durable records per second. */
async function auditRun(log: AuditLog, n: number): Promise<Throughput> {
  settleDisk();
  const before = log.stats();
  let next = 0;
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const elu = performance.eventLoopUtilization();
  const t0 = performance.now();
  const caller = async () => {
    while (next < n) await log.record(events[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(INFLIGHT, n) }, caller));
  const s = (performance.now() - t0) / 1000;
  const busy = performance.eventLoopUtilization(elu).utilization;
  delay.disable();
  const after = log.stats();
  return {
    rate: n / s,
    avgBatch: (after.records - before.records) / Math.max(1, after.batches - before.batches),
    loopBusy: busy,
    loopDelayP50: delay.percentile(50) / 1e6,
    loopDelayP99: delay.percentile(99) / 1e6,
  };
}

const FLOOR_COLUMNS = 'seq, v, time, hash, event, type, agent, tool, effect, rule, decision_id';

/** The index columns of event `i`, as the log derives them. */
function columnsOf(i: number): [string, string, string, string, string | null, string] {
  const e = events[i]!;
  return ['decision', e.action.agent, e.action.tool, e.decision.effect, e.decision.rule, e.decision.id];
}

/**
 * Plain SQLite inserts: rows of the same size and columns, WAL + synchronous=FULL, transactions of `batch`
 * rows, no hashing. `plain` has only the primary key; `audit` is the audit schema with its indexes.
 */
function sqliteFloor(path: string, n: number, batch: number, schema: 'plain' | 'audit'): number {
  const texts = floorTexts(n);
  if (schema === 'audit') void openSqliteStore(path).close();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  if (schema === 'plain') {
    db.exec(
      'CREATE TABLE floor (seq INTEGER PRIMARY KEY, v INTEGER, time INTEGER, hash BLOB, event TEXT, type TEXT, agent TEXT, tool TEXT, effect TEXT, rule TEXT, decision_id TEXT)',
    );
  }
  const table = schema === 'plain' ? 'floor' : 'audit_records';
  const ins = db.prepare(`INSERT INTO ${table} (${FLOOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const hashes = Array.from({ length: 1024 }, () => randomBytes(32));
  const tx = db.transaction((from: number, to: number) => {
    const now = Date.now();
    for (let i = from; i < to; i++) ins.run(i, 1, now, hashes[i & 1023], texts[i], ...columnsOf(i));
  });
  settleDisk();
  const t0 = performance.now();
  for (let from = 0; from < n; from += batch) tx.immediate(from, Math.min(n, from + batch));
  const s = (performance.now() - t0) / 1000;
  db.close();
  return n / s;
}

/** Plain PostgreSQL inserts: same rows, one `INSERT … unnest` per transaction of `batch` rows, no hashing. */
async function pgFloor(url: string, n: number, batch: number): Promise<number> {
  const texts = floorTexts(n);
  const c = new pg.Client(url);
  await c.connect();
  await c.query(
    'CREATE TABLE floor (seq bigint PRIMARY KEY, v smallint, time bigint, hash bytea, event text, type text, agent text, tool text, effect text, rule text, decision_id text)',
  );
  const hash = randomBytes(32).toString('hex');
  settleDisk();
  const t0 = performance.now();
  for (let from = 0; from < n; from += batch) {
    const to = Math.min(n, from + batch);
    const cols: Array<Array<number | string | null>> = Array.from({ length: 11 }, () => []);
    const now = Date.now();
    for (let i = from; i < to; i++) {
      const row = [i, 1, now, hash, texts[i]!, ...columnsOf(i)];
      for (let k = 0; k < 11; k++) cols[k]!.push(row[k]!);
    }
    await c.query('BEGIN');
    await c.query(
      `INSERT INTO floor (${FLOOR_COLUMNS})
       SELECT s, v, t, decode(h, 'hex'), e, ty, ag, tl, ef, ru, di
       FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::text[], $5::text[],
                   $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
         AS u(s, v, t, h, e, ty, ag, tl, ef, ru, di)`,
      cols,
    );
    await c.query('COMMIT');
  }
  const s = (performance.now() - t0) / 1000;
  await c.end();
  return n / s;
}

async function withPgDatabase<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const name = `execlayer_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client(PG_URL);
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  try {
    return await fn(u.toString());
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

/** What `record()` costs the caller before it returns (the hot-path hand-off), in µs per call. */
async function enqueueCost(log: AuditLog, count: number): Promise<{ record: number[]; promise: number[] }> {
  const record: number[] = [];
  const promise: number[] = [];
  const pending: Promise<void>[] = [];
  const held: Array<() => void> = [];
  for (let i = 0; i < count; i++) {
    const ev = events[i % N]!;
    const a = process.hrtime.bigint();
    pending.push(log.record(ev));
    const b = process.hrtime.bigint();
    // Peer: the least any promise-returning hand-off costs (allocate a promise, keep its resolver).
    const c = process.hrtime.bigint();
    pending.push(new Promise<void>((r) => held.push(r)));
    const d = process.hrtime.bigint();
    record.push(Number(b - a) / 1e3);
    promise.push(Number(d - c) / 1e3);
    if (pending.length >= 512) {
      for (const r of held.splice(0)) r();
      await Promise.all(pending.splice(0));
    }
  }
  for (const r of held.splice(0)) r();
  await Promise.all(pending);
  return { record, promise };
}

/** Latency from `record()` to durable, as an allowed action waiting for its record sees it. */
async function durableLatency(log: AuditLog, count: number, concurrency: number): Promise<number[]> {
  const out: number[] = [];
  let next = 0;
  const caller = async () => {
    while (next < count) {
      const ev = events[next++ % N]!;
      const t0 = performance.now();
      await log.record(ev);
      out.push((performance.now() - t0) * 1000);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, caller));
  return out;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'execlayer-audit-bench-'));
  console.log(
    `audit benchmark: ${formatCount(N)} decision records of ~${avgBytes} bytes, ${INFLIGHT} concurrent callers, ${RUNS} runs (median)`,
  );
  console.log(
    `machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}, node ${process.version}\n`,
  );
  try {
    // ---------------------------------------------------------------- SQLite throughput vs floor
    const sq = {
      audit: [] as number[],
      floor: [] as number[],
      floorAudit: [] as number[],
      batch: [] as number[],
      loopBusy: [] as number[],
      delayP50: [] as number[],
      delayP99: [] as number[],
    };
    let verifyLog = '';
    for (let run = 0; run < RUNS; run++) {
      const path = join(dir, `audit-${run}.db`);
      const log = await openAuditLog(`sqlite:${path}`);
      const t = await auditRun(log, N);
      await log.close();
      sq.audit.push(t.rate);
      sq.batch.push(t.avgBatch);
      sq.loopBusy.push(t.loopBusy);
      sq.delayP50.push(t.loopDelayP50);
      sq.delayP99.push(t.loopDelayP99);
      const batch = Math.max(1, Math.round(t.avgBatch));
      sq.floor.push(sqliteFloor(join(dir, `floor-${run}.db`), N, batch, 'plain'));
      sq.floorAudit.push(sqliteFloor(join(dir, `floor-audit-${run}.db`), N, batch, 'audit'));
      verifyLog = path;
    }

    // ---------------------------------------------------------------- verify speed
    const verifyRates: number[] = [];
    for (let run = 0; run < RUNS; run++) verifyRates.push(verifyInChild(verifyLog));

    // ---------------------------------------------------------------- PostgreSQL throughput vs floor
    const pq = {
      audit: [] as number[],
      floor: [] as number[],
      batch: [] as number[],
      verify: [] as number[],
    };
    let pgNote = '';
    if (WITH_PG) {
      try {
        const nPg = Math.min(N, Number(process.env.BENCH_PG_RECORDS ?? 50_000));
        for (let run = 0; run < RUNS; run++) {
          await withPgDatabase(async (url) => {
            const log = await openAuditLog(url, { keyPath: join(dir, 'pg.key') });
            const t = await auditRun(log, nPg);
            pq.audit.push(t.rate);
            pq.batch.push(t.avgBatch);
            if (run === 0) {
              settleDisk();
              const r = await log.verify();
              if (!r.ok) throw new Error(`postgres verify failed: ${JSON.stringify(r.problems)}`);
              pq.verify.push(r.rate);
            }
            await log.close();
            pq.floor.push(await pgFloor(url, nPg, Math.max(1, Math.round(t.avgBatch))));
          });
        }
      } catch (e) {
        pgNote = `postgres skipped: ${(e as Error).message}`;
      }
    }

    // ---------------------------------------------------------------- hot path and latency
    const hot = await openAuditLog(`sqlite:${join(dir, 'hot.db')}`);
    await enqueueCost(hot, 20_000); // warm-up
    const cost = await enqueueCost(hot, 100_000);
    const rec = summarize(cost.record);
    const prom = summarize(cost.promise);
    const clock = clockOverheadUs();
    const seqLat = summarize(await durableLatency(hot, 500, 1));
    const loadLat = summarize(await durableLatency(hot, 20_000, 64));
    await hot.close();

    // ---------------------------------------------------------------- report
    const rate = (r: number) => `${formatCount(Math.round(r))}/s`;
    /** One throughput row: rate, average batch, and the ratio to the same backend's plain-table floor. */
    const throughput = (name: string, rates: number[], batches: number[], floor: number[]) => [
      name,
      rate(median(rates)),
      formatCount(Math.round(median(batches))),
      formatRatio(median(rates) / median(floor)),
    ];
    const rows: string[][] = [
      throughput('sqlite: audit log (hash chain + Merkle + checkpoints)', sq.audit, sq.batch, sq.floor),
      throughput('sqlite: floor, plain table', sq.floor, sq.batch, sq.floor),
      throughput('sqlite: floor, audit schema (indexes), no hashing', sq.floorAudit, sq.batch, sq.floor),
    ];
    if (pq.audit.length > 0) {
      rows.push(
        throughput('postgres: audit log (hash chain + Merkle + checkpoints)', pq.audit, pq.batch, pq.floor),
        throughput('postgres: floor, plain table', pq.floor, pq.batch, pq.floor),
      );
    }
    console.log('durable records per second (group commit; ratio = audit / floor of the same backend)\n');
    console.log(markdownTable(['store', 'records/s', 'avg batch', 'vs floor'], rows));
    console.log('\nverification (chain + Merkle roots + signatures + consistency proofs)\n');
    const vrows = [['sqlite, own process (`execlayer audit verify`, one thread)', rate(median(verifyRates))]];
    if (pq.verify.length > 0) vrows.push(['postgres', rate(median(pq.verify))]);
    console.log(markdownTable(['store', 'records/s'], vrows));
    console.log(
      '\nevent loop of the recording process during the sqlite runs (the enforcement point runs here)\n',
    );
    console.log(
      markdownTable(
        ['measure', 'median of runs'],
        [
          [
            'event loop busy (callers, serialisation, settling promises)',
            `${(median(sq.loopBusy) * 100).toFixed(0)}%`,
          ],
          ['event-loop delay p50', `${median(sq.delayP50).toFixed(2)} ms`],
          ['event-loop delay p99', `${median(sq.delayP99).toFixed(2)} ms`],
        ],
      ),
    );
    console.log('\nhot path: what recording adds to one decision (sqlite log)\n');
    console.log(
      markdownTable(
        ['measure', 'p50', 'p99', 'samples'],
        [
          ['record() enqueue, returns a promise', formatUs(rec.p50), formatUs(rec.p99), formatCount(rec.n)],
          [
            'peer: bare new Promise + keep resolver',
            formatUs(prom.p50),
            formatUs(prom.p99),
            formatCount(prom.n),
          ],
          ['clock read overhead (included above)', formatUs(clock), '', ''],
          [
            'awaited durability, 1 caller (one fsync each)',
            formatUs(seqLat.p50),
            formatUs(seqLat.p99),
            formatCount(seqLat.n),
          ],
          [
            'awaited durability, 64 concurrent callers',
            formatUs(loadLat.p50),
            formatUs(loadLat.p99),
            formatCount(loadLat.n),
          ],
        ],
      ),
    );
    console.log('\ntargets on a 2-core machine');
    const check = (ok: boolean, text: string) => console.log(`  ${ok ? 'met ' : 'MISS'}  ${text}`);
    check(median(sq.audit) >= 50_000, `sqlite >= 50,000 records/s (${rate(median(sq.audit))})`);
    check(
      median(sq.audit) / median(sq.floor) >= 0.5,
      `sqlite >= 50% of floor (${formatRatio(median(sq.audit) / median(sq.floor))})`,
    );
    if (pq.audit.length > 0) {
      check(median(pq.audit) >= 10_000, `postgres >= 10,000 records/s (${rate(median(pq.audit))})`);
      check(
        median(pq.audit) / median(pq.floor) >= 0.5,
        `postgres >= 50% of floor (${formatRatio(median(pq.audit) / median(pq.floor))})`,
      );
    }
    check(median(verifyRates) >= 120_000, `verify >= 120,000 records/s (${rate(median(verifyRates))})`);
    check(rec.p50 <= 5, `record() adds <= 5 µs p50 (${formatUs(rec.p50)})`);
    if (pgNote) console.log(`\n${pgNote}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Verifies the SQLite log at `path` with the built `execlayer audit verify` (after `sync`) against its public
 * key, as an auditor would (without a trusted key the command exits 5, self-signed); records per second.
 */
function verifyInChild(path: string): number {
  const pub = `${path}.pub.pem`;
  writeFileSync(pub, readSigningKey(`${path}.key`).publicPem);
  settleDisk();
  const out = execFileSync(
    process.execPath,
    [CLI, 'audit', 'verify', '--store', `sqlite:${path}`, '--key', pub, '--json'],
    { encoding: 'utf8' },
  );
  const r = JSON.parse(out) as { ok: boolean; rate: number; problems: unknown[] };
  if (!r.ok) throw new Error(`verify failed: ${JSON.stringify(r.problems)}`);
  return r.rate;
}

await main();
