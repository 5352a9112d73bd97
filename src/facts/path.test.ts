import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Json } from '../types.js';
import { pathCanonicaliser as c, parsePath } from './path.js';
import { harness, mutate } from './testing.js';

const { cond, facts, refused, verdict } = harness(c);

describe('path facts', () => {
  test('normalises `.`, `//` and trailing slashes lexically', () => {
    assert.deepEqual(facts('/srv//kb/./docs/'), { path: '/srv/kb/docs', segments: 3, traversal: false });
    assert.deepEqual(facts('/'), { path: '/', segments: 0, traversal: false });
    assert.deepEqual(facts('/srv/kb/a/../b'), { path: '/srv/kb/b', segments: 3, traversal: true });
    assert.deepEqual(facts('/../..'), { path: '/', segments: 0, traversal: true });
  });

  test('refuses what a target could read differently', () => {
    refused('', /empty/);
    refused('srv/kb/x', /not absolute/);
    refused('./x', /not absolute/);
    refused('~/x', /starts with `~`/);
    refused('/srv/kb/%2e%2e/etc/passwd', /percent-encoded/);
    refused('/srv/kb%2fsecret', /percent-encoded/);
    refused('/srv/kb/%41', /percent-encoded/);
    refused('/srv/kb/x\u0000.txt', /NUL or control/);
    refused('/srv/kb/x\n', /NUL or control/);
    refused('/srv/kb/\u007f', /NUL or control/);
    refused('/srv\\kb\\x', /backslash/);
    refused('/srv/kb./x', /ending in a dot or space/);
    refused('/srv/kb /x', /ending in a dot or space/);
    refused('/srv/kb/x...', /ending in a dot or space/);
    refused(`/${'a'.repeat(4096)}`, /longer than 4096/);
    refused('/srv/e\u0301', /nfc/);
  });

  test('refuses Windows, UNC, url and IIS forms, and Unicode look-alikes of separators', () => {
    refused('C:\\Windows\\system.ini', /backslash/);
    refused('C:/Windows/system.ini', /not absolute/);
    refused('\\\\server\\share\\x', /backslash/);
    refused('//server/share/x', /starts with `\/\/`/);
    assert.equal(facts('///srv/kb/x').path, '/srv/kb/x'); // three or more leading slashes are one
    refused('file:///etc/passwd', /not absolute \(send the path, not a `file:` url\)/);
    refused('/srv/kb/%c0%af../x', /percent-encoded/);
    refused('/srv/kb/%u002e%u002e/x', /`%u` escape/);
    refused('/srv/kb/\uff0e\uff0e/etc', /look-alike/); // full-width dots: NFKC `..`
    refused('/srv/kb\uff0fx', /look-alike/); // full-width solidus
    refused('/srv/kb/\u2025/etc', /look-alike/); // two-dot leader
    refused('/srv/kb\u2215..\u2215etc', /look-alike/); // division slash: Windows best fit `/`
    refused('/srv/kb/\uff3cx', /look-alike/); // full-width backslash
    refused('/srv/kb/\u200b..', /invisible/);
    refused('/srv/kb/\u202egnp.exe', /invisible/);
    refused('/srv/kb/\ud800x', /surrogate/);
    assert.equal(facts('/srv/kb/caf\u00e9/\u6587\u4ef6.txt').path, '/srv/kb/caf\u00e9/\u6587\u4ef6.txt');
    assert.equal(facts('/srv/kb/\u{1f600}.md').segments, 3);
  });

  test('a percent sign that is not an escape is an ordinary character', () => {
    assert.equal(facts('/srv/kb/100%').path, '/srv/kb/100%');
  });

  test('non-strings are errors, never coerced', () => {
    refused(42, /must be a string, got a number/);
    refused(null, /got null/);
    refused(['/srv/kb'], /got an array/);
    refused({ path: '/srv/kb' }, /got an object/);
    refused(true, /got a boolean/);
  });
});

