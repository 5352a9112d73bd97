import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { canonicalJson, digest } from './canonical-json.js';

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
      assert.equal(digest(reversed), digest(obj));
      assert.deepEqual(JSON.parse(canonicalJson(obj)), JSON.parse(JSON.stringify(obj)));
    }),
  );
  assert.notEqual(digest({ a: 1 }), digest({ a: '1' }));
});
