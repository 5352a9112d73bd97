/**
 * Cross-process behaviour with real parts: separate Node processes sharing one Redis (and one SQLite
 * file) for limits and the stop switch. The file re-runs itself as the child when EXECLAYER_CHILD is set.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { openLimitStore } from '../src/limits/open.js';
import { openAgentStateStore } from '../src/state/open.js';
import { REDIS_URL, redisAvailable, uniqueName } from '../src/testing/services.js';
import type { LimitSpec } from '../src/types.js';

const SPEC: LimitSpec = { id: 'hammer', kind: 'calls', max: 500, windowMs: 3_600_000, scope: ['agent'] };
const SELF = fileURLToPath(import.meta.url);

type Msg = {
  ok?: number;
  denied?: number;
  errors?: number;
  ready?: true;
  verdict?: boolean;
  before?: number;
  /** The first failure that was not a denial, for the assertion message. */
  firstError?: string;
};

async function child(): Promise<void> {
  const mode = process.env.EXECLAYER_CHILD;
  const url = process.env.EXECLAYER_URL as string;
  const prefix = process.env.EXECLAYER_PREFIX as string;
  if (mode === 'hammer') {
    const store = await openLimitStore(url, { prefix });
    process.send?.({ ready: true });
    await new Promise((r) => process.once('message', r));
    const counts: Msg = { ok: 0, denied: 0, errors: 0 };
    const now = Date.now();
    let next = 0;
    const worker = async () => {
      while (next < 1000) {
        next++;
        const r = await store.consume([SPEC], { agent: 'shared-bot', tool: 't', args: {} }, [], now);
        if (r.ok) counts.ok = (counts.ok ?? 0) + 1;
        else if (r.code === 'limit_exceeded') counts.denied = (counts.denied ?? 0) + 1;
        else {
          counts.errors = (counts.errors ?? 0) + 1;
          counts.firstError ??= `${r.code}: ${r.reason}`;
        }
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    await store.close();
    process.send?.(counts);
  } else if (mode === 'open') {
    // Per message {url, at}: open the store at that instant (as the other processes do), take one call.
    process.send?.({ ready: true });
    for (;;) {
      const m = await new Promise<{ url: string; at: number } | 'done'>((r) => process.once('message', r));
      if (m === 'done') break;
      while (Date.now() < m.at) {
        // Spin: every process reaches the open in the same millisecond.
      }
      const store = await openLimitStore(m.url, { prefix });
      const r = await store.consume([SPEC], { agent: 'opener', tool: 't', args: {} }, [], Date.now());
      await store.close();
      process.send?.(r.ok ? { ok: 1 } : { errors: 1, firstError: `${r.code}: ${r.reason}` });
    }
  } else if (mode === 'decider') {
    // Decides in a tight loop; when told that suspend() has returned, the next decision must be denied.
    const store = await openAgentStateStore(url, { prefix });
    let told = false;
    let before = 0;
    process.on('message', () => {
      told = true;
    });
    process.send?.({ ready: true });
    for (;;) {
      const startedAfterTold = told;
      const st = await store.isSuspended('bot');
      if (startedAfterTold) {
        process.send?.({ verdict: st.suspended, before });
        break;
      }
      if (!st.suspended) before++;
      // Yield so the IPC message can arrive between decisions.
      await new Promise((r) => setImmediate(r));
    }
    await store.close();
  }
  process.disconnect?.();
}

function spawn(mode: string, url: string, prefix: string): ChildProcess {
  return fork(SELF, [], {
    env: { ...process.env, EXECLAYER_CHILD: mode, EXECLAYER_URL: url, EXECLAYER_PREFIX: prefix },
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

function next(c: ChildProcess): Promise<Msg> {
  return new Promise((resolve, reject) => {
    c.once('message', (m) => resolve(m as Msg));
    c.once('exit', (code) => reject(new Error(`child exited with ${String(code)} before answering`)));
  });
}

async function dropKeys(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  const keys = await r.keys(`${prefix}*`);
  if (keys.length > 0) await r.del(...keys);
  r.disconnect();
}

if (process.env.EXECLAYER_CHILD) {
  await child();
} else {
  const { describe, it } = await import('node:test');

  /**
   * Two processes hammer one limit: exactly 500 calls succeed in total, every round. On a loaded machine
   * one process can finish before the other starts, which proves nothing about concurrency, so rounds
   * repeat (each on a fresh limit) until one had both processes succeeding.
   */
  const hammer = async (urlFor: (round: number) => string, prefix: string) => {
    for (let round = 0; round < 5; round++) {
      const p = `${prefix}r${round}:`;
      const url = urlFor(round);
      const kids = [spawn('hammer', url, p), spawn('hammer', url, p)];
      await Promise.all(kids.map(next)); // both connected
      const results = kids.map(next);
      for (const k of kids) k.send('go');
      const [a, b] = (await Promise.all(results)) as [Msg, Msg];
      assert.equal(a.errors, 0, `first store error: ${a.firstError}`);
      assert.equal(b.errors, 0, `first store error: ${b.firstError}`);
      assert.equal(
        (a.ok ?? 0) + (b.ok ?? 0),
        500,
        `exactly 500 of 2000 calls succeed (got ${a.ok} + ${b.ok})`,
      );
      assert.equal((a.denied ?? 0) + (b.denied ?? 0), 1500);
      if ((a.ok ?? 0) > 0 && (b.ok ?? 0) > 0) return;
    }
    assert.fail(
      'in 5 rounds the two processes never both got a share of the limit: the test did not exercise contention',
    );
  };

  const stopSwitch = async (url: string, prefix: string) => {
    const state = await openAgentStateStore(url, { prefix });
    try {
      const kid = spawn('decider', url, prefix);
      await next(kid);
      await new Promise((r) => setTimeout(r, 300)); // let the burst run
      await state.suspend('bot', 'oncall', 'test');
      const verdict = next(kid);
      kid.send('suspended');
      const v = await verdict;
      assert.ok((v.before ?? 0) > 10, 'the other process was deciding (and allowed) before the suspend');
      assert.equal(v.verdict, true, 'the first decision after suspend() resolved is denied');
    } finally {
      await state.close();
    }
  };

  describe('limits across processes', () => {
    it('redis: two processes hammering one limit of 500 get exactly 500 in total', async (t) => {
      if (!(await redisAvailable(t))) return;
      const prefix = `${uniqueName('test_hammer')}:`;
      t.after(() => dropKeys(prefix));
      await hammer(() => REDIS_URL, prefix);
    });

    it('sqlite: processes creating one new file at the same instant all open it', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'execlayer-proc-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      // Each holds a read lock and wants the write lock to turn on WAL: SQLite refuses all but one at once,
      // without its busy handler (about a third of such opens failed before the open retried).
      const kids = [0, 1, 2].map(() => spawn('open', '', ''));
      t.after(() => {
        for (const k of kids) if (k.connected) k.send('done');
      });
      await Promise.all(kids.map(next));
      for (let round = 0; round < 10; round++) {
        const results = kids.map(next);
        const msg = { url: `sqlite:${join(dir, `o${round}.db`)}`, at: Date.now() + 30 };
        for (const k of kids) k.send(msg);
        for (const r of await Promise.all(results)) {
          assert.equal(r.ok, 1, `round ${round}: a consume right after opening: ${r.firstError}`);
        }
      }
    });

    it('sqlite: two processes sharing one file get exactly 500 in total', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'execlayer-proc-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      await hammer((round) => `sqlite:${join(dir, `l${round}.db`)}`, '');
    });
  });

  describe('stop switch across processes', () => {
    it('redis: a decision in another process right after suspend() resolves is denied', async (t) => {
      if (!(await redisAvailable(t))) return;
      const prefix = `${uniqueName('test_stop')}:`;
      t.after(() => dropKeys(prefix));
      await stopSwitch(REDIS_URL, prefix);
    });

    it('sqlite: a decision in another process right after suspend() resolves is denied', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'execlayer-proc-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      await stopSwitch(`sqlite:${join(dir, 's.db')}`, '');
    });
  });
}
