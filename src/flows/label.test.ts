import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileJsonPath, select } from './jsonpath.js';
import { below, covered, join, type Label, makeLabel, parseLabel, sameLabel, top } from './label.js';

const LEVELS = ['public', 'internal', 'confidential', 'secret'];
const reader = fc.constantFrom('acme.com', 'bob@acme.com', 'eve@evil.com', 'evil.com', 'x.acme.com', 'svc');
const label: fc.Arbitrary<Label> = fc
  .record({
    integrity: fc.constantFrom('trusted' as const, 'untrusted' as const),
    level: fc.integer({ min: 0, max: 3 }),
    readers: fc.option(fc.array(reader, { maxLength: 3 }), { nil: undefined }),
    tags: fc.array(fc.constantFrom('pii', 'finance', 'web'), { maxLength: 2 }),
  })
  .map(makeLabel);

describe('labels form a join semilattice', () => {
  it('join is commutative, associative and idempotent (replicas converge whatever the order)', () => {
    fc.assert(
      fc.property(label, label, label, (a, b, c) => {
        assert.ok(sameLabel(join(a, b), join(b, a)));
        assert.ok(sameLabel(join(join(a, b), c), join(a, join(b, c))));
        assert.ok(sameLabel(join(a, a), a));
      }),
      { numRuns: 500 },
    );
  });

  it('join only raises: both sides are below the join', () => {
    fc.assert(
      fc.property(label, label, (a, b) => below(a, join(a, b)) && below(b, join(a, b))),
      { numRuns: 500 },
    );
  });

  it('readers meet: a domain and an address under it keep the address; label-aware suffixes', () => {
    const a = makeLabel({ integrity: 'trusted', level: 0, readers: ['acme.com'] });
    const b = makeLabel({ integrity: 'trusted', level: 0, readers: ['bob@acme.com', 'eve@evil.com'] });
    assert.deepEqual(join(a, b).readers, ['bob@acme.com']);
    assert.ok(covered('x.acme.com', ['acme.com']));
    assert.ok(!covered('evilacme.com', ['acme.com']));
    assert.ok(!covered('bob@acme.com.evil.com', ['acme.com']));
    assert.ok(covered('Bob@ACME.com', ['acme.com']));
    assert.ok(!covered('anyone@acme.com', ['bob@acme.com']));
    assert.ok(!covered('a@b.c', top(4).readers));
  });

  it('parses upstream labels strictly: unknown levels and odd shapes are refused', () => {
    assert.deepEqual(parseLabel({ integrity: 'untrusted', level: 'secret' }, LEVELS), {
      integrity: 'untrusted',
      level: 3,
      tags: [],
    });
    assert.equal(parseLabel({ level: 'topsecret' }, LEVELS), undefined);
    assert.equal(parseLabel({ integrity: 'meh' }, LEVELS), undefined);
    assert.equal(parseLabel({ readers: 'x' }, LEVELS), undefined);
    assert.equal(parseLabel([], LEVELS), undefined);
  });
});

describe('JSONPath subset', () => {
  const doc = { a: [{ b: 1 }, { b: 2 }], 'odd key': { c: 'x' } };
  const sel = (p: string) => {
    const r = compileJsonPath(p);
    assert.ok(r.ok, p);
    return select(r.value, doc).map((l) => l.value);
  };
  it('selects members, indices, wildcards and quoted keys', () => {
    assert.deepEqual(sel('$.a[*].b'), [1, 2]);
    assert.deepEqual(sel('$.a[1]'), [{ b: 2 }]);
    assert.deepEqual(sel("$['odd key'].c"), ['x']);
    assert.deepEqual(sel('$.*'), [doc.a, doc['odd key']]);
    assert.deepEqual(sel('$'), [doc]);
    assert.deepEqual(sel('$.a[5].b'), []);
  });
  it('never reads the prototype chain', () => {
    assert.deepEqual(sel('$.constructor'), []);
    assert.deepEqual(sel('$.a.length'), []);
  });
});
