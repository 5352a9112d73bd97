import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPolicyObject } from '../policy/load.js';
import type { Conditions } from '../policy/types.js';
import { type Containment, contains } from './contain.js';

/** Compiles `when`/`unless` blocks with the policy checker, as the gap report does. */
function side(when?: Conditions, unless?: Conditions, effect: 'allow' | 'ask' = 'allow') {
  const r = loadPolicyObject({
    version: 1,
    agents: {
      a: { rules: [{ id: 'r', [effect]: 't', ...(when ? { when } : {}), ...(unless ? { unless } : {}) }] },
    },
  });
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems));
  const rule = r.policy.agents.get('a')?.rules[0];
  assert.ok(rule);
  return {
    when: { ...(rule.when ? { compiled: rule.when } : {}), ...(when ? { raw: when } : {}) },
    unless: { ...(rule.unless ? { compiled: rule.unless } : {}), ...(unless ? { raw: unless } : {}) },
    effect,
  };
}

const c = (declared: ReturnType<typeof side>, permitted: ReturnType<typeof side>): Containment =>
  contains(declared, permitted);

test('numeric intervals: €1,000 permitted where €200 was declared, and the reverse', () => {
  const declared = side({ args: { amount: { type: 'number', gt: 0, max: 200 } } });
  const wide = c(declared, side({ args: { amount: { type: 'number', gt: 0, max: 1000 } } }));
  assert.deepEqual(wide, {
    kind: 'exceeds',
    excess: ['amount: permitted > 0, <= 1000; declared > 0, <= 200'],
  });
  assert.equal(
    c(declared, side({ args: { amount: { type: 'integer', min: 1, lt: 200 } } })).kind,
    'contained',
  );
  assert.equal(c(declared, side({ args: { amount: { in: [5, 200] } } })).kind, 'contained');
  assert.deepEqual(c(declared, side({ args: { amount: { in: [5, 201] } } })), {
    kind: 'exceeds',
    excess: ['amount: permits [201]; declared > 0, <= 200'],
  });
  // `min: 0` admits 0, which `gt: 0` refuses: not contained, by exactly the boundary.
  assert.equal(c(declared, side({ args: { amount: { min: 0, max: 100 } } })).kind, 'exceeds');
  assert.equal(c(declared, side()).kind, 'exceeds', 'an unconstrained rule exceeds any bound');
  // A string is never a number: a rule on strings is not within a numeric declaration.
  assert.equal(
    c(side({ args: { amount: { type: 'number' } } }), side({ args: { amount: { type: 'string' } } })).kind,
    'exceeds',
  );
});

test('paths are compared segment-aware, with exclusions', () => {
  const declared = side({ path: { under: ['/srv/kb'] } });
  assert.equal(c(declared, side({ path: { under: ['/srv/kb/public'] } })).kind, 'contained');
  assert.deepEqual(c(declared, side({ path: { under: ['/srv/kb2'] } })), {
    kind: 'exceeds',
    excess: ['path: permitted under [/srv/kb2]; declared under [/srv/kb]'],
  });
  const excl = side({ path: { under: ['/srv'], not_under: ['/srv/secret'] } });
  assert.equal(c(excl, side({ path: { under: ['/srv/kb'] } })).kind, 'contained');
  assert.equal(c(excl, side({ path: { under: ['/srv'], not_under: ['/srv/secret'] } })).kind, 'contained');
  assert.equal(c(excl, side({ path: { under: ['/srv'] } })).kind, 'exceeds');
  assert.equal(c(excl, side({ path: { under: ['/srv/secret/x'] } })).kind, 'exceeds');
  // A rule reading fewer arguments than the declaration leaves the others unconstrained.
  assert.equal(c(declared, side({ path: { arg: 'path', under: ['/srv/kb'] } })).kind, 'exceeds');
});

test('hosts, schemes and ports; label-aware wildcards', () => {
  const declared = side({ url: { hosts: ['*.acme.com'], schemes: ['https'] } });
  assert.equal(
    c(declared, side({ url: { hosts: ['api.acme.com', '*.eu.acme.com'], schemes: ['https'] } })).kind,
    'contained',
  );
  assert.equal(
    c(declared, side({ url: { hosts: ['acme.com'], schemes: ['https'] } })).kind,
    'exceeds',
    '`*.acme.com` does not admit acme.com itself',
  );
  assert.deepEqual(c(declared, side({ url: { hosts: ['api.acme.com'] } })), {
    kind: 'exceeds',
    excess: ['url: permits schemes [http]; declared [https]'],
  });
  assert.equal(
    c(declared, side({ url: { hosts: ['api.acme.com'], schemes: ['https'], ports: [443, 8443] } })).kind,
    'exceeds',
  );
});

test('sql statement kinds and tables; email domains', () => {
  const declared = side({ sql: { statements: ['select'], tables: ['customers', 'tickets'] } });
  assert.equal(
    c(declared, side({ sql: { statements: ['select'], tables: ['public.customers'] } })).kind,
    'contained',
  );
  assert.deepEqual(c(declared, side({ sql: { statements: ['select', 'update'], tables: ['customers'] } })), {
    kind: 'exceeds',
    // A rule that may update is not read-only, so it may also call any function.
    excess: [
      'sql: permits statements [update]; declared [select]',
      'sql: any function permitted; declared [the vetted built-ins]',
    ],
  });
  assert.equal(
    c(declared, side({ sql: { statements: ['select'], tables: ['other.customers'] } })).kind,
    'exceeds',
  );
  const mail = side({ email: { to_domains: ['acme.com'] } });
  assert.equal(c(mail, side({ email: { to: ['bob@acme.com'] } })).kind, 'contained');
  assert.equal(c(mail, side({ email: { to_domains: ['*.acme.com'] } })).kind, 'exceeds');
});

test('CEL, unless and oversight: unverifiable is never aligned', () => {
  const cel = side({ cel: 'args.amount < 100' });
  assert.equal(c(cel, side({ args: { amount: { max: 50 } } })).kind, 'unverifiable');
  assert.equal(
    c(cel, side({ cel: 'args.amount < 100' })).kind,
    'contained',
    'the same expression is the same set',
  );
  // The rule's CEL may remove the excess: that cannot be shown, so it is not called over-permitted either.
  const declared = side({ args: { amount: { max: 100 } } });
  assert.equal(
    c(declared, side({ args: { amount: { max: 500 } }, cel: 'args.amount < 100' })).kind,
    'unverifiable',
  );
  assert.equal(
    c(declared, side({ args: { amount: { max: 50 } }, cel: 'args.amount > 1' })).kind,
    'contained',
  );
  const ask = side({ args: { amount: { gt: 100 } } }, undefined, 'ask');
  assert.deepEqual(c(ask, side({ args: { amount: { gt: 100 } } })), {
    kind: 'exceeds',
    excess: ['runs without approval; declared to need human approval'],
  });
  assert.equal(c(ask, side({ args: { amount: { gt: 200 } } }, undefined, 'ask')).kind, 'contained');
  const internal = side(undefined, { email: { to_domains: ['acme.com'] } }, 'ask');
  assert.equal(
    c(internal, side(undefined, { email: { to_domains: ['acme.com'] } }, 'ask')).kind,
    'contained',
  );
  assert.equal(c(internal, side(undefined, undefined, 'ask')).kind, 'exceeds');
});
