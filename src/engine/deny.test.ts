import assert from 'node:assert/strict';
import { test } from 'node:test';
import { denyDecision } from './deny.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('a deny no rule made has no rule, enforce mode, the code and reason given, and a fresh UUID-shaped id', () => {
  const a = denyDecision('store_error', 'denied: cannot read the suspension state (down)', 'p'.repeat(64));
  assert.deepEqual(
    { ...a, id: '' },
    {
      id: '',
      effect: 'deny',
      rule: null,
      reason: 'denied: cannot read the suspension state (down)',
      policy: 'p'.repeat(64),
      mode: 'enforce',
      code: 'store_error',
    },
  );
  assert.match(a.id, UUID);
  const b = denyDecision('internal_error', 'x');
  assert.equal(b.policy, '', 'no policy hash when none is known');
  assert.match(b.id, UUID);
  assert.notEqual(a.id, b.id);
});
