/**
 * The one contract every LimitStore passes. `stores.test.ts` runs it against memory, SQLite and Redis.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { Action, LimitSpec } from '../types.js';
import type { LimitResult, LimitStore, LimitStoreOptions, LimitTicket } from './types.js';

/** Creates a fresh, empty store; `undefined` means the backend is unavailable and the test skipped. */
export type LimitStoreFactory = (
  t: TestContext,
  options: LimitStoreOptions,
) => Promise<LimitStore | undefined>;

type It = (name: string, fn: (t: TestContext) => Promise<void>) => unknown;

const T0 = Date.UTC(2025, 0, 15, 10, 0, 0); // 10:00 UTC, aligned to minute/hour
const MIN = 60_000;
const DAY = 86_400_000;

const bot: Action = { agent: 'support-bot', tool: 'payments.refund', args: { amount: 50 } };

function calls(id: string, max: number, windowMs = MIN, scope: LimitSpec['scope'] = ['agent']): LimitSpec {
  return { id, kind: 'calls', max, windowMs, scope };
}

function ok(r: LimitResult): LimitTicket {
  if (!r.ok) assert.fail(`expected ok, got ${r.code}: ${r.reason}`);
  return r.ticket;
}

function denied(r: LimitResult, code = 'limit_exceeded'): Extract<LimitResult, { ok: false }> {
  assert.equal(r.ok, false, 'expected a denial');
  if (r.ok) throw new Error('unreachable');
  assert.equal(r.code, code, r.reason);
  return r;
}

async function countOk(
  store: LimitStore,
  specs: LimitSpec[],
  action: Action,
  n: number,
  now: number,
): Promise<number> {
  let k = 0;
  for (let i = 0; i < n; i++) if ((await store.consume(specs, action, [], now)).ok) k++;
  return k;
}

