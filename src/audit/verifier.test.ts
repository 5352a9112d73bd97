// The verifier on its own: logs built in memory by the writer's sealer, tampered with in memory, verified
// with no store at all. The store contract suite covers the same findings through every backend.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { canonicalJson } from '../canonical-json.js';
import type { AuditEvent } from '../types.js';
import { keyIdOf, type SigningKey } from './checkpoint.js';
import { Frontier } from './merkle.js';
import {
  GENESIS_HASH,
  type IndexColumns,
  indexColumns,
  PRUNED_COLUMNS,
  recordHash,
  type StoredRecord,
} from './record.js';
import { sealGroups } from './seal.js';
import { decisionEvent, oneOfEach } from './testing.js';
import { type LogState, Verifier, type VerifyFindings, verifyRecords } from './verifier.js';

function signingKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey,
    publicKey,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

const key = signingKey();

/** A log of `events`, sealed as the writer seals them (a checkpoint every `every` and one at the end). */
function sealedLog(events: AuditEvent[], every = 10): { state: LogState; records: StoredRecord[] } {
  const empty = {
    size: 0,
    hash: GENESIS_HASH,
    time: 0,
    frontier: Frontier.empty().serialize(),
    checkpointSize: 0,
    checkpointTime: 0,
    prunedBefore: 0,
  };
  const cols = events.flatMap((e) => Object.values(indexColumns(e)) as Array<string | null>);
  const group = { time: 1_700_000_000_000, texts: events.map((e) => canonicalJson(e)), cols };
  const sealed = sealGroups(empty, [group], true, key, { every, intervalMs: 60_000 });
  return {
    state: { head: sealed.head, checkpoints: sealed.checkpoints, boundedGapsFrom: 0 },
    records: sealed.rows,
  };
}

const verify = (state: LogState, records: StoredRecord[]): VerifyFindings =>
  verifyRecords(state, records, { publicKey: key.publicKey });

const decisions = (n: number) => Array.from({ length: n }, (_, i) => decisionEvent(i));

test('an intact log verifies, whether its records come in one piece or one at a time', () => {
  const { state, records } = sealedLog([...decisions(95), ...oneOfEach()]);
  const whole = verify(state, records);
  assert.equal(whole.ok, true, JSON.stringify(whole.problems));
  assert.equal(whole.size, records.length);
  assert.equal(whole.checkpoints, 11);
  assert.equal(whole.unsignedTail, 0);
  const v = new Verifier(state, { publicKey: key.publicKey });
  for (const r of records) assert.equal(v.push([r]), true);
  assert.deepEqual(v.finish(), whole);
});

test('an edited record is named at its seq, and the checkpoint over it no longer matches', () => {
  const { state, records } = sealedLog(decisions(40));
  const r = records[17]!;
  records[17] = { ...r, event: r.event!.replace('support-bot', 'support-bob') };
  const f = verify(state, records);
  assert.equal(f.ok, false);
  assert.equal(f.firstBadSeq, 17);
  assert.equal(f.problems[0]!.code, 'record_modified');
  assert.equal(
    f.problems[0]!.message,
    'record 17 does not match its hash chain link: it was modified, inserted or moved',
  );
});

test('a deleted record is missing, two swapped records break the chain at the first', () => {
  const a = sealedLog(decisions(30));
  a.records.splice(12, 1);
  const missing = verify(a.state, a.records);
  assert.equal(missing.problems[0]!.code, 'record_missing');
  assert.equal(missing.problems[0]!.message, 'record 12 is missing (the next record present is 13)');

  const b = sealedLog(decisions(30));
  const [x, y] = [b.records[20]!, b.records[21]!];
  b.records[20] = { ...y, seq: 20 };
  b.records[21] = { ...x, seq: 21 };
  const swapped = verify(b.state, b.records);
  assert.equal(swapped.firstBadSeq, 20);
  assert.equal(swapped.problems[0]!.code, 'record_modified');
});

test('a record of an unknown format version is reported as such, not as modified', () => {
  const { state, records } = sealedLog(decisions(20));
  records[4] = { ...records[4]!, v: 7 };
  const f = verify(state, records);
  assert.equal(f.problems[0]!.code, 'record_version_unknown');
  assert.equal(f.problems[0]!.message, 'record 4 has format version 7; this verifier knows 1');
});

test('content gone outside the pruned prefix is reported; inside it, it is not', () => {
  const { state, records } = sealedLog(decisions(30));
  const prunedAt = (seq: number) =>
    records.map((r) => (r.seq === seq ? { ...r, event: null, index: PRUNED_COLUMNS } : r));
  const inPrefix = verify({ ...state, head: { ...state.head, prunedBefore: 10 } }, prunedAt(3));
  assert.equal(inPrefix.ok, true, JSON.stringify(inPrefix.problems));
  assert.equal(inPrefix.pruned, 1);
  const outside = verify({ ...state, head: { ...state.head, prunedBefore: 10 } }, prunedAt(15));
  assert.equal(outside.problems[0]!.code, 'record_content_missing');
});

