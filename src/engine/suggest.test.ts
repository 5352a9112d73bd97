import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { parse } from 'yaml';
import { initFacts } from '../facts/index.js';
import { loadPolicyText } from '../policy/load.js';
import type { Json } from '../types.js';
import { compile } from './compile.js';
import { directories, type Observation, suggestPolicy } from './suggest.js';

before(() => initFacts());

const T0 = Date.parse('2026-12-01T10:00:00Z');
const obs = (agent: string, tool: string, args: { [k: string]: Json }, i = 0): Observation => ({
  agent,
  tool,
  args,
  time: T0 + i * 60_000,
});

const traffic: Observation[] = [
  obs('desk', 'files.read_text_file', { path: '/srv/kb/a.md' }, 0),
  obs('desk', 'files.read_text_file', { path: '/srv/kb/sub/b.md' }, 1),
  obs('desk', 'files.list_directory', { path: '/srv/kb' }, 2),
  obs('desk', 'db.query', { sql: 'SELECT name FROM customers WHERE id = 1' }, 3),
  obs('desk', 'db.query', { sql: 'SELECT * FROM tickets' }, 4),
  obs('desk', 'email.send', { to: 'ann@acme.com', subject: 'hi', body: 'x' }, 5),
  obs('desk', 'email.send', { to: 'Bob <bob@ACME.com>', subject: 'hi', body: 'y' }, 6),
  obs('desk', 'pay.refund', { amount: 12.5, order: 'o-1' }, 7),
  obs('desk', 'pay.refund', { amount: 40, order: 'o-2' }, 8),
  obs('desk', 'web.fetch', { url: 'https://docs.acme.com/a' }, 9),
  obs('ops', 'shell.run', { command: 'ls -la /var/log' }, 10),
];

test('the draft allows every observed call, validates without warnings, and nothing else', () => {
  const s = suggestPolicy(traffic);
  const loaded = loadPolicyText(s.text, 'draft.yaml');
  assert.ok(loaded.ok, JSON.stringify(loaded));
  assert.deepEqual(loaded.warnings, []);
  assert.deepEqual(s.loosened, []);
  const engine = compile(loaded.policy);
  for (const o of traffic) {
    const d = engine.decide({ agent: o.agent, tool: o.tool, args: o.args });
    assert.equal(d.wouldBe ?? d.effect, 'allow', `${o.tool} ${JSON.stringify(o.args)}: ${d.reason}`);
  }
  const refused: [string, string, { [k: string]: Json }][] = [
    ['desk', 'files.read_text_file', { path: '/etc/passwd' }],
    ['desk', 'files.read_text_file', { path: '/srv/kb2/x' }],
    ['desk', 'files.write_file', { path: '/srv/kb/a.md', content: 'x' }],
    ['desk', 'db.query', { sql: 'DELETE FROM customers' }],
    ['desk', 'db.query', { sql: 'SELECT * FROM payroll' }],
    ['desk', 'email.send', { to: 'eve@evil.com', subject: 'hi', body: 'x' }],
    ['desk', 'pay.refund', { amount: 400, order: 'o-3' }],
    ['desk', 'pay.refund', { amount: '12', order: 'o-3' }],
    ['desk', 'web.fetch', { url: 'https://evil.com/' }],
    ['desk', 'web.fetch', { url: 'http://docs.acme.com/a' }],
    ['ops', 'shell.run', { command: 'rm -rf /' }],
    ['ops', 'shell.run', { command: 'ls; rm x' }],
    ['ops', 'files.read_text_file', { path: '/srv/kb/a.md' }],
    ['nobody', 'db.query', { sql: 'SELECT * FROM tickets' }],
  ];
  for (const [agent, tool, args] of refused) {
    const d = engine.decide({ agent, tool, args });
    assert.equal(d.wouldBe ?? d.effect, 'deny', `${agent} ${tool} ${JSON.stringify(args)} was allowed`);
  }
});

test('the draft is in shadow mode unless told otherwise, and every rule says its evidence', () => {
  const s = suggestPolicy(traffic);
  assert.equal((parse(s.text) as { mode: string }).mode, 'shadow');
  assert.match(
    s.text,
    /# 2 calls, first 2026-12-01T10:00:00Z, last 2026-12-01T10:01:00Z\n\s+- id: use-files.read_text_file/,
  );
  assert.equal((parse(suggestPolicy(traffic, { mode: 'enforce' }).text) as { mode: string }).mode, 'enforce');
  assert.equal(s.rules, 7);
  assert.equal(s.agents, 2);
});

test('constraints that would refuse an observed call are left out', () => {
  // One call has a path the path canonicaliser refuses (`..`): no path condition can allow it.
  const odd = [
    obs('a', 'files.read_text_file', { path: '/srv/kb/a.md' }),
    obs('a', 'files.read_text_file', { path: '/srv/kb/../x' }),
  ];
  const s = suggestPolicy(odd);
  const loaded = loadPolicyText(s.text, 'd.yaml');
  assert.ok(loaded.ok);
  const engine = compile(loaded.policy);
  for (const o of odd)
    assert.equal(engine.decide({ agent: o.agent, tool: o.tool, args: o.args }).effect, 'allow');
});

test('directories: parents of files, listed directories themselves, nested ones folded', () => {
  assert.deepEqual(directories(['/srv/kb/a.md', '/srv/kb/sub/b.md']), ['/srv/kb']);
  assert.deepEqual(directories(['/srv/kb', '/srv/kb/a.md']), ['/srv/kb']);
  assert.deepEqual(directories(['/srv/kb/a', '/home/x/y']), ['/home/x', '/srv/kb']);
  assert.deepEqual(directories(['/a']), ['/']);
});
