import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Decision } from '../../types.js';
import { DECIDE_RESPONSE_MEMBERS, toDecideResponse } from './decide-response.js';

/** A decision with every member set, as the runtime gives it for a shadow-mode ask with limits. */
function fullDecision(): Decision {
  return {
    id: 'd-1',
    effect: 'allow',
    wouldBe: 'ask',
    rule: 'refunds',
    reason: 'needs approval',
    policy: 'a'.repeat(64),
    mode: 'shadow',
    code: 'asked',
    limits: [
      {
        id: 'refunds/sum',
        kind: 'sum',
        max: 500,
        windowMs: 86_400_000,
        sumOf: 'args.amount',
        scope: ['agent'],
      },
    ],
    approval: { ttlMs: 900_000, uses: 1, approvers: [] },
    roles: ['support'],
    approvalId: 'apr_1',
    retryAfterMs: 1000,
    facts: { 'sql.sql': { statements: ['select'] } },
  };
}

test('the wire form carries every member of a decision, unchanged', () => {
  const d = fullDecision();
  const wire = toDecideResponse(d);
  assert.deepEqual(Object.keys(wire).sort(), Object.keys(DECIDE_RESPONSE_MEMBERS).sort());
  assert.deepEqual(wire, d);
});

test('a member the runtime adds to a decision stays off the wire', () => {
  const d = { ...fullDecision(), internalTicket: { lease: 'l-1' } } as Decision;
  const wire = JSON.parse(JSON.stringify(toDecideResponse(d))) as Record<string, unknown>;
  assert.equal('internalTicket' in wire, false);
});

test('optional members absent from the decision are absent from the wire, not null', () => {
  const { wouldBe, limits, approval, roles, approvalId, retryAfterMs, facts, ...required } = fullDecision();
  const wire = toDecideResponse(required);
  assert.deepEqual(
    Object.keys(wire).sort(),
    Object.entries(DECIDE_RESPONSE_MEMBERS)
      .filter(([, r]) => r === 'required')
      .map(([k]) => k)
      .sort(),
  );
  assert.equal(wire.rule, 'refunds');
});
