import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { memoryApprovalStore } from '../approvals/memory.js';
import { openAuditLog } from '../audit/log.js';
import { MemoryLimitStore } from '../limits/memory.js';
import { MemoryAgentStateStore } from '../state/agent-state.js';
import type { AuditEvent, Json, Recorder } from '../types.js';
import { ApprovalRequiredError, DeniedError, PolicyError } from './errors.js';
import { createExecLayer, type ExecLayerOptions } from './exec-layer.js';

const POLICY = {
  version: 1,
  agents: { bot: { roles: ['r'] } },
  roles: {
    r: [
      { id: 'write-tmp', allow: 'files.write', when: { path: { under: ['/tmp/ok'] } } },
      {
        id: 'refund',
        allow: 'pay.refund',
        when: { args: { amount: { type: 'number', max: 100 } } },
        limit: { sum: 'args.amount', max: 150, per: 'day' },
      },
      { id: 'mail', ask: 'mail.send', approval: { approvers: ['lead@acme.com'] } },
    ],
  },
};

class ListRecorder implements Recorder {
  events: AuditEvent[] = [];
  fail = false;
  async record(e: AuditEvent): Promise<void> {
    if (this.fail) throw new Error('disk full');
    this.events.push(e);
  }
}

async function layer(extra: Partial<ExecLayerOptions> = {}) {
  const recorder = new ListRecorder();
  const l = await createExecLayer({
    policy: POLICY,
    recorder,
    limits: new MemoryLimitStore(),
    approvals: memoryApprovalStore(),
    state: new MemoryAgentStateStore(),
    ...extra,
  });
  return { l, recorder };
}

