import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAuditError } from './errors.js';
import { checkHead } from './log.js';
import type { StoredRecord } from './record.js';
import type { AuditStore, ChainHead } from './store.js';

const hash = (n: number) => Buffer.alloc(32, n);
const record = (seq: number): StoredRecord => ({ seq, v: 1, time: 1, hash: hash(seq), event: '{}' });
const headAt = (size: number) => ({ size, hash: hash(size - 1) }) as ChainHead;

/** A store whose head is `heads[i]` on the i-th read and whose last records are `records`. */
function storeWith(heads: number[], records: number): AuditStore {
  let reads = 0;
  return {
    location: 'test.db',
    head: async () => headAt(heads[Math.min(reads++, heads.length - 1)]!),
    read: async (from: number, limit: number) =>
      Array.from({ length: records }, (_, i) => record(i)).slice(from, from + limit),
  } as unknown as AuditStore;
}

test('opening: a log that grew between reading its head and its records is not called damaged', async () => {
  // Another process appended record 10 after the head (10 records) was read.
  await checkHead(storeWith([10, 11], 11));
});

test('opening: records beyond a head that does not move are damage', async () => {
  await assert.rejects(checkHead(storeWith([10], 11)), (e: unknown) => {
    assert.ok(isAuditError(e));
    assert.equal(e.code, 'audit_corrupt');
    assert.match(e.message, /does not end where its head says \(10 records\)/);
    return true;
  });
});
