// The query-column check agrees with `indexColumns` (the sealer's own derivation) on every event type and on
// arguments built to confuse a scanner, and finds each edited column.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalJson } from '../canonical-json.js';
import type { AuditEvent } from '../types.js';
import { checkColumns, encodeColumns, resetColumns } from './index-scan.js';
import { type IndexColumns, indexColumns } from './record.js';
import { decisionEvent, oneOfEach } from './testing.js';

/** Run the check on one event with the given columns (default: the true ones). */
function check(event: AuditEvent | null, cols?: Partial<IndexColumns>): 0 | 1 {
  const truth: IndexColumns =
    event === null
      ? { type: null, agent: null, tool: null, effect: null, rule: null, decisionId: null }
      : indexColumns(event);
  const encoded = encodeColumns([{ index: { ...truth, ...cols } }]);
  resetColumns();
  if (event === null) return checkColumns(encoded, null, 0, 0);
  const bytes = new Uint8Array(Buffer.from(canonicalJson(event), 'utf8'));
  return checkColumns(encoded, bytes, 0, bytes.length);
}

const hostile: AuditEvent[] = [
  // Arguments holding the very keys the scanner looks for, at every depth.
  decisionEvent(1, {
    args: { tool: 'x', agent: 'y', effect: 'allow', type: 'outcome', decision: { effect: 'allow', id: 'z' } },
  }),
  decisionEvent(2, { args: { action: { tool: 'evil', agent: 'evil' }, s: '"tool":"evil"}' } }),
  // Quotes, backslashes, control characters and non-ASCII in names and arguments.
  decisionEvent(3, { agent: 'bot-ü', tool: 'files.write "x"\\y\n', args: { p: '\\"', q: ['}', ']', '{'] } }),
  decisionEvent(4, { rule: null, effect: 'deny', args: [] as never }),
];

test('the check agrees with indexColumns on every event type and on hostile arguments', () => {
  const shadow = decisionEvent(5, { effect: 'allow' });
  shadow.decision.wouldBe = 'deny';
  shadow.decision.mode = 'shadow';
  for (const e of [...oneOfEach(), ...hostile, shadow]) assert.equal(check(e), 1, canonicalJson(e));
  assert.equal(check(null), 1, 'a pruned row has no columns');
});

test('each edited column is found', () => {
  const e = decisionEvent(7, { effect: 'deny', rule: null });
  const edits: Array<Partial<IndexColumns>> = [
    { effect: 'allow' },
    { effect: null },
    { tool: 'other.tool' },
    { agent: 'someone' },
    { type: 'outcome' },
    { type: null },
    { rule: 'support.db-read' },
    { decisionId: 'dec_other' },
    // A value differing only in how it would be escaped is still another value.
    { tool: 'db.query\\' },
  ];
  for (const edit of edits) assert.equal(check(e, edit), 0, JSON.stringify(edit));
  // A pruned row with a column left set is an edit too.
  assert.equal(check(null, { effect: 'deny' }), 0);
  // Escaped names are compared by value, not by how SQLite or JSON.stringify escape them.
  const odd = hostile[2]!;
  assert.equal(check(odd, { tool: 'files.write "x"\\y' }), 0);
  assert.equal(check(odd, { tool: 'files.write "x"\\y\n' }), 1);
});

test('rows are read in order from one columns string, and a damaged one fails closed', () => {
  const events = [decisionEvent(1), decisionEvent(2, { effect: 'deny' }), oneOfEach()[1]!];
  const texts = events.map((e) => Buffer.from(canonicalJson(e), 'utf8'));
  const all = new Uint8Array(Buffer.concat(texts));
  const cols = encodeColumns(events.map((e) => ({ index: indexColumns(e) })));
  const run = (c: Uint8Array) => {
    resetColumns();
    let at = 0;
    return texts.map((t) => {
      const r = checkColumns(c, all, at, at + t.length);
      at += t.length;
      return r;
    });
  };
  assert.deepEqual(run(cols), [1, 1, 1]);
  assert.deepEqual(run(cols.subarray(0, cols.length - 1)), [1, 1, 0]);
  assert.deepEqual(run(new Uint8Array(Buffer.from('["decision"]'))), [0, 0, 0]);
});