describe('runtime', () => {
  test('guard runs the function only when allowed, and records the decision before it runs', async () => {
    const { l, recorder } = await layer();
    const calls: string[] = [];
    const write = l.guard(
      async (args: { path: string }) => {
        // The allowed decision is already recorded when the action runs.
        assert.ok(recorder.events.some((e) => e.type === 'decision' && e.decision.effect === 'allow'));
        calls.push(args.path);
        return 'written';
      },
      { agent: 'bot', tool: 'files.write' },
    );
    assert.equal(await write({ path: '/tmp/ok/a.txt' }), 'written');
    await assert.rejects(write({ path: '/etc/passwd' }), (e: unknown) => {
      assert.ok(e instanceof DeniedError);
      assert.equal(e.decision.effect, 'deny');
      assert.match(e.message, /under \[\/tmp\/ok\]/);
      return true;
    });
    assert.deepEqual(calls, ['/tmp/ok/a.txt'], 'the denied call never ran');
    await l.flush();
    const types = recorder.events.map((e) =>
      e.type === 'decision' ? `decision:${e.decision.effect}` : e.type,
    );
    assert.deepEqual(types, ['policy', 'decision:allow', 'outcome', 'decision:deny']);
    const outcome = recorder.events[2] as Extract<AuditEvent, { type: 'outcome' }>;
    assert.equal(outcome.ok, true);
    assert.equal(outcome.tool, 'files.write');
    await l.close();
  });

  test('fails closed when the audit trail cannot record an allowed action', async () => {
    const { l, recorder } = await layer();
    let ran = false;
    const write = l.guard(
      async () => {
        ran = true;
      },
      { agent: 'bot', tool: 'files.write' },
    );
    recorder.fail = true;
    await assert.rejects(
      write({ path: '/tmp/ok/a' }),
      (e: unknown) => e instanceof DeniedError && e.decision.code === 'store_error',
    );
    assert.equal(ran, false);
    recorder.fail = false;
    await write({ path: '/tmp/ok/a' });
    assert.equal(ran, true, 'recovers when the store returns');
    await l.close();
  });

  test('limits: a budget is consumed by allowed actions only and named when exceeded', async () => {
    const { l } = await layer();
    const a = { agent: 'bot', tool: 'pay.refund' };
    assert.equal((await l.authorize({ ...a, args: { amount: 100 } })).effect, 'allow');
    assert.equal(
      (await l.authorize({ ...a, args: { amount: 500 } })).effect,
      'deny',
      'over the per-call bound',
    );
    const d = await l.authorize({ ...a, args: { amount: 60 } });
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, 'limit_exceeded');
    assert.match(d.reason, /refund/);
    assert.ok((d.retryAfterMs ?? 0) > 0);
    assert.equal(
      (await l.authorize({ ...a, args: { amount: 50 } })).effect,
      'allow',
      'exactly up to the budget',
    );
    await l.close();
  });

  test('allowed decisions whose outcome never comes are forgotten oldest first, releasing their slots', async () => {
    const MAX = 65_536;
    const recorder = new ListRecorder();
    const l = await createExecLayer({
      policy: {
        version: 1,
        agents: { bot: { roles: ['r'] } },
        roles: {
          r: [
            { id: 'read', allow: 'db.read' },
            { id: 'run', allow: 'job.run', limit: { concurrent: 1 } },
          ],
        },
      },
      recorder,
      limits: new MemoryLimitStore(),
    });
    const job = await l.authorize({ agent: 'bot', tool: 'job.run', args: {} });
    assert.equal(job.effect, 'allow');
    assert.equal((await l.authorize({ agent: 'bot', tool: 'job.run', args: {} })).code, 'limit_exceeded');
    const first = await l.authorize({ agent: 'bot', tool: 'db.read', args: {} });
    for (let i = 0; i < MAX - 1; i++) await l.authorize({ agent: 'bot', tool: 'db.read', args: {} });
    await l.outcome(first, { ok: true, durationMs: 1 });
    await l.outcome(job, { ok: true, durationMs: 1 });
    // `job` was the oldest: forgotten, and its concurrency slot released (not refunded).
    const again = await l.authorize({ agent: 'bot', tool: 'job.run', args: {} });
    assert.equal(again.effect, 'allow', 'the slot held by the forgotten decision is free again');
    const outcomes = recorder.events.filter((e) => e.type === 'outcome');
    assert.deepEqual(
      outcomes.map((e) => e.type === 'outcome' && [e.decisionId, e.tool]),
      [
        [first.id, 'db.read'],
        [job.id, ''],
      ],
      'the newer decision is still remembered; the evicted one is not',
    );
    await l.close();
  });

  test('a decision with limits but no limit store is denied', async () => {
    const l = await createExecLayer({ policy: POLICY, store: false });
    const d = await l.authorize({ agent: 'bot', tool: 'pay.refund', args: { amount: 1 } });
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, 'store_error');
  });

  test('stop switch: a suspended agent is denied until resumed', async () => {
    const state = new MemoryAgentStateStore();
    const { l } = await layer({ state });
    const act = { agent: 'bot', tool: 'files.write', args: { path: '/tmp/ok/x' } };
    assert.equal((await l.authorize(act)).effect, 'allow');
    await state.suspend('bot', 'ops@acme.com', 'incident 42');
    const d = await l.authorize(act);
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, 'suspended');
    assert.match(d.reason, /incident 42/);
    await state.resume('bot', 'ops@acme.com');
    assert.equal((await l.authorize(act)).effect, 'allow');
    await state.suspend('*', 'ops@acme.com', 'emergency');
    assert.equal((await l.authorize(act)).code, 'suspended');
  });

  test('an unreadable stop switch counts as pressed', async () => {
    const { l } = await layer({
      state: {
        isSuspended: async () => {
          throw new Error('redis down');
        },
      },
    });
    const d = await l.authorize({ agent: 'bot', tool: 'files.write', args: { path: '/tmp/ok/x' } });
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, 'store_error');
  });

  test('approvals: ask creates a request bound to the exact call; the grant is single use', async () => {
    const approvals = memoryApprovalStore();
    const { l } = await layer({ approvals });
    const send = l.guard(async (args: { to: string }) => `sent to ${args.to}`, {
      agent: 'bot',
      tool: 'mail.send',
    });
    let id = '';
    await assert.rejects(send({ to: 'x@example.org' }), (e: unknown) => {
      assert.ok(e instanceof ApprovalRequiredError);
      id = e.approvalId ?? '';
      return true;
    });
    assert.ok(id);
    await assert.rejects(
      approvals.decide(id, { approve: true, approver: 'mallory@acme.com' }, Date.now()),
      /not/,
    );
    await approvals.decide(id, { approve: true, approver: 'lead@acme.com' }, Date.now());
    await assert.rejects(
      send({ to: 'other@example.org' }),
      ApprovalRequiredError,
      'the grant does not cover other arguments',
    );
    assert.equal(await send({ to: 'x@example.org' }), 'sent to x@example.org');
    await assert.rejects(send({ to: 'x@example.org' }), ApprovalRequiredError, 'single use');
    assert.equal(await l.waitForApproval(id, { timeoutMs: 10 }), 'expired');
  });

  test('a broken first policy never starts', async () => {
    await assert.rejects(
      createExecLayer({ policy: { version: 1, agents: { bot: { roles: ['missing'] } } }, store: false }),
      (e: unknown) => e instanceof PolicyError && /unknown role/.test(e.message),
    );
  });

  test('watching: a valid new policy is swapped in; a broken one leaves the old in force', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-watch-'));
    const file = join(dir, 'policy.yaml');
    const v1 = 'version: 1\nagents:\n  bot:\n    rules:\n      - allow: a.x\n';
    writeFileSync(file, v1);
    const events: string[] = [];
    const l = await createExecLayer({
      policy: file,
      store: 'memory:',
      watch: true,
      onEvent: (e) => events.push(e.type),
    });
    const act = (tool: string) => l.authorize({ agent: 'bot', tool, args: {} });
    assert.equal((await act('a.x')).effect, 'allow');
    const waitFor = async (type: string) => {
      for (let i = 0; i < 100 && !events.includes(type); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(events.includes(type), `expected ${type}, got ${events.join(',')}`);
    };
    writeFileSync(file, 'version: 1\nagents:\n  bot:\n    rules:\n      - allow: b.x\n');
    await waitFor('policy_loaded');
    assert.equal((await act('a.x')).effect, 'deny');
    assert.equal((await act('b.x')).effect, 'allow');
    const hash = l.policyHash;
    writeFileSync(file, 'version: 1\nagents:\n  bot:\n    rules:\n      - allw: c.x\n');
    await waitFor('policy_rejected');
    assert.equal(l.policyHash, hash);
    assert.equal((await act('b.x')).effect, 'allow', 'the old policy stays in force');
    assert.match(readFileSync(file, 'utf8'), /allw/);
    await l.close();
  });
});

