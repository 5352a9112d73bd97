// The JSON fast path must read exactly what the YAML parser reads from the same JSON text: the same data
// and the same position for every value and key, and it must decline whatever the YAML parser refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseJsonWithPositions } from './json-source.js';
import { type DataPath, parseYaml } from './yaml-source.js';

const LIMITS = { what: 'policy', maxBytes: 4 * 1024 * 1024, maxDepth: 32 };

function paths(v: unknown, at: (string | number)[] = []): DataPath[] {
  const out: DataPath[] = [at];
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) out.push(...paths(x, [...at, i]));
  } else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

test('same data and positions as the YAML parser, for any JSON value in any layout', () => {
  const key = fc
    .string({ maxLength: 6 })
    .filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k));
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.string({ maxLength: 8 }),
      fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0)),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.array(tie('v'), { maxLength: 4 }),
      fc.dictionary(key, tie('v'), { maxKeys: 4 }),
    ),
  })).v;
  fc.assert(
    fc.property(fc.dictionary(key, value, { maxKeys: 5 }), fc.constantFrom(0, 1, 2, '\t'), (doc, indent) => {
      const text = JSON.stringify(doc, null, indent);
      const fast = parseJsonWithPositions(text, 32);
      const slow = parseYaml(text, LIMITS);
      assert.ok(fast, `declined ${text}`);
      assert.ok(slow.ok, `yaml refused ${text}`);
      assert.deepEqual(fast.data, slow.source.data);
      for (const p of paths(doc)) {
        for (const k of [false, true]) {
          const a: number | undefined = fast.offsetOf(p, k);
          const b: number | undefined = slow.source.offsetOf(p, k);
          assert.deepEqual(
            a === undefined ? undefined : fast.position(a),
            b === undefined ? undefined : slow.source.position(b),
            `${JSON.stringify(p)} key=${k} in ${text}`,
          );
        }
      }
    }),
    { numRuns: 300 },
  );
});

test('declines what the YAML parser refuses or reads differently', () => {
  for (const text of [
    '{"a": 1, "a": 2}',
    '{"__proto__": {"x": 1}}',
    '{"constructor": 1}',
    `${'['.repeat(40)}${']'.repeat(40)}`,
    '{"a": 1e999}',
    '{"a": "x\u0001"}',
    "{'a': 1}",
    '{"a": 1,}',
    '{"a": 1} x',
    'a: 1',
  ]) {
    assert.equal(parseJsonWithPositions(text, 32), undefined, text);
  }
});
