/**
 * Reading the audit records of a time window from a store, page by page, in log order — so a report over a
 * million records holds one page at a time.
 */
import { type AuditRecord, toAuditRecord } from '../audit/record.js';
import type { AuditStore } from '../audit/store.js';

/** Records read per store round trip. */
const PAGE = 10_000;

/** The seq range [first, end) of records with from <= time < to. */
export async function windowRange(
  store: AuditStore,
  from: number,
  to: number,
): Promise<{ first: number; end: number }> {
  const first = await store.seqAtTime(from);
  const end = await store.seqAtTime(to);
  return { first, end: Math.max(first, end) };
}

/** Records with seq in [first, end), oldest first; pruned ones have `event: null`. */
export async function* readRange(store: AuditStore, first: number, end: number): AsyncGenerator<AuditRecord> {
  for (let from = first; from < end; ) {
    const rows = await store.read(from, Math.min(PAGE, end - from));
    if (rows.length === 0) return;
    for (const row of rows) yield toAuditRecord(row);
    from = (rows.at(-1)?.seq ?? from) + 1;
  }
}

/** Records with from <= time < to. */
export async function* readWindow(store: AuditStore, from: number, to: number): AsyncGenerator<AuditRecord> {
  const { first, end } = await windowRange(store, from, to);
  yield* readRange(store, first, end);
}
