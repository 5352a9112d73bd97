/**
 * Reading the audit records of a time window from a store, page by page, in log order — so a report over a
 * million records holds one page at a time.
 */
import { type AuditRecord, toAuditRecord } from '../audit/record.js';
import type { AuditStore } from '../audit/store.js';

/** Records read per store round trip. */
const PAGE = 10_000;

/**
 * The tail every decision event's canonical JSON ends with: keys are sorted and `type` sorts after every
 * other key of a decision event (`action`, `decision`, `latencyUs`, `point`). Stored events are the
 * canonical text the hash chain covers, so the test is exact: only decisions end so.
 */
const DECISION_TAIL = '"type":"decision"}';

/** Reading options: `decisionsOnly` skips other events without parsing them. */
export interface ReadOptions {
  decisionsOnly?: boolean;
}

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
export async function* readRange(
  store: AuditStore,
  first: number,
  end: number,
  options: ReadOptions = {},
): AsyncGenerator<AuditRecord> {
  for (let from = first; from < end; ) {
    const rows = await store.read(from, Math.min(PAGE, end - from));
    if (rows.length === 0) return;
    for (const row of rows) {
      if (options.decisionsOnly && (row.event === null || !row.event.endsWith(DECISION_TAIL))) continue;
      yield toAuditRecord(row);
    }
    from = (rows.at(-1)?.seq ?? from) + 1;
  }
}

/** Records with from <= time < to. */
export async function* readWindow(
  store: AuditStore,
  from: number,
  to: number,
  options: ReadOptions = {},
): AsyncGenerator<AuditRecord> {
  const { first, end } = await windowRange(store, from, to);
  yield* readRange(store, first, end, options);
}
