import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Action, Decision, Effect } from '../types.js';
import type { AuditRecord } from './record.js';
import { replay } from './replay.js';
import { decisionEvent } from './testing.js';

function rec(seq: number, tool: string, effect: Effect, rule: string | null): AuditRecord {
  const event = decisionEvent(seq, { tool, effect, rule, args: { n: seq } });
  return { v: 1, seq, time: 1000 + seq, type: 'decision', hash: '00'.repeat(32), event };
}

const candidate: Record<string, [Effect, string | null]> = {
  'db.query': ['deny', 'no-db'],
  'files.write_file': ['allow', 'write'],
  'email.send': ['ask', 'mail-ask'],
  'crm.read': ['allow', 'crm'],
};

const seen: Array<{ action: Action; at: number }> = [];
const decide = (action: Action, at: number): Decision => {
  seen.push({ action, at });
  const [effect, rule] = candidate[action.tool] ?? ['deny', null];
  return {
    id: 'x',
    effect,
    rule,
    reason: `candidate says ${effect}`,
    policy: 'p',
    mode: 'enforce',
    code: 'allowed',
  };
};

test('replay classifies every change, counts per rule and keeps examples', () => {
  const redacted = rec(5, 'crm.read', 'allow', 'crm');
  if (redacted.event?.type === 'decision') redacted.event.action.args = { n: '[redacted]' };
  const records: AuditRecord[] = [
    rec(0, 'db.query', 'allow', 'db'),
    rec(1, 'files.write_file', 'deny', null),
    rec(2, 'email.send', 'allow', 'mail'),
    rec(3, 'crm.read', 'allow', 'crm'),
    {
      v: 1,
      seq: 4,
      time: 1004,
      type: 'outcome',
      hash: '00'.repeat(32),
      event: { type: 'outcome', decisionId: 'd', agent: 'a', tool: 't', ok: true, durationMs: 1 },
    },
    redacted,
    { v: 1, seq: 6, time: 1006, type: null, hash: '00'.repeat(32), event: null },
  ];
  seen.length = 0;
  const r = replay(records, decide);
  assert.deepEqual(
    [r.decisions, r.unchanged, r.newlyAllowed, r.newlyDenied, r.newlyAsked, r.notReplayable, r.errors],
    [5, 1, 1, 1, 1, 1, 0],
  );
  assert.deepEqual(r.byRule['no-db'], { newlyAllowed: 0, newlyDenied: 1, newlyAsked: 0, unchanged: 0 });
  assert.deepEqual(r.byRule.crm, { newlyAllowed: 0, newlyDenied: 0, newlyAsked: 0, unchanged: 1 });
  assert.deepEqual(r.examples.newly_denied[0]?.before, { effect: 'allow', rule: 'db' });
  assert.equal(r.examples.newly_allowed[0]?.seq, 1);
  // The action is rebuilt from the record (not the redacted one) and decided at the recorded time.
  assert.equal(seen.length, 4);
  assert.deepEqual(seen[0], {
    action: {
      agent: 'support-bot',
      tool: 'db.query',
      args: { n: 0 },
      session: 'sess_7f3a',
      onBehalfOf: 'alice@example.com',
    },
    at: 1000,
  });
});

test('shadow-mode records compare by what enforce mode would have done', () => {
  const r0 = rec(0, 'db.query', 'allow', 'db');
  if (r0.event?.type === 'decision') {
    r0.event.decision.mode = 'shadow';
    r0.event.decision.wouldBe = 'deny';
  }
  const r = replay([r0], decide);
  assert.equal(r.unchanged, 1);
});

test('a throwing decide function is counted as an error, not hidden', () => {
  const r = replay([rec(0, 'db.query', 'allow', 'db')], () => {
    throw new Error('boom');
  });
  assert.equal(r.errors, 1);
  assert.equal(r.unchanged + r.newlyDenied + r.newlyAllowed + r.newlyAsked, 0);
});
