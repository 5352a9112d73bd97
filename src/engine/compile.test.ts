import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import { initFacts } from '../facts/index.js';
import { loadPolicyFile, loadPolicyObject } from '../policy/load.js';
import type { Action, Decision } from '../types.js';
import { compile, type Engine } from './compile.js';

let support: Engine;

before(async () => {
  await initFacts();
  const r = await loadPolicyFile(new URL('../../examples/support/policy.yaml', import.meta.url).pathname);
  assert.ok(r.ok, JSON.stringify(r.ok ? '' : r.problems));
  support = compile(r.policy);
});

function engineFor(doc: Record<string, unknown>): Engine {
  const r = loadPolicyObject(doc);
  assert.ok(r.ok, JSON.stringify(r.ok ? '' : r.problems));
  return compile(r.policy);
}

const act = (tool: string, args: Record<string, unknown> = {}, agent = 'support-bot'): Action =>
  ({ agent, tool, args }) as Action;

describe('decide', () => {
  test('a decision carries effect, rule, reason, policy hash, mode and a unique id', () => {
    const d = support.decide(act('db.query', { sql: 'select * from customers' }));
    assert.equal(d.effect, 'allow');
    assert.equal(d.rule, 'read-customers');
    assert.equal(d.code, 'allowed');
    assert.equal(d.policy, support.hash);
    assert.equal(d.mode, 'enforce');
    assert.match(d.id, /^[0-9a-f-]{36}$/);
    assert.notEqual(support.decide(act('db.query', { sql: 'select 1 from customers' })).id, d.id);
    assert.deepEqual((d.facts?.['sql.sql'] as { statements: string[] } | undefined)?.statements, ['select']);
  });

  test('default deny names what the agent may do instead', () => {
    const d = support.decide(act('shell.exec', { command: 'ls' }));
    assert.equal(d.effect, 'deny');
    assert.equal(d.rule, null);
    assert.equal(d.code, 'no_matching_rule');
    assert.match(d.reason, /no capability for `shell.exec`/);
    assert.match(d.reason, /may call `db.query`/);
  });

  test('a refused condition explains what was refused and what is allowed', () => {
    const d = support.decide(act('files.read_text_file', { path: '/etc/passwd' }));
    assert.equal(d.effect, 'deny');
    assert.match(d.reason, /rule `read-kb` allows it only when path: under \[\/srv\/kb\]/);
  });

  test('unknown agents can do nothing', () => {
    const d = support.decide(act('db.query', { sql: 'select * from customers' }, 'someone-else'));
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, 'unknown_agent');
  });

  test('deny beats ask beats allow', () => {
    const e = engineFor({
      version: 1,
      agents: {
        a: {
          rules: [
            { id: 'al', allow: 't.x' },
            { id: 'as', ask: 't.x' },
            { id: 'de', deny: 't.x', when: { args: { n: { min: 5 } } } },
          ],
        },
      },
    });
    assert.equal(e.decide(act('t.x', { n: 1 }, 'a')).effect, 'ask');
    const d = e.decide(act('t.x', { n: 9 }, 'a'));
    assert.equal(d.effect, 'deny');
    assert.equal(d.rule, 'de');
    const e2 = engineFor({
      version: 1,
      agents: {
        a: {
          rules: [
            { id: 'al', allow: 't.x' },
            { id: 'as', ask: 't.x', when: { args: { n: { max: 0 } } } },
          ],
        },
      },
    });
    assert.equal(e2.decide(act('t.x', { n: 1 }, 'a')).effect, 'allow');
  });

  test('an error in a deny rule denies; it is never skipped', () => {
    const e = engineFor({
      version: 1,
      agents: {
        a: { rules: [{ allow: 't.x' }, { id: 'guard', deny: 't.x', when: { cel: 'args.count > 3' } }] },
      },
    });
    assert.equal(e.decide(act('t.x', { count: 1 }, 'a')).effect, 'allow');
    // `count` missing: the CEL condition errors → the deny rule counts as matching.
    const d = e.decide(act('t.x', {}, 'a'));
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, 'evaluation_error');
    assert.equal(d.rule, 'guard');
  });

  test('an unparsable argument denies, with the parser error', () => {
    const d = support.decide(act('db.query', { sql: 'SELEKT 1' }));
    assert.equal(d.effect, 'deny');
    assert.match(d.reason, /could not be evaluated: sql/);
  });

  test('shadow mode reports wouldBe and lets the action proceed', () => {
    const e = engineFor({
      version: 1,
      mode: 'shadow',
      agents: { a: { rules: [{ id: 'no', deny: 't.x' }] } },
    });
    const d = e.decide(act('t.x', {}, 'a'));
    assert.equal(d.effect, 'allow');
    assert.equal(d.wouldBe, 'deny');
    assert.equal(d.mode, 'shadow');
    assert.equal(d.rule, 'no');
    const e2 = engineFor({
      version: 1,
      agents: {
        a: {
          rules: [
            { id: 'no', deny: 't.x', mode: 'shadow' },
            { id: 'hard', deny: 't.y' },
          ],
        },
      },
    });
    assert.equal(e2.decide(act('t.x', {}, 'a')).effect, 'allow');
    assert.equal(e2.decide(act('t.y', {}, 'a')).effect, 'deny');
  });

  test('limits and approval settings travel with the decision', () => {
    const d = support.decide(act('payments.refund', { amount: 20, currency: 'EUR', customer: 'c' }));
    assert.equal(d.effect, 'allow');
    assert.deepEqual(d.limits, [
      {
        id: 'refunds-daily',
        kind: 'sum',
        max: 500,
        windowMs: 86_400_000,
        sumOf: 'args.amount',
        scope: ['agent'],
      },
    ]);
    const a = support.decide(act('email.send', { to: 'x@example.org', subject: 's', body: 'b' }));
    assert.equal(a.effect, 'ask');
    assert.deepEqual(a.approval, { ttlMs: 1_800_000, uses: 1, approvers: ['support-leads'] });
  });

  test('CEL sees args, agent, context, principal and time', () => {
    const e = engineFor({
      version: 1,
      agents: {
        a: {
          owner: 'o@x.com',
          rules: [
            {
              id: 'c',
              allow: 't.x',
              when: {
                cel: "args.n <= 10 && agent.owner == 'o@x.com' && context.env == 'prod' && principal == 'jane' && now > 0",
              },
            },
          ],
        },
      },
    });
    const base = { agent: 'a', tool: 't.x', onBehalfOf: 'jane', context: { env: 'prod' } };
    assert.equal(e.decide({ ...base, args: { n: 3 } }).effect, 'allow');
    assert.equal(e.decide({ ...base, args: { n: 30 } }).effect, 'deny');
    assert.equal(e.decide({ ...base, onBehalfOf: 'bob', args: { n: 3 } }).effect, 'deny');
  });

  test('redaction of audit arguments', () => {
    assert.deepEqual(support.redact('email.send', { to: 'a@acme.com', body: 'secret' }), {
      to: 'a@acme.com',
      body: '[redacted]',
    });
  });
});

