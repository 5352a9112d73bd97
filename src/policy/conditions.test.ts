import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Json } from '../types.js';
import { compileArgConstraint, readArg } from './conditions.js';
import type { ArgConstraint } from './types.js';

/** Compiles a constraint that must be valid and returns its test. */
function check(c: ArgConstraint) {
  const r = compileArgConstraint('x', c);
  assert.ok(r.ok, JSON.stringify(r));
  return r.value.test;
}
const passes = (c: ArgConstraint, v: Json | undefined) => check(c)(v).ok;
/** The reason a value that must fail gives. */
const why = (c: ArgConstraint, v: Json | undefined) => {
  const r = check(c)(v);
  assert.equal(r.ok, false, JSON.stringify(v));
  return r.ok ? '' : r.why;
};
/** The value as a JSON text parses it (what the gateway and the decision API receive). */
const parsed = (text: string) => JSON.parse(text) as Json;

describe('args constraints: numbers', () => {
  test('exclusive bounds `gt`/`lt` refuse the bound itself; `min`/`max` accept it', () => {
    assert.equal(passes({ gt: 0 }, 0), false);
    assert.equal(passes({ gt: 0 }, 0.01), true);
    assert.equal(passes({ min: 0 }, 0), true);
    assert.equal(passes({ lt: 100 }, 100), false);
    assert.equal(passes({ lt: 100 }, 99.99), true);
    assert.equal(passes({ max: 100 }, 100), true);
    assert.equal(passes({ gt: 0, max: 100 }, 100), true);
    assert.match(why({ gt: 0 }, 0), /argument `x` must be > 0/);
    assert.match(why({ lt: 5 }, 5), /argument `x` must be < 5/);
    assert.match(why({ gt: 0 }, '5'), /must be number, got string/);
  });

  test('a number is a JSON number: no string, boolean, list or wrapper object is coerced', () => {
    for (const v of ['5', '5.0', ' 5', '0x5', true, false, null, [5], { $numberInt: '5' }, {}]) {
      assert.equal(passes({ min: 0, max: 10 }, v as Json), false, JSON.stringify(v));
      assert.equal(passes({ type: 'integer' }, v as Json), false, JSON.stringify(v));
    }
    assert.equal(passes({ min: 0 }, undefined), false);
  });

  test('decided on the parsed double: -0 is 0, 1e-400 is 0, 1.0 is the integer 1', () => {
    assert.equal(passes({ gt: 0 }, parsed('-0')), false);
    assert.equal(passes({ min: 0 }, parsed('-0')), true);
    assert.equal(passes({ equals: 0 }, parsed('-0')), true);
    assert.equal(passes({ gt: 0 }, parsed('1e-400')), false);
    assert.equal(passes({ type: 'integer' }, parsed('1.0')), true);
    assert.equal(passes({ type: 'integer' }, parsed('1.5')), false);
    // 100.00000000000001 is a double above 100; one more 0 rounds to exactly 100.
    assert.equal(passes({ max: 100 }, parsed('100.00000000000001')), false);
    assert.equal(passes({ max: 100 }, parsed('100.000000000000001')), true);
    assert.equal(passes({ lt: 100 }, parsed('100.000000000000001')), false);
  });

  test('overflow to Infinity and integers beyond 2^53 are refused', () => {
    assert.equal(parsed('1e309'), Number.POSITIVE_INFINITY);
    assert.equal(passes({ min: 0 }, parsed('1e309')), false);
    assert.equal(passes({ max: 0 }, parsed('-1e309')), false);
    assert.equal(passes({ type: 'number' }, parsed('1e308')), true);
    assert.equal(passes({ type: 'number' }, Number.NaN), false);
    assert.equal(passes({ type: 'integer' }, parsed('9007199254740991')), true);
    // 9007199254740993 parses to ...992: a target with exact integers would see another number.
    assert.equal(passes({ type: 'integer' }, parsed('9007199254740993')), false);
    assert.equal(passes({ type: 'integer', min: 0 }, parsed('1e300')), false);
  });

  test('bounds need a numeric type and must be finite', () => {
    const r = compileArgConstraint('x', { type: 'string', gt: 0 });
    assert.ok(!r.ok && /need type number or integer, not string/.test(r.error));
    const inf = compileArgConstraint('x', { lt: Number.POSITIVE_INFINITY });
    assert.ok(!inf.ok && /`lt` must be a finite number/.test(inf.error));
  });

  test('contradictory bounds are reported as never matching', () => {
    const never = (c: ArgConstraint) => {
      const r = compileArgConstraint('x', c);
      assert.ok(r.ok);
      return r.neverMatches;
    };
    assert.match(never({ min: 5, max: 1 }) ?? '', /admit no number/);
    assert.match(never({ gt: 5, lt: 5 }) ?? '', /admit no number/);
    assert.match(never({ gt: 5, max: 5 }) ?? '', /admit no number/);
    assert.match(never({ min: 5, lt: 5 }) ?? '', /admit no number/);
    assert.match(never({ type: 'integer', gt: 1, lt: 2 }) ?? '', /no whole number/);
    assert.equal(never({ min: 5, max: 5 }), undefined);
    assert.equal(never({ type: 'integer', gt: 1, lt: 3 }), undefined);
    assert.equal(never({ gt: 0, min: -1, max: 1 }), undefined);
  });
});

