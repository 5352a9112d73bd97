/**
 * The per-record half of verification, kept apart so it can run in worker threads (verify-worker.ts) while
 * the reading thread goes on: for each row, does its stored hash match the hash recomputed from its
 * content and the previous row's stored hash, and what is its Merkle leaf hash. Rows travel packed in a few
 * typed arrays (transferable, no text round trip); everything that depends on order (gaps, times,
 * checkpoints, the tree) stays with the caller.
 */
import { checkColumns, encodeColumns, resetColumns, skipColumns } from './index-scan.js';
import { leafHash } from './merkle.js';
import { RECORD_VERSION, recordHashBytes, type StoredRecord } from './record.js';

/** Rows in seq order, packed. */
export interface PackedRows {
  count: number;
  /** seq, v, time of row i at [3i, 3i+1, 3i+2]. */
  nums: Float64Array;
  /** Stored hashes, concatenated; row i's is hashes[hashEnds[i-1] .. hashEnds[i]) (32 bytes unless tampered). */
  hashes: Uint8Array;
  hashEnds: Uint32Array;
  /** Event texts as UTF-8, concatenated; row i's is events[eventEnds[i-1] .. eventEnds[i]). */
  events: Uint8Array;
  eventEnds: Uint32Array;
  /** 1 where the row's content was pruned (no event). */
  pruned: Uint8Array;
  /** The rows' query columns: per row the JSON array of its six columns (index-scan.ts). */
  cols: Uint8Array;
}

/** What `hashRows` found, per row. */
export interface HashedRows {
  /** 1: the stored hash matches the content; 0: it does not; 2: not checked (pruned or unknown version). */
  chain: Uint8Array;
  /** The Merkle leaf hash of each row's stored hash, 32 bytes each. */
  leaves: Uint8Array;
}

/** Pack rows read through the generic store interface. */
export function packRecords(rows: readonly StoredRecord[]): PackedRows {
  const n = rows.length;
  const nums = new Float64Array(3 * n);
  const hashEnds = new Uint32Array(n);
  const eventEnds = new Uint32Array(n);
  const pruned = new Uint8Array(n);
  let hashBytes = 0;
  let eventBytes = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    hashBytes += r.hash.length;
    if (r.event !== null) eventBytes += Buffer.byteLength(r.event);
  }
  const hashes = new Uint8Array(hashBytes);
  const events = Buffer.allocUnsafeSlow(eventBytes);
  let h = 0;
  let e = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    nums[3 * i] = r.seq;
    nums[3 * i + 1] = r.v;
    nums[3 * i + 2] = r.time;
    hashes.set(r.hash, h);
    h += r.hash.length;
    hashEnds[i] = h;
    if (r.event === null) pruned[i] = 1;
    else e += events.write(r.event, e, 'utf8');
    eventEnds[i] = e;
  }
  return {
    count: n,
    nums,
    hashes,
    hashEnds,
    events: new Uint8Array(events.buffer, 0, e),
    eventEnds,
    pruned,
    cols: encodeColumns(rows),
  };
}

/** The stored hash of row i. */
export function hashOf(rows: PackedRows, i: number): Buffer {
  const start = i === 0 ? 0 : rows.hashEnds[i - 1]!;
  return Buffer.from(rows.hashes.buffer, rows.hashes.byteOffset + start, rows.hashEnds[i]! - start);
}

/**
 * Check each row's query columns against its event: 1 they match, 0 they do not, 2 not checked (a format
 * version this verifier does not know). Runs on the reading thread before a chunk goes to a hashing worker
 * (which on two cores is the busier thread); a result counts only for rows whose hash check passes.
 */
export function checkIndex(rows: PackedRows): Uint8Array {
  const n = rows.count;
  const index = new Uint8Array(n);
  const { nums, events, eventEnds, pruned, cols } = rows;
  resetColumns();
  for (let i = 0; i < n; i++) {
    if (pruned[i] === 1) index[i] = checkColumns(cols, null, 0, 0);
    else if (nums[3 * i + 1] !== RECORD_VERSION) {
      skipColumns(cols);
      index[i] = 2;
    } else index[i] = checkColumns(cols, events, i === 0 ? 0 : eventEnds[i - 1]!, eventEnds[i]!);
  }
  return index;
}

/** Check each row's chain link (from `prev`, the stored hash of the row before the first) and hash its leaf. */
export function hashRows(rows: PackedRows, prev: Uint8Array): HashedRows {
  const n = rows.count;
  const chain = new Uint8Array(n);
  const leaves = new Uint8Array(32 * n);
  const { nums, hashes, hashEnds, events, eventEnds, pruned } = rows;
  let prevHash = prev;
  for (let i = 0; i < n; i++) {
    const hStart = i === 0 ? 0 : hashEnds[i - 1]!;
    const stored = hashes.subarray(hStart, hashEnds[i]!);
    const v = nums[3 * i + 1]!;
    const seq = nums[3 * i]!;
    const time = nums[3 * i + 2]!;
    if (pruned[i] === 1 || v !== RECORD_VERSION) {
      chain[i] = 2;
    } else if (!isU64(seq) || !isU64(time)) {
      // No record this log wrote holds such a number: it was rewritten (its hash cannot even be formed).
      chain[i] = 0;
    } else {
      const eStart = i === 0 ? 0 : eventEnds[i - 1]!;
      const got = recordHashBytes(v, prevHash, seq, time, events.subarray(eStart, eventEnds[i]!));
      chain[i] = got.equals(stored) ? 1 : 0;
    }
    leaves.set(leafHash(stored), 32 * i);
    prevHash = stored;
  }
  return { chain, leaves };
}

/** A number a record's seq or time can hold (an unsigned 64-bit field, within JavaScript's safe range). */
export function isU64(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0;
}

/** Reader → verify worker. */
export interface HashRequest {
  id: number;
  rows: PackedRows;
  /** The stored hash of the row before the first (a copy, not a view into another chunk). */
  prev: Uint8Array;
}

/** Verify worker → reader: the rows come back (their buffers were transferred) with the results. */
export interface HashResponse extends HashedRows {
  id: number;
  rows: PackedRows;
}

/** The distinct buffers of `rows` and `extra`, for a transfer list. */
export function transferList(rows: PackedRows, ...extra: Uint8Array[]): ArrayBuffer[] {
  const all = [
    rows.nums,
    rows.hashes,
    rows.hashEnds,
    rows.events,
    rows.eventEnds,
    rows.pruned,
    rows.cols,
    ...extra,
  ];
  return [...new Set(all.map((a) => a.buffer as ArrayBuffer))];
}
