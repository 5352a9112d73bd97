import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalisers, factsReady, initFacts } from './index.js';

// This file runs in its own process, so the parsers start unloaded.
test('before initFacts(), sql and shell facts fail closed with a clear error', () => {
  assert.equal(factsReady(), false);
  assert.deepEqual(canonicalisers.sql.facts('SELECT 1'), { ok: false, error: 'sql parser not initialised' });
  assert.deepEqual(canonicalisers.shell.facts('ls'), { ok: false, error: 'shell parser not initialised' });
  // The pure-TypeScript canonicalisers need no initialisation.
  assert.equal(canonicalisers.path.facts('/srv/kb').ok, true);
});

test('initFacts() loads both parsers once and is idempotent, also when called concurrently', async () => {
  await Promise.all([initFacts(), initFacts()]);
  await initFacts();
  assert.equal(factsReady(), true);
  const r = canonicalisers.sql.facts('SELECT * FROM customers');
  assert.ok(r.ok);
  const s = canonicalisers.shell.facts('ls -la');
  assert.ok(s.ok);
});

test('every canonicaliser is registered under its own name and reads sensible default arguments', () => {
  for (const [key, c] of Object.entries(canonicalisers)) {
    assert.equal(c.name, key);
    assert.ok(c.defaultArgs.length > 0, key);
  }
  assert.deepEqual([...canonicalisers.email.defaultArgs], ['to', 'cc', 'bcc', 'recipients']);
});

test('every canonicaliser refuses non-string values and rejects unknown condition fields, ignoring arg/args', async () => {
  await initFacts();
  for (const [key, c] of Object.entries(canonicalisers)) {
    for (const v of [1, true, null, [], {}])
      assert.equal(c.facts(v).ok, false, `${key} ${JSON.stringify(v)}`);
    const bad = c.compile({ arg: 'x', args: ['y'], bogus: 1 });
    assert.equal(bad.ok, false, key);
    if (!bad.ok)
      assert.deepEqual(
        bad.errors.map((e) => e.field),
        ['bogus'],
        key,
      );
    assert.equal(c.compile({ arg: 'x' }).ok, true, key);
    assert.equal(c.compile(null).ok, false, key);
    assert.equal(c.compile([]).ok, false, key);
  }
});