describe('args constraints: presence, strings, lists', () => {
  test('`present: false` means the key is absent: an explicit null is a value and is refused', () => {
    assert.equal(passes({ present: false }, undefined), true);
    assert.equal(passes({ present: false }, null), false);
    assert.equal(passes({ present: false }, ''), false);
    assert.equal(passes({ type: 'null' }, null), true);
    assert.equal(passes({ type: 'null' }, undefined), false);
  });

  test('`max_length` without `type` is a string length; a list passes only with `type: array`', () => {
    assert.equal(passes({ max_length: 3 }, 'abc'), true);
    assert.equal(passes({ max_length: 3 }, 'abcd'), false);
    // A one-item list holding a long string must not pass a string length limit.
    assert.equal(passes({ max_length: 3 }, ['abcdefgh']), false);
    assert.equal(passes({ type: 'array', max_length: 2 }, [1, 2]), true);
    assert.equal(passes({ type: 'array', max_length: 2 }, [1, 2, 3]), false);
    // Length is in UTF-16 code units: an emoji counts 2, so a limit is never looser than in code points.
    assert.equal(passes({ max_length: 1 }, '\u{1f600}'), false);
  });

  test('`equals` and `in` compare strictly', () => {
    assert.equal(passes({ equals: 5 }, '5'), false);
    assert.equal(passes({ equals: true }, 'true'), false);
    assert.equal(passes({ in: [1, 2] }, [1]), false);
    assert.equal(passes({ in: ['a'] }, 'A'), false);
    assert.equal(passes({ in: ['a', 1] }, 1), true);
  });

  test('`glob` needs a string and refuses other types at load and at decision', () => {
    const r = compileArgConstraint('x', { type: 'number', glob: '*' });
    assert.ok(!r.ok && /`glob` needs type string/.test(r.error));
    assert.equal(passes({ glob: 'a*' }, 'abc'), true);
    assert.equal(passes({ glob: 'a*' }, ['abc']), false);
  });

  test('readArg reads own properties only, never the prototype chain', () => {
    const args = JSON.parse('{"a":{"b":1},"__proto__":{"x":1}}') as { [k: string]: Json };
    assert.equal(readArg(args, 'a.b'), 1);
    assert.equal(readArg(args, 'constructor'), undefined);
    assert.equal(readArg(args, 'a.constructor'), undefined);
    assert.equal(readArg(args, 'a.toString'), undefined);
  });
});

describe('args constraints: properties', () => {
  test('no non-number ever satisfies a numeric bound', () => {
    const c = check({ min: -1e9, max: 1e9 });
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        if (c(v as Json).ok) assert.ok(typeof v === 'number' && Number.isFinite(v), JSON.stringify(v));
      }),
    );
  });

  test('`gt`/`lt` agree with the comparison on every double', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.double(), (b, v) => {
        fc.pre(Number.isFinite(b));
        assert.equal(passes({ gt: b }, v), Number.isFinite(v) && v > b);
        assert.equal(passes({ lt: b }, v), Number.isFinite(v) && v < b);
      }),
    );
  });
});