/** Registers the contract tests for one backend. */
export function limitStoreContract(it: It, factory: LimitStoreFactory): void {
  const use = async (t: TestContext, options: LimitStoreOptions = {}) => {
    const s = await factory(t, options);
    if (s !== undefined) t.after(() => s.close());
    return s;
  };

  it('calls: allows max per fixed window, denies the next with the reset time, resets at the boundary', async (t) => {
    const s = await use(t);
    if (!s) return;
    const spec = calls('tickets-rate', 3);
    for (let i = 0; i < 3; i++) ok(await s.consume([spec], bot, [], T0 + 1000 * i));
    const d = denied(await s.consume([spec], bot, [], T0 + 45_000));
    assert.equal(d.limit, spec);
    assert.equal(d.retryAfterMs, 15_000);
    assert.match(
      d.reason,
      /limit `tickets-rate` exceeded: 3 of 3 calls used per minute by agent `support-bot`/,
    );
    assert.match(d.reason, /resets in 15s/);
    // Another agent has its own counter.
    ok(await s.consume([spec], { ...bot, agent: 'other-bot' }, [], T0 + 45_000));
    // The next aligned window starts fresh.
    ok(await s.consume([spec], bot, [], T0 + MIN));
  });

  it('sum: budgets an argument per window and names used, max, amount and reset', async (t) => {
    const s = await use(t);
    if (!s) return;
    const spec: LimitSpec = {
      id: 'refunds-daily',
      kind: 'sum',
      max: 500,
      windowMs: DAY,
      sumOf: 'args.amount',
      scope: ['agent'],
    };
    const at = T0; // 10:00 UTC -> resets in 14h
    ok(await s.consume([spec], { ...bot, args: { amount: 300 } }, [], at));
    ok(await s.consume([spec], { ...bot, args: { amount: 180 } }, [], at));
    const d = denied(await s.consume([spec], { ...bot, args: { amount: 50 } }, [], at));
    assert.equal(
      d.reason,
      'limit `refunds-daily` exceeded: 480 of 500 used per day by agent `support-bot`; amount 50 would exceed it; resets in 14h',
    );
    assert.equal(d.retryAfterMs, 14 * 3_600_000);
    ok(await s.consume([spec], { ...bot, args: { amount: 20 } }, [], at));
    denied(await s.consume([spec], { ...bot, args: { amount: 0.5 } }, [], at));
    ok(await s.consume([spec], { ...bot, args: { amount: 0 } }, [], at));
    ok(await s.consume([spec], { ...bot, args: { amount: 500 } }, [], at + DAY));
  });

  it('sum: only a finite non-negative number counts; anything else is denied and consumes nothing', async (t) => {
    const s = await use(t);
    if (!s) return;
    const spec: LimitSpec = {
      id: 'budget',
      kind: 'sum',
      max: 100,
      windowMs: DAY,
      sumOf: 'args.amount',
      scope: ['agent'],
    };
    const bad: Action['args'][] = [
      { amount: '50' },
      { amount: -1 },
      {},
      { amount: null },
      { amount: [50] },
      { amount: true },
    ];
    for (const args of bad) {
      const d = denied(await s.consume([spec], { ...bot, args }, [], T0), 'invalid_action');
      assert.match(d.reason, /needs `args\.amount` to be a finite non-negative number/);
    }
    const nested: LimitSpec = { ...spec, id: 'nested', sumOf: 'args.order.total' };
    ok(await s.consume([nested], { ...bot, args: { order: { total: 100 } } }, [], T0));
    denied(await s.consume([nested], { ...bot, args: { order: { total: 1 } } }, [], T0));
    // Nothing was consumed by the bad calls: the full budget is still there.
    ok(await s.consume([spec], { ...bot, args: { amount: 100 } }, [], T0));
    const big = denied(await s.consume([spec], { ...bot, args: { amount: 101 } }, [], T0 + DAY));
    assert.equal(big.retryAfterMs, -1);
    assert.match(big.reason, /more than the whole budget/);
  });

  it('all-or-nothing: when one limit fails, none is consumed', async (t) => {
    const s = await use(t);
    if (!s) return;
    const rate = calls('rate', 5);
    const budget: LimitSpec = {
      id: 'budget',
      kind: 'sum',
      max: 100,
      windowMs: DAY,
      sumOf: 'args.amount',
      scope: ['agent'],
    };
    const conc: LimitSpec = { id: 'conc', kind: 'concurrent', max: 1, scope: ['agent'] };
    ok(await s.consume([budget], { ...bot, args: { amount: 80 } }, [], T0));
    for (let i = 0; i < 5; i++) {
      const d = denied(await s.consume([rate, conc, budget], { ...bot, args: { amount: 30 } }, [], T0));
      assert.equal(d.limit.id, 'budget');
    }
    // rate and concurrency were untouched by the five failed attempts.
    assert.equal(await countOk(s, [rate], bot, 6, T0), 5);
    ok(await s.consume([conc], bot, [], T0));
  });

  it('concurrent: caps in-flight actions; release frees a slot exactly once', async (t) => {
    const s = await use(t);
    if (!s) return;
    const spec: LimitSpec = { id: 'db-conc', kind: 'concurrent', max: 2, scope: ['agent'] };
    const a = ok(await s.consume([spec], bot, [], T0));
    ok(await s.consume([spec], bot, [], T0));
    const d = denied(await s.consume([spec], bot, [], T0));
    assert.match(d.reason, /2 of 2 concurrent actions already in flight for agent `support-bot`/);
    await s.release(a);
    await s.release(a); // idempotent: must not free a second slot
    ok(await s.consume([spec], bot, [], T0));
    denied(await s.consume([spec], bot, [], T0));
  });

  it('release: frees only concurrency unless refund is asked for; refund gives back calls and sum', async (t) => {
    const s = await use(t);
    if (!s) return;
    const rate = calls('rate', 2);
    const budget: LimitSpec = {
      id: 'budget',
      kind: 'sum',
      max: 100,
      windowMs: DAY,
      sumOf: 'args.amount',
      scope: ['agent'],
    };
    const t1 = ok(await s.consume([rate, budget], { ...bot, args: { amount: 60 } }, [], T0));
    await s.release(t1); // the action ran: nothing comes back
    denied(await s.consume([budget], { ...bot, args: { amount: 60 } }, [], T0));
    const t2 = ok(await s.consume([rate], bot, [], T0));
    denied(await s.consume([rate], bot, [], T0));
    await s.release(t2, { refund: true }); // never ran: the call comes back
    await s.release(t2, { refund: true });
    ok(await s.consume([rate], bot, [], T0));
    denied(await s.consume([rate], bot, [], T0));
  });

  it('steps: per session, never reset by time; a call without a session is denied', async (t) => {
    const s = await use(t);
    if (!s) return;
    const spec: LimitSpec = { id: 'steps', kind: 'steps', max: 3, scope: ['agent'] };
    const d0 = denied(await s.consume([spec], bot, [], T0), 'invalid_action');
    assert.match(d0.reason, /counted per session and the call has none/);
    const s1 = { ...bot, session: 's1' };
    assert.equal(await countOk(s, [spec], s1, 3, T0), 3);
    const d = denied(await s.consume([spec], s1, [], T0 + DAY));
    assert.equal(d.retryAfterMs, -1);
    assert.match(d.reason, /3 of 3 steps used by agent `support-bot` and session `s1`/);
    ok(await s.consume([spec], { ...bot, session: 's2' }, [], T0));
  });

  it('scopes: tool, role, principal and global keys; missing principal denies', async (t) => {
    const s = await use(t);
    if (!s) return;
    const perTool = calls('per-tool', 1, MIN, ['agent', 'tool']);
    ok(await s.consume([perTool], bot, [], T0));
    ok(await s.consume([perTool], { ...bot, tool: 'payments.lookup' }, [], T0));
    denied(await s.consume([perTool], bot, [], T0));

    const global = calls('global', 2, MIN, ['global']);
    ok(await s.consume([global], bot, [], T0));
    ok(await s.consume([global], { ...bot, agent: 'b' }, [], T0));
    const g = denied(await s.consume([global], { ...bot, agent: 'c' }, [], T0));
    assert.match(g.reason, /globally/);

    const perRole = calls('per-role', 1, MIN, ['role']);
    ok(await s.consume([perRole], bot, ['support'], T0));
    denied(await s.consume([perRole], { ...bot, agent: 'b' }, ['support'], T0));
    ok(await s.consume([perRole], bot, ['billing'], T0));
    denied(await s.consume([perRole], bot, [], T0), 'invalid_action');

    const perUser = calls('per-user', 1, MIN, ['principal']);
    const pd = denied(await s.consume([perUser], bot, [], T0), 'invalid_action');
    assert.match(pd.reason, /per principal/);
    ok(await s.consume([perUser], { ...bot, onBehalfOf: 'alice' }, [], T0));
    denied(await s.consume([perUser], { ...bot, onBehalfOf: 'alice', agent: 'x' }, [], T0));
    ok(await s.consume([perUser], { ...bot, onBehalfOf: 'bob' }, [], T0));
    // Ids cannot be crafted to collide with another scope's key.
    const two = calls('two', 1, MIN, ['agent', 'tool']);
    ok(await s.consume([two], { ...bot, agent: 'a|1:b', tool: 'c' }, [], T0));
    ok(await s.consume([two], { ...bot, agent: 'a', tool: 'b|1:c' }, [], T0));
  });

  it('invalid specs deny with evaluation_error', async (t) => {
    const s = await use(t);
    if (!s) return;
    const noWindow = { id: 'w', kind: 'calls', max: 1, scope: ['agent'] } as LimitSpec;
    denied(await s.consume([noWindow], bot, [], T0), 'evaluation_error');
    const nanMax = { id: 'm', kind: 'calls', max: Number.NaN, windowMs: MIN, scope: ['agent'] } as LimitSpec;
    denied(await s.consume([nanMax], bot, [], T0), 'evaluation_error');
    const badSum = {
      id: 's',
      kind: 'sum',
      max: 1,
      windowMs: MIN,
      sumOf: 'amount',
      scope: ['agent'],
    } as LimitSpec;
    denied(await s.consume([badSum], bot, [], T0), 'evaluation_error');
  });

  it('concurrent consumers never overshoot', async (t) => {
    const s = await use(t);
    if (!s) return;
    const spec = calls('burst', 50);
    const results = await Promise.all(Array.from({ length: 200 }, () => s.consume([spec], bot, [], T0)));
    assert.equal(results.filter((r) => r.ok).length, 50);
  });

  it('an unreleased concurrency slot is reclaimed after the lease', async (t) => {
    const s = await use(t, { leaseMs: 5_000 });
    if (!s) return;
    if (s.constructor.name === 'MemoryLimitStore') {
      t.skip('memory: a crashed holder takes the whole store with it, so there is no lease to expire');
      return;
    }
    const spec: LimitSpec = { id: 'lease', kind: 'concurrent', max: 1, scope: ['agent'] };
    ok(await s.consume([spec], bot, [], T0));
    denied(await s.consume([spec], bot, [], T0 + 4_999));
    ok(await s.consume([spec], bot, [], T0 + 5_001));
  });
}