test('every edited query column is named with its value and what the record says', () => {
  const edits: Array<[keyof IndexColumns, string | null, string]> = [
    ['type', 'outcome', 'type is `outcome` but the record says `decision`'],
    ['agent', 'other-bot', 'agent is `other-bot` but the record says `support-bot`'],
    ['tool', null, 'tool is null but the record says `db.query`'],
    ['effect', 'deny', 'effect is `deny` but the record says `allow`'],
    ['rule', 'x', 'rule is `x` but the record says `support.db-read`'],
    ['decisionId', 'dec_x', 'decision_id is `dec_x` but the record says `dec_00000005`'],
  ];
  for (const [column, value, says] of edits) {
    const { state, records } = sealedLog(decisions(12));
    const r = records[5]!;
    records[5] = { ...r, index: { ...r.index!, [column]: value } };
    const f = verify(state, records);
    assert.equal(f.problems.length, 1, column);
    assert.equal(f.problems[0]!.code, 'record_index_modified');
    assert.equal(
      f.problems[0]!.message,
      `record 5's query columns were edited (${says}): \`audit query\` filters on them, so the edit hides or misfiles the record`,
    );
  }
});

test('columns hold whatever the event says, however its arguments try to confuse a reader', () => {
  const hostile: AuditEvent[] = [
    decisionEvent(1, {
      args: {
        tool: 'x',
        agent: 'y',
        effect: 'allow',
        type: 'outcome',
        decision: { effect: 'allow', id: 'z' },
      },
    }),
    decisionEvent(2, { args: { action: { tool: 'evil', agent: 'evil' }, s: '"tool":"evil"}' } }),
    decisionEvent(3, {
      agent: 'bot-ü',
      tool: 'files.write "x"\\y\n',
      args: { p: '\\"', q: ['}', ']', '{'] },
    }),
    decisionEvent(4, { rule: null, effect: 'deny' }),
  ];
  const { state, records } = sealedLog([...hostile, ...oneOfEach()]);
  assert.equal(verify(state, records).ok, true);
  // A pruned row keeps no columns; any value left in one is an edit.
  const p = sealedLog(decisions(20));
  p.records[2] = { ...p.records[2]!, event: null, index: { ...PRUNED_COLUMNS, effect: 'deny' } };
  const f = verify({ ...p.state, head: { ...p.state.head, prunedBefore: 10 } }, p.records);
  assert.equal(f.problems[0]!.code, 'record_index_modified');
  assert.match(f.problems[0]!.message, /effect is `deny` but the record says null/);
});

test('a row read without its query columns counts as edited', () => {
  const { state, records } = sealedLog(decisions(12));
  const { index: _dropped, ...bare } = records[3]!;
  records[3] = bare;
  const f = verify(state, records);
  assert.equal(f.problems[0]!.code, 'record_index_modified');
  assert.equal(f.firstBadSeq, 3);
});

test('records cut off the end, a deleted checkpoint and a foreign signature are found', () => {
  const cut = sealedLog(decisions(30));
  const truncated = verify(cut.state, cut.records.slice(0, 25));
  assert.equal(truncated.problems[0]!.code, 'log_truncated');

  const gap = sealedLog(decisions(30));
  const kept = gap.state.checkpoints.filter((c) => c.size !== 20);
  const missing = verifyRecords({ ...gap.state, checkpoints: kept }, gap.records, {
    publicKey: key.publicKey,
    checkpointEvery: 10,
  });
  assert.equal(missing.problems[0]!.code, 'checkpoint_missing');
  assert.deepEqual(missing.problems[0]!.range, [10, 30]);

  const stranger = signingKey();
  const foreign = verifyRecords(cut.state, cut.records, { publicKey: stranger.publicKey });
  assert.equal(foreign.problems[0]!.code, 'checkpoint_signature_invalid');
});

test('a record rewritten with its hash breaks the chain at the next; verification stops at the checkpoint', () => {
  const { state, records } = sealedLog(decisions(100));
  const r = records[13]!;
  const prev = records[12]!.hash;
  const event = r.event!.replace('select * from', 'delete from');
  records[13] = { ...r, event, hash: recordHash(r.v, prev, r.seq, r.time, event) };
  const v = new Verifier(state, { publicKey: key.publicKey });
  assert.equal(v.push(records), false, 'no more records wanted');
  const f = v.finish();
  assert.equal(f.size, 20, 'checked up to the checkpoint at 20');
  assert.deepEqual(
    f.problems.map((p) => [p.code, p.seq]),
    [
      ['record_modified', 14],
      ['checkpoint_root_mismatch', 10],
    ],
  );
  assert.match(f.problems[1]!.message, /rewritten together with its hash \(the chain breaks at 14\)/);
});

test('a time earlier than the record before is a modification, even with every hash recomputed', () => {
  const { state, records } = sealedLog(decisions(30));
  // Rechain from record 13 on, as someone who rewrote its time would have to.
  let prev = records[12]!.hash;
  for (let i = 13; i < records.length; i++) {
    const r = records[i]!;
    const time = i === 13 ? r.time - 1 : r.time;
    const hash = recordHash(r.v, prev, r.seq, time, r.event!);
    records[i] = { ...r, time, hash };
    prev = hash;
  }
  const f = verify(state, records);
  assert.equal(f.firstBadSeq, 13);
  assert.equal(f.problems[0]!.code, 'record_modified');
});

test('a stored hash of another length is reported, not thrown on, at its record and the next', () => {
  const { state, records } = sealedLog(decisions(20));
  records[5] = { ...records[5]!, hash: Buffer.alloc(10_000, 7) };
  const f = verify(state, records);
  assert.deepEqual(
    f.problems.slice(0, 2).map((p) => [p.code, p.seq]),
    [
      ['record_modified', 5],
      ['record_modified', 6],
    ],
  );
});