describe('hostile actions', () => {
  const denied = (d: Decision, code: string) => {
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, code);
  };

  test('tool names with case, whitespace or Unicode tricks are never allowed', () => {
    const args = { sql: 'select * from customers' };
    denied(support.decide(act('DB.query', args)), 'invalid_action');
    assert.match(support.decide(act('DB.query', args)).reason, /only looks like `db.query`/);
    denied(support.decide(act('db.quety', args)), 'no_matching_rule');
    denied(support.decide(act('db.query ', args)), 'invalid_action');
    denied(support.decide(act(' db.query', args)), 'invalid_action');
    denied(support.decide(act('db.qu\u200bery', args)), 'invalid_action');
    denied(support.decide(act('db．query', args)), 'invalid_action');
    denied(support.decide(act('db.quеry', args)), 'invalid_action'); // Cyrillic е
    denied(support.decide(act('db.query\u0000', args)), 'invalid_action');
    denied(support.decide(act('', args)), 'invalid_action');
    const d = support.decide(act('db.query\n', args));
    assert.match(d.reason, /not valid/);
  });

  test('a case or look-alike variant of a known tool is refused before any rule', () => {
    for (const tool of ['Files.Write_File', 'files.write-file', 'fi1es.write_file', 'files:write_file']) {
      const d = support.decide(act(tool, { path: '/srv/kb/x', content: '' }));
      denied(d, 'invalid_action');
      assert.equal(d.rule, null);
      assert.match(d.reason, /only looks like `files.write_file`/);
    }
  });

  test('non-string tool names and malformed actions', () => {
    for (const bad of [
      null,
      42,
      'db.query',
      [],
      { agent: 'support-bot', tool: 42, args: {} },
      { agent: 'support-bot', tool: ['db.query'], args: {} },
      { agent: 'support-bot', tool: 'db.query' },
      { agent: 'support-bot', tool: 'db.query', args: [] },
      { agent: 'support-bot', tool: 'db.query', args: 'select' },
      { agent: 42, tool: 'db.query', args: {} },
      { agent: 'support-bot', tool: 'db.query', args: { sql: 'select 1 from customers' }, session: 5 },
    ]) {
      denied(support.decide(bad as unknown as Action), 'invalid_action');
    }
  });

  test('__proto__ in arguments is refused; constructor is plain data', () => {
    const args = JSON.parse('{"amount": 5, "currency": "EUR", "__proto__": {"admin": true}}');
    denied(support.decide(act('payments.refund', args)), 'invalid_action');
    const nested = JSON.parse('{"to": "a@acme.com", "meta": {"__proto__": {"x": 1}}}');
    denied(support.decide(act('email.send', nested)), 'invalid_action');
    const e = engineFor({
      version: 1,
      agents: {
        a: { rules: [{ allow: 't.x', when: { cel: '!has(args.constructor) || args.constructor == "c"' } }] },
      },
    });
    assert.equal(e.decide(act('t.x', {}, 'a')).effect, 'allow');
    assert.equal(e.decide(act('t.x', { constructor: 'c' }, 'a')).effect, 'allow');
    assert.equal(e.decide(act('t.x', { constructor: 'd' }, 'a')).effect, 'deny');
  });

  test('non-JSON, non-finite, oversized and deep arguments are refused', () => {
    denied(support.decide(act('payments.refund', { amount: Number.NaN })), 'invalid_action');
    denied(support.decide(act('payments.refund', { amount: Number.POSITIVE_INFINITY })), 'invalid_action');
    denied(support.decide(act('payments.refund', { amount: () => 1 } as never)), 'invalid_action');
    denied(support.decide(act('payments.refund', { when: new Date() } as never)), 'invalid_action');
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = { d: deep };
    denied(
      support.decide(act('db.query', { sql: 'select 1 from customers', deep } as never)),
      'invalid_action',
    );
    const wide = Array.from({ length: 60_000 }, () => 1);
    denied(support.decide(act('db.query', { sql: 'select 1 from customers', wide })), 'invalid_action');
  });

  test('numbers are never coerced from strings', () => {
    // `payments.refund` declares `amount: { type: number }`: a string or a list is refused before any rule.
    denied(support.decide(act('payments.refund', { amount: '5', currency: 'EUR' })), 'invalid_action');
    denied(support.decide(act('payments.refund', { amount: [5], currency: 'EUR' })), 'invalid_action');
  });

  test('decide never throws, whatever it is given', () => {
    fc.assert(
      fc.property(fc.anything(), (raw) => {
        const d = support.decide(raw as Action);
        assert.ok(d.effect === 'deny' || d.effect === 'allow' || d.effect === 'ask');
      }),
      { numRuns: 500 },
    );
  });
});