describe('path conditions', () => {
  const kb = { under: ['/srv/kb'] };

  test('`under` is segment-aware: /srv/kb2 is not under /srv/kb', () => {
    assert.deepEqual(verdict(kb, '/srv/kb'), { ok: true });
    assert.deepEqual(verdict(kb, '/srv/kb/docs/a.md'), { ok: true });
    const r = verdict(kb, '/srv/kb2/a.md');
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.why, /`\/srv\/kb2\/a\.md` is outside the allowed directories: \/srv\/kb/);
    assert.equal(verdict(kb, '/srv/kbx').ok, false);
    assert.equal(verdict(kb, '/srv').ok, false);
  });

  test('`..` that climbs out is judged on the resolved path', () => {
    const r = verdict({ ...kb, allow_traversal: true }, '/srv/kb/../../etc/passwd');
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.why, /`\/etc\/passwd` is outside/);
    assert.equal(verdict({ ...kb, allow_traversal: true }, '/srv/kb/../etc/passwd').ok, false);
    assert.equal(verdict({ ...kb, allow_traversal: true }, '/srv/kb/../kb2').ok, false);
    assert.equal(verdict({ ...kb, allow_traversal: true }, '/srv/kb/a/../b').ok, true);
  });

  test('any `..` is refused by default (a symbolic link makes lexical resolution wrong)', () => {
    const r = verdict(kb, '/srv/kb/link/../x');
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.why, /`\.\.`/);
  });

  test('`not_under` excludes a subtree, segment-aware', () => {
    const cnd = { under: ['/srv/kb'], not_under: ['/srv/kb/private'] };
    assert.equal(verdict(cnd, '/srv/kb/private').ok, false);
    assert.equal(verdict(cnd, '/srv/kb/private/x').ok, false);
    assert.equal(verdict(cnd, '/srv/kb/private2/x').ok, true);
    assert.equal(verdict(cnd, '/srv/kb//private/./x').ok, false);
  });

  test('`/` as a directory covers everything', () => {
    assert.equal(verdict({ under: ['/'] }, '/etc/passwd').ok, true);
  });

  test('compile rejects relative, unnormalised and unknown entries with field-keyed messages', () => {
    const r = c.compile({ under: ['srv/kb', '/srv/kb/', '/srv/../etc', 7], nope: 1, arg: 'path' });
    assert.equal(r.ok, false);
    if (r.ok) return;
    const byField = Object.fromEntries(r.errors.map((e) => [e.field, e.message]));
    assert.match(byField['under[0]'] ?? '', /not absolute/);
    assert.match(byField['under[1]'] ?? '', /write the normalised path `\/srv\/kb`/);
    assert.match(byField['under[2]'] ?? '', /write the normalised path `\/etc`/);
    assert.match(byField['under[3]'] ?? '', /must be strings/);
    assert.match(byField.nope ?? '', /unknown path field `nope`/);
    assert.equal(byField.arg, undefined);
    assert.equal(c.compile('under').ok, false);
    assert.equal(c.compile({ under: '/srv/kb' }).ok, false);
  });

  test('toJson carries the facts for the audit trail', () => {
    assert.deepEqual(c.toJson(facts('/srv/kb/x')), { path: '/srv/kb/x', segments: 3, traversal: false });
  });
});

describe('path warnings', () => {
  const codes = (x: unknown) => (c.warnings?.(cond(x)) ?? []).map((w) => w.code);
  test('names the dangerous defaults an allow rule leaves open', () => {
    assert.deepEqual(codes({}), ['path_anywhere']);
    assert.deepEqual(codes({ not_under: ['/etc'] }), ['path_anywhere']);
    assert.deepEqual(codes({ under: ['/'] }), ['path_anywhere']);
    assert.deepEqual(codes({ under: ['/srv/kb'] }), []);
    assert.deepEqual(codes({ under: ['/srv/kb'], allow_traversal: true }), ['path_traversal']);
  });
});

describe('path properties', () => {
  test('mutating a denied path (case, percent-encoding, separators, dots, Unicode) never gets it inside', () => {
    const k = cond({ under: ['/srv/kb'] });
    const denied = fc.constantFrom('/etc/passwd', '/srv/kb2/x', '/srv/kb/../etc/passwd', '/srv/k/b', '/srv');
    const insert = fc.constantFrom(
      '/',
      '//',
      '/./',
      '/../',
      '..',
      '.',
      ' ',
      '%2e',
      '%2f',
      '%2E%2E',
      '%c0%af',
      '%u002e',
      '\\',
      '\u0000',
      '\uff0e',
      '\uff0f',
      '\u2215',
      '\u200b',
      '~',
      'e\u0301',
      '\n',
    );
    const mutation = fc.record({ at: fc.nat(), text: fc.oneof(insert, fc.constant('')) });
    fc.assert(
      fc.property(denied, fc.array(mutation, { minLength: 1, maxLength: 4 }), (p0, ms) => {
        const p = mutate(p0, ms);
        const f = c.facts(p);
        if (!f.ok || !c.match(k, f.value).ok) return;
        // Allowed only if the plain POSIX reading of the text is /srv/kb or below, with no `..`.
        assert.ok(!p.split('/').includes('..'), `${p0} -> ${p}`);
        assert.ok(/^\/+srv\/+kb(\/|$)/.test(p.replace(/\/\.(?=\/|$)/g, '')), `${p0} -> ${p}`);
      }),
      { numRuns: 3000 },
    );
  });

  const segment = fc.oneof(
    fc.constantFrom('..', '.', '', 'kb', 'kb2', 'srv', 'etc', 'passwd', '%2e', 'a.', 'x y'),
    fc.string({ maxLength: 4 }),
  );
  const pathArb = fc.array(segment, { maxLength: 8 }).map((s) => `/${s.join('/')}`);

  test('if a path matches `under: [/srv/kb]`, its lexical normal form is /srv/kb or below it', () => {
    const cnd = cond({ under: ['/srv/kb'], allow_traversal: true });
    fc.assert(
      fc.property(pathArb, (p) => {
        const f = parsePath(p);
        if (!f.ok) return;
        if (c.match(cnd, f.value).ok) {
          // Independent normaliser: a stack over the raw segments.
          const stack: string[] = [];
          for (const s of p.split('/')) {
            if (s === '..') stack.pop();
            else if (s !== '' && s !== '.') stack.push(s);
          }
          const norm = `/${stack.join('/')}`;
          assert.ok(norm === '/srv/kb' || norm.startsWith('/srv/kb/'), `${p} -> ${norm}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('normalisation is idempotent', () => {
    fc.assert(
      fc.property(pathArb, (p) => {
        const f = parsePath(p);
        if (!f.ok) return;
        const again = parsePath(f.value.path);
        assert.ok(again.ok);
        assert.equal(again.value.path, f.value.path);
      }),
    );
  });

  test('facts never throws on any JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        c.facts(v as Json);
      }),
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        c.facts(s);
      }),
    );
  });
});
