import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CSV_COLUMNS, csvCell, csvHeader, csvLine, jsonLine } from './export.js';
import type { AuditRecord } from './record.js';
import { decisionEvent } from './testing.js';

test('cells that a spreadsheet would run as a formula are defused', () => {
  for (const bad of ['=1+1', '+SUM(A1)', '-2+3', '@cmd', '\tx', '\rx']) {
    assert.equal(csvCell(bad).replace(/^"|"$/g, '')[0], "'", bad);
  }
  assert.equal(csvCell('=HYPERLINK("http://x")'), '"\'=HYPERLINK(""http://x"")"');
  assert.equal(csvCell('plain'), 'plain');
});

test('quotes, commas and line breaks are quoted per RFC 4180; null is empty', () => {
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell('two\nlines'), '"two\nlines"');
  assert.equal(csvCell(null), '');
  assert.equal(csvCell({ k: [1, 'x'] }), '"{""k"":[1,""x""]}"');
});

test('a record becomes one CSV line with every column, and one lossless JSON line', () => {
  const event = decisionEvent(3, { agent: '=evil()', args: { note: 'a,"b"\nc' } });
  const r: AuditRecord = {
    v: 1,
    seq: 3,
    time: Date.UTC(2025, 0, 2),
    type: 'decision',
    hash: 'ab'.repeat(32),
    event,
  };
  const line = csvLine(r);
  assert.ok(line.endsWith('\r\n'));
  assert.equal(csvHeader().trim().split(',').length, CSV_COLUMNS.length);
  assert.ok(line.startsWith("3,2025-01-02T00:00:00.000Z,decision,,dec_00000003,'=evil()"));
  assert.ok(line.includes('"{""note"":""a,\\""b\\""\\nc""}"'), line);
  assert.deepEqual(JSON.parse(jsonLine(r)), r);
});
