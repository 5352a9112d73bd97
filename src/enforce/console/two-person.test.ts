import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryApprovalStore } from '../../approvals/memory.js';
import { ApprovalError } from '../../approvals/types.js';
import { twoPersonApprovals } from './two-person.js';

const NOW = 1_700_000_000_000;

async function pending() {
  const inner = memoryApprovalStore();
  const store = twoPersonApprovals(inner);
  const a = await inner.request(
    {
      agent: 'bot',
      tool: 'payments.refund',
      argsDigest: 'd'.repeat(64),
      policy: 'p'.repeat(64),
      rule: 'refunds',
      reason: 'needs approval',
      args: { amount: 90 },
      ttlMs: 60_000,
      uses: 1,
      approvers: [],
    },
    NOW,
  );
  return { inner, store, id: a.id };
}

async function refused(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof ApprovalError && e.code === code);
}

test('a grant needs two different approvers; the first approval alone grants nothing', async () => {
  const { store, id } = await pending();
  const first = await store.decide(id, { approve: true, approver: 'ada', note: 'ok' }, NOW + 1);
  assert.equal(first.status, 'pending');
  assert.equal(store.firstApprover(id), 'ada');
  assert.equal(
    await store.consumeGrant(
      { agent: 'bot', tool: 'payments.refund', argsDigest: 'd'.repeat(64), policy: 'p'.repeat(64) },
      NOW + 2,
    ),
    undefined,
  );
  await refused(store.decide(id, { approve: true, approver: 'ada' }, NOW + 3), 'not_allowed');
  const second = await store.decide(id, { approve: true, approver: 'bob', note: 'agreed' }, NOW + 4);
  assert.equal(second.status, 'granted');
  assert.equal(second.approver, 'bob');
  assert.equal(second.note, 'approved by ada and bob: agreed');
});

test('the agent itself can never be one of the two; a denial by either decides at once', async () => {
  const { store, id } = await pending();
  await refused(store.decide(id, { approve: true, approver: 'bot' }, NOW + 1), 'not_allowed');
  assert.equal(store.firstApprover(id), undefined);
  await store.decide(id, { approve: true, approver: 'ada' }, NOW + 2);
  const denied = await store.decide(id, { approve: false, approver: 'bob', note: 'no' }, NOW + 3);
  assert.equal(denied.status, 'denied');
  await refused(store.decide(id, { approve: true, approver: 'carol' }, NOW + 4), 'already_decided');
});
