import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { CanonicalJsonError, canonicalJson, jsonDigest } from './canonical-json.js';

test('keys are sorted at every level and there is no whitespace', () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' }, A: null }),
    '{"A":null,"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}',
  );
});

test('keys sort by UTF-16 code units, as RFC 8785 requires', () => {
  assert.equal(
    canonicalJson({ '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3, é: 4 }),
    '{"\\r":2,"é":4,"€":1,"😀":3}',
  );
});

test('numbers and strings take their shortest JSON forms', () => {
  assert.equal(
    canonicalJson([1e21, 0.1, -0, 1.5e-7, 'a"\\\n\u0001']),
    '[1e+21,0.1,0,1.5e-7,"a\\"\\\\\\n\\u0001"]',
  );
});

test('undefined properties are dropped and undefined array items become null, like JSON.stringify', () => {
  assert.equal(canonicalJson({ a: undefined, b: [undefined, 1] }), '{"b":[null,1]}');
});

test('values with no JSON form are refused with their path', () => {
  assert.throws(
    () => canonicalJson({ a: [1, Number.NaN] }),
    (e: unknown) => {
      assert.ok(e instanceof CanonicalJsonError);
      assert.equal(e.path, '$.a[1]');
      return true;
    },
  );
  assert.throws(() => canonicalJson({ n: 1n }), CanonicalJsonError);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(() => canonicalJson(cyclic), /cycle at `\$.self`/);
});

test('the same value always gives the same text, whatever the key order (property)', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const text = canonicalJson(v);
      assert.equal(canonicalJson(JSON.parse(text)), text, 'idempotent through a parse');
      assert.deepEqual(JSON.parse(text), JSON.parse(JSON.stringify(v)), 'same meaning as JSON.stringify');
      const shuffled = JSON.parse(JSON.stringify(v), (_k, val) =>
        val && typeof val === 'object' && !Array.isArray(val)
          ? Object.fromEntries(Object.entries(val).reverse())
          : val,
      );
      assert.equal(canonicalJson(shuffled), text);
    }),
  );
});

test('jsonDigest is sha256 hex of the canonical text', () => {
  assert.equal(jsonDigest({ b: 2, a: 1 }), createHash('sha256').update('{"a":1,"b":2}').digest('hex'));
});

test('integer-like keys sort as strings too (the exact writer handles what JS objects reorder)', () => {
  assert.equal(
    canonicalJson({ b: 1, 10: 'x', 9: 'y', a: { 2: 0, 1: 0 } }),
    '{"10":"x","9":"y","a":{"1":0,"2":0},"b":1}',
  );
});

test('`__proto__` stays an ordinary key', () => {
  const v = JSON.parse('{"z":1,"__proto__":{"x":1}}');
  assert.equal(canonicalJson(v), '{"__proto__":{"x":1},"z":1}');
});

test('functions and symbols are refused rather than silently dropped', () => {
  assert.throws(() => canonicalJson({ f: () => 1 }), /function has no json form at `\$.f`/);
  assert.throws(() => canonicalJson([Symbol('s')]), CanonicalJsonError);
});

/** Reference: JSON.stringify over a copy whose objects have their keys inserted in sorted order. */
function reference(v: unknown): string {
  const sorted = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sorted);
    if (x === null || typeof x !== 'object') return x;
    const out: Record<string, unknown> = Object.create(null);
    for (const k of Object.keys(x).sort()) out[k] = sorted((x as Record<string, unknown>)[k]);
    return out;
  };
  return JSON.stringify(sorted(v));
}

test('matches JSON.stringify over key-sorted objects, byte for byte (property)', () => {
  // Integer-like keys are left out here: JS objects always list them first, so the reference cannot sort them.
  const noIntegerKeys = (v: unknown): boolean =>
    Array.isArray(v)
      ? v.every(noIntegerKeys)
      : v === null || typeof v !== 'object'
        ? true
        : Object.entries(v).every(([k, x]) => !/^(?:0|[1-9]\d*)$/.test(k) && noIntegerKeys(x));
  fc.assert(
    fc.property(fc.jsonValue().filter(noIntegerKeys), (v) => {
      assert.equal(canonicalJson(v), reference(v));
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.string({ unit: 'binary' }),
      (n, s) => {
        assert.equal(canonicalJson([n, s, { [s]: n }]), reference([n, s, { [s]: n }]));
      },
    ),
    { numRuns: 2000 },
  );
});

test('toJSON and boxed primitives serialise as JSON.stringify does', () => {
  const d = new Date(0);
  assert.equal(
    canonicalJson({ d, s: Object('x'), n: Object(2), b: Object(false) }),
    JSON.stringify({ b: false, d, n: 2, s: 'x' }),
  );
  assert.throws(() => canonicalJson({ big: Object(1n) }), CanonicalJsonError);
});

test('keys are sorted at every level, undefined members dropped, no whitespace', () => {
  assert.equal(
    canonicalJson({ b: 1, a: [2, { d: null, c: 'x', e: undefined }] }),
    '{"a":[2,{"c":"x","d":null}],"b":1}',
  );
  assert.equal(canonicalJson({ é: 1, z: 2, A: 3 }), '{"A":3,"z":2,"é":1}');
});

test('equal values hash equal whatever their key order; different values differ', () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (obj) => {
      const reversed = Object.fromEntries(Object.entries(obj).reverse());
      assert.equal(jsonDigest(reversed), jsonDigest(obj));
      assert.deepEqual(JSON.parse(canonicalJson(obj)), JSON.parse(JSON.stringify(obj)));
    }),
  );
  assert.notEqual(jsonDigest({ a: 1 }), jsonDigest({ a: '1' }));
});