describe('list filtering', () => {
  test('visible iff some allow/ask rule could match and no unconditional deny covers it', () => {
    assert.equal(support.visible('support-bot', 'db.query'), true);
    assert.equal(support.visible('support-bot', 'email.send'), true);
    assert.equal(support.visible('support-bot', 'files.write_file'), false);
    assert.equal(support.visible('support-bot', 'shell.exec'), false);
    assert.equal(support.visible('nobody', 'db.query'), false);
    assert.equal(support.visible('support-bot', 'DB.QUERY'), false);
  });
});

describe('properties', () => {
  const TOOLS = ['t.a', 't.b', 'u.a'];
  const PATTERNS = [...TOOLS, 't.*', '*.a'];
  const rule = fc.record({
    effect: fc.constantFrom('allow', 'deny', 'ask'),
    pattern: fc.constantFrom(...PATTERNS),
    min: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
    max: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
  });
  type R = { effect: string; pattern: string; min: number | undefined; max: number | undefined };
  const matchesTool = (p: string, t: string) =>
    p === t ||
    (p.startsWith('*') && t.endsWith(p.slice(1))) ||
    (p.endsWith('*') && t.startsWith(p.slice(0, -1)));
  const holds = (r: R, n: number) =>
    (r.min === undefined || n >= r.min) && (r.max === undefined || n <= r.max);
  const toRule = (r: R, i: number) => {
    const c: Record<string, number> = {};
    if (r.min !== undefined) c.min = r.min;
    if (r.max !== undefined) c.max = r.max;
    return {
      id: `r${i}`,
      [r.effect]: r.pattern,
      ...(Object.keys(c).length ? { when: { args: { n: c } } } : {}),
    };
  };

  test('never allowed without a matching allow rule; a matching deny always wins', () => {
    fc.assert(
      fc.property(
        fc.array(rule, { maxLength: 12 }),
        fc.constantFrom(...TOOLS),
        fc.integer({ min: -2, max: 12 }),
        (rules, tool, n) => {
          const e = engineFor({ version: 1, agents: { a: { rules: rules.map(toRule) } } });
          const d = e.decide(act(tool, { n }, 'a'));
          const matching = rules.filter((r) => matchesTool(r.pattern, tool) && holds(r, n));
          const has = (eff: string) => matching.some((r) => r.effect === eff);
          if (has('deny')) assert.equal(d.effect, 'deny');
          else if (has('ask')) assert.equal(d.effect, 'ask');
          else if (has('allow')) assert.equal(d.effect, 'allow');
          else assert.equal(d.effect, 'deny');
          if (d.effect === 'allow') {
            const r = rules[Number(d.rule?.slice(1))] as R;
            assert.ok(r.effect === 'allow' && matchesTool(r.pattern, tool) && holds(r, n));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

test('a move is checked at both ends: every default path argument must satisfy the condition', () => {
  const e = engineFor({
    version: 1,
    agents: { a: { rules: [{ allow: 'files.move_file', when: { path: { under: ['/srv/kb'] } } }] } },
  });
  assert.equal(
    e.decide(act('files.move_file', { source: '/srv/kb/a', destination: '/srv/kb/b' }, 'a')).effect,
    'allow',
  );
  assert.equal(
    e.decide(act('files.move_file', { source: '/srv/kb/a', destination: '/etc/cron.d/x' }, 'a')).effect,
    'deny',
  );
  assert.equal(
    e.decide(act('files.move_file', { source: '/etc/shadow', destination: '/srv/kb/b' }, 'a')).effect,
    'deny',
  );
});

test('max_recipients counts to, cc and bcc together: splitting a mailing across fields does not multiply it', () => {
  const e = engineFor({
    version: 1,
    agents: {
      a: {
        rules: [{ allow: 'mail.send', when: { email: { to_domains: ['acme.com'], max_recipients: 3 } } }],
      },
    },
  });
  const send = (args: Record<string, unknown>) => e.decide(act('mail.send', args, 'a'));
  assert.equal(send({ to: 'a@acme.com, b@acme.com', cc: 'c@acme.com' }).effect, 'allow');
  const split = send({ to: 'a@acme.com, b@acme.com', cc: 'c@acme.com', bcc: 'd@acme.com' });
  assert.equal(split.effect, 'deny');
  assert.match(split.reason, /4 recipients \(`to`, `cc`, `bcc` together\) exceed the maximum of 3/);
  // Items of a list count together too; one address in two fields counts once.
  assert.equal(send({ to: ['a@acme.com', 'b@acme.com', 'c@acme.com', 'd@acme.com'] }).effect, 'deny');
  assert.equal(send({ to: 'a@acme.com, b@acme.com', cc: 'A@ACME.COM', bcc: 'c@acme.com' }).effect, 'allow');
});
