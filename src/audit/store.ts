/**
 * The one interface every audit backend implements. A store keeps rows and the chain head; it knows nothing
 * about hashing, Merkle trees or signatures — those live above it (log.ts, verify.ts), one implementation
 * for every backend, so every backend is verified identically.
 */
import type { Checkpoint } from './checkpoint.js';
import type { RecordFilter, StoredRecord } from './record.js';

/** The tip of the log, kept in one row that each append locks and rewrites in the same transaction. */
export interface ChainHead {
  /** Number of records (next seq). */
  size: number;
  /** Hash of record `size - 1` (GENESIS_HASH when empty). */
  hash: Buffer;
  /** Time of the last record (ms); new records never get an earlier time. */
  time: number;
  /** Merkle frontier after `size` leaves (see merkle.ts `Frontier`). */
  frontier: Buffer;
  /** Size and time of the latest checkpoint (0, 0 when none). */
  checkpointSize: number;
  checkpointTime: number;
  /** Records below this seq have been pruned: only their hashes remain. */
  prunedBefore: number;
}

/** What `append` writes: the rows, the new head and any checkpoints, in one durable transaction. */
export interface SealedBatch {
  rows: StoredRecord[];
  head: ChainHead;
  /** Checkpoints signed in this batch, smallest size first (none, one, or one per `every` records). */
  checkpoints: Checkpoint[];
}

/**
 * Builds the batch from the head the store read under its lock. Must be synchronous and must not throw for
 * valid input: it runs while other writers wait.
 */
export type Sealer = (head: ChainHead, late?: readonly LateCommit[]) => SealedBatch;

/**
 * Records an earlier append of this store committed although that append had failed by its deadline (its
 * COMMIT was on the wire when the link went silent): their callers were told they were not recorded.
 */
export interface LateCommit {
  /** Seq of the first record of that append. */
  seq: number;
  /** How many records it carried. */
  count: number;
  /** Hash of its first record, hex. */
  hash: string;
}

/** Options of one append. */
export interface AppendOptions {
  /** When this append must have finished (`performance.now()` of the calling thread); default: now + the store's timeout. */
  deadline?: number;
}

/** Filters for `query` (all optional) and how to page through the results. */
export interface RecordQuery extends RecordFilter {
  /** Only records with seq greater than this (for following a growing log). */
  afterSeq?: number;
  limit?: number;
  /** `asc` (default) oldest first; `desc` newest first. */
  order?: 'asc' | 'desc';
}

/** An audit backend. Every method rejects with `AuditError` (`audit_unavailable`, `audit_corrupt`). */
export interface AuditStore {
  /** `sqlite` or `postgres`. */
  readonly kind: string;
  /** Where it is, with any password removed (for messages). */
  readonly location: string;
  /**
   * Lock the head, call `seal` with it, write the rows, the new head and the checkpoint, commit durably.
   * Resolves after the commit is durable; concurrent appenders (in any process) are serialised by the lock,
   * so the log has one total order with no gaps.
   */
  append(seal: Sealer, options?: AppendOptions): Promise<SealedBatch>;
  /** The current head. */
  head(): Promise<ChainHead>;
  /**
   * Records with seq in [from, from + limit), pruned ones included (with `event: null`), each with its query
   * columns (`index`). INVARIANT: in seq order, by an explicit `ORDER BY seq`: verification reads the log
   * through this and reports any order but the chain's as tampering.
   */
  read(from: number, limit: number): Promise<StoredRecord[]>;
  /** Records matching `q` (pruned records never match). */
  query(q: RecordQuery): Promise<StoredRecord[]>;
  /** All checkpoints, smallest size first. */
  checkpoints(): Promise<Checkpoint[]>;
  /** Seq of the first record with time >= `time` (the head size when there is none). */
  seqAtTime(time: number): Promise<number>;
  /**
   * Drop the content of records below `before` (keeping seq, time and hash). Refuses unless a checkpoint of
   * exactly size `before` exists, so the pruned prefix stays covered by a signature. Returns how many
   * records were pruned now.
   */
  prune(before: number): Promise<number>;
  /**
   * Record the log's public key on first use and return the one on record (the first writer's), so a
   * process with a different key can refuse to sign.
   */
  bindPublicKey(pem: string): Promise<string>;
  /** The public key on record, if any. */
  publicKey(): Promise<string | null>;
  /** Record `value` under `key` on first use and return the value on record (the first writer's). */
  bindMeta(key: string, value: string): Promise<string>;
  /** The value on record under `key`, if any. */
  meta(key: string): Promise<string | null>;
  close(): Promise<void>;
}