test('by default every decision is recorded durably in the embedded SQLite store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'execlayer-default-'));
  const url = `sqlite:${join(dir, 'execlayer.db')}`;
  const saved = process.env.EXECLAYER_STORE;
  process.env.EXECLAYER_STORE = url;
  try {
    const l = await createExecLayer({ policy: POLICY });
    const allowed = await l.authorize({ agent: 'bot', tool: 'files.write', args: { path: '/tmp/ok/a' } });
    const denied = await l.authorize({ agent: 'bot', tool: 'files.write', args: { path: '/etc/x' } });
    await l.close();
    const log = await openAuditLog(url);
    const ids = (await log.tail(10)).flatMap((r) =>
      r.event?.type === 'decision' ? [r.event.decision.id] : [],
    );
    assert.deepEqual(ids, [allowed.id, denied.id]);
    assert.equal((await log.verify()).ok, true);
    await log.close();
  } finally {
    if (saved === undefined) delete process.env.EXECLAYER_STORE;
    else process.env.EXECLAYER_STORE = saved;
  }
});

describe('pipeline: approved calls pass the limits', () => {
  const ASKING = {
    version: 1,
    agents: { bot: { roles: ['r'], limits: [{ id: 'hourly', calls: 1, per: 'hour' }] } },
    roles: {
      r: [
        { id: 'mail', ask: 'mail.send' },
        {
          id: 'pay',
          ask: 'pay.refund',
          limit: { id: 'refund-budget', sum: 'args.amount', max: 100, per: 'day' },
        },
      ],
    },
  };

  /** Asks, grants the request as `lead`, and calls again: what the guarded function saw, or the refusal. */
  async function approvedCall(
    approvals: ReturnType<typeof memoryApprovalStore>,
    run: (args: { [k: string]: Json }) => Promise<string>,
    args: { [k: string]: Json },
  ): Promise<string | DeniedError> {
    let id = '';
    await assert.rejects(run(args), (e: unknown) => {
      assert.ok(e instanceof ApprovalRequiredError, `expected an ask, got ${String(e)}`);
      id = e.approvalId ?? '';
      return true;
    });
    await approvals.decide(id, { approve: true, approver: 'lead@acme.com' }, Date.now());
    try {
      return await run(args);
    } catch (e) {
      if (e instanceof DeniedError) return e;
      throw e;
    }
  }

  test('an agent limit of 1 call per hour: the first approved call runs, the second and third are refused', async () => {
    const approvals = memoryApprovalStore();
    const { l, recorder } = await layer({ policy: ASKING, approvals });
    const sent: string[] = [];
    const send = l.guard(
      async (args: { [k: string]: Json }) => {
        sent.push(String(args.to));
        return 'sent';
      },
      { agent: 'bot', tool: 'mail.send' },
    );
    assert.equal(await approvedCall(approvals, send, { to: 'a@example.org' }), 'sent');
    for (const to of ['b@example.org', 'c@example.org']) {
      const r = await approvedCall(approvals, send, { to });
      assert.ok(r instanceof DeniedError, `the approved call to ${to} ran past the limit`);
      assert.equal(r.decision.code, 'limit_exceeded');
      assert.match(r.decision.reason, /limit `hourly` exceeded/);
      assert.ok(r.decision.approvalId, 'the refusal names the approval it used');
    }
    assert.deepEqual(sent, ['a@example.org'], 'the guarded function ran for the first call only');
    await l.flush();
    const recorded = recorder.events.flatMap((e) =>
      e.type === 'decision' && e.decision.code !== 'asked' ? [e.decision.code] : [],
    );
    assert.deepEqual(recorded, ['approval_granted', 'limit_exceeded', 'limit_exceeded']);
  });

  test('a limit on an ask rule is consumed when the approved call runs', async () => {
    const approvals = memoryApprovalStore();
    // Without the agent's hourly limit, so that only the rule's budget counts.
    const policy = { ...ASKING, agents: { bot: { roles: ['r'] } } };
    const { l } = await layer({ policy, approvals });
    const paid: number[] = [];
    const refund = l.guard(
      async (args: { [k: string]: Json }) => {
        paid.push(Number(args.amount));
        return 'paid';
      },
      { agent: 'bot', tool: 'pay.refund' },
    );
    assert.equal(await approvedCall(approvals, refund, { amount: 60 }), 'paid');
    const over = await approvedCall(approvals, refund, { amount: 50 });
    assert.ok(over instanceof DeniedError, 'the budget of the ask rule was not consumed');
    assert.match(over.decision.reason, /limit `refund-budget` exceeded/);
    assert.equal(await approvedCall(approvals, refund, { amount: 40 }), 'paid');
    assert.deepEqual(paid, [60, 40]);
  });

  test('the stop switch comes before the decision: a suspended agent is denied before any approval', async () => {
    const approvals = memoryApprovalStore();
    const state = new MemoryAgentStateStore();
    const { l } = await layer({ policy: ASKING, approvals, state });
    await state.suspend('bot', 'ops@acme.com', 'incident');
    const d = await l.authorize({ agent: 'bot', tool: 'mail.send', args: { to: 'a@example.org' } });
    assert.equal(d.code, 'suspended');
    assert.deepEqual(
      await approvals.list({}, Date.now()),
      [],
      'no approval was requested for a stopped agent',
    );
  });
});
