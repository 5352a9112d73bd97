/**
 * The audit verifier: records in, findings out. It recomputes every record's chain hash, the Merkle root at
 * every checkpoint, every checkpoint signature, the consistency of consecutive checkpoints, and checks every
 * record's query columns against its hashed event. It reads nothing and writes nothing: the caller hands it
 * the log's head, checkpoints and records (verify.ts reads them from a store, a test builds them), so the
 * same code decides for every backend.
 *
 * Records must be pushed in seq order, as the store reads them (`ORDER BY seq`); a gap, a reordering or an
 * insertion is what the verifier reports, never something it repairs.
 */
import type { KeyObject } from 'node:crypto';
import type { AuditEvent } from '../types.js';
import { type Checkpoint, verifyCheckpoint } from './checkpoint.js';
import {
  consistencyProof,
  Frontier,
  leafHash,
  rootOf,
  type SubtreeHash,
  verifyConsistency,
} from './merkle.js';
import {
  GENESIS_HASH,
  type IndexColumns,
  indexColumns,
  isU64,
  PRUNED_COLUMNS,
  RECORD_VERSION,
  recordHash,
  type StoredRecord,
} from './record.js';
import type { ChainHead } from './store.js';

/** Stable codes of verification problems. */
export type VerifyProblemCode =
  /** The record's content or position does not match its hash chain link. */
  | 'record_modified'
  /** A sequence number is missing (a record was deleted). */
  | 'record_missing'
  /** A record's content is gone but it is not in the pruned prefix below a checkpoint. */
  | 'record_content_missing'
  /** The record uses a format version this verifier does not know. */
  | 'record_version_unknown'
  /** The stored hashes of a checkpointed range do not give the signed root (hashes were rewritten). */
  | 'checkpoint_root_mismatch'
  /** A checkpoint's signature does not verify with the public key. */
  | 'checkpoint_signature_invalid'
  /** The consistency proof between two consecutive checkpoints fails. */
  | 'checkpoint_inconsistent'
  /** An externally held checkpoint does not match the log. */
  | 'trusted_checkpoint_mismatch'
  /** The log is shorter than a signed checkpoint or than its own head says (records cut off the end). */
  | 'log_truncated'
  /** The head row does not match the last record. */
  | 'head_mismatch'
  /**
   * A record's query columns (type, agent, tool, effect, rule, decision id) do not match its hashed event:
   * edited to hide the record from `audit query` or to show it where it does not belong.
   */
  | 'record_index_modified'
  /**
   * More records between two checkpoints, or after the last one, than any writer leaves unsigned, or the
   * head names a checkpoint that is not there: checkpoints were deleted.
   */
  | 'checkpoint_missing'
  /** A table of the log is gone (reported by the command line, which cannot open such a store). */
  | 'table_missing'
  /** The log is signed with another key than the one the verifier trusts (reported by the command line). */
  | 'key_mismatch';

/** One problem; `seq` is the first sequence number it concerns, `range` the records it may cover. */
export interface VerifyProblem {
  code: VerifyProblemCode;
  seq: number;
  message: string;
  range?: [number, number];
}

/** What the verifier found. */
export interface VerifyFindings {
  ok: boolean;
  /** Sequence number of the first bad record (null when ok). */
  firstBadSeq: number | null;
  /** Records present, contiguous from 0. */
  size: number;
  /** Records whose content was pruned (hash kept). */
  pruned: number;
  checkpoints: number;
  lastCheckpoint: Checkpoint | null;
  /** Records after the last signed checkpoint: chain-checked, but not yet covered by a signature. */
  unsignedTail: number;
  problems: VerifyProblem[];
}

/** Everything about the log besides its records. */
export interface LogState {
  head: ChainHead;
  /** Every checkpoint row, smallest size first. */
  checkpoints: readonly Checkpoint[];
  /**
   * The checkpoint size from which writers left at most `checkpointEvery` records between two checkpoints
   * (`audit_meta` key `BOUNDED_GAPS_META`); null when the log does not say.
   */
  boundedGapsFrom: number | null;
}

/** What the verifier checks against. */
export interface VerifierOptions {
  /** The key every checkpoint must be signed with. */
  publicKey: KeyObject;
  /** Checkpoints held outside the log (e.g. from earlier proofs); the log must contain each of them. */
  trusted?: readonly Checkpoint[];
  /**
   * The most records a writer of this log leaves between two checkpoints (`checkpointEvery` of
   * `openAuditLog`, default 1000). A longer stretch without a checkpoint is reported as
   * `checkpoint_missing`; pass the largest value any writer of the log used.
   */
  checkpointEvery?: number;
}

/**
 * `audit_meta` key: the checkpoint size from which no two checkpoints are more than `checkpointEvery`
 * records apart, set by the first writer that signs within batches (seal.ts) to open the log. Before it,
 * a writer could leave a whole batch (up to 10 000 records) between two checkpoints.
 */
export const BOUNDED_GAPS_META = 'checkpoint_gaps_bounded_from';

/** The default `checkpointEvery` of writers and verification. */
export const DEFAULT_CHECKPOINT_EVERY = 1000;

const COLUMN_NAMES: Record<keyof IndexColumns, string> = {
  type: 'type',
  agent: 'agent',
  tool: 'tool',
  effect: 'effect',
  rule: 'rule',
  decisionId: 'decision_id',
};
const COLUMNS = Object.keys(COLUMN_NAMES) as Array<keyof IndexColumns>;

/**
 * Verifies one log, fed its records in seq order. Stops collecting after the first checkpoint boundary past
 * the first problem, so the findings hold the first failure and what it implies; `push` then returns false.
 */
export class Verifier {
  private readonly head: ChainHead;
  private readonly key: KeyObject;
  private readonly allCps: readonly Checkpoint[];
  /** Checkpoints of size > 0, the ones records reach. */
  private readonly cps: readonly Checkpoint[];
  private readonly trusted: readonly Checkpoint[];
  private readonly every: number;
  private readonly boundedFrom: number;
  private readonly lastCpSize: number;
  private readonly problems: VerifyProblem[] = [];

  private readonly frontier = Frontier.empty();
  /** Stored hash of the last record seen: the next record's chain link. */
  private prevHash: Buffer = GENESIS_HASH;
  private prevTime = 0;
  /** Records seen, contiguous from 0 (the next expected seq). */
  private expected = 0;
  private pruned = 0;
  private cpIdx = 0;
  private tIdx = 0;
  /** Size of the last checkpoint whose root and signature matched. */
  private goodSize = 0;
  /** Size of the previous checkpoint row, good or not. */
  private lastCpSeen = 0;
  private prevCp: Checkpoint | null = null;
  private prevSubtrees: Array<[number, number, Buffer]> = [];
  /** Leaves since the last checkpoint, kept only while the next consistency proof is needed. */
  private sinceCp: Buffer[] | null = null;
  /** Stop after the checkpoint boundary following the first problem. */
  private stopAt = Number.POSITIVE_INFINITY;
  private done = false;

  constructor(state: LogState, options: VerifierOptions) {
    this.head = state.head;
    this.key = options.publicKey;
    this.allCps = state.checkpoints;
    this.cps = state.checkpoints.filter((c) => c.size > 0);
    this.trusted = [...(options.trusted ?? [])].sort((a, b) => a.size - b.size);
    this.every = Math.max(1, Math.floor(options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY));
    this.boundedFrom = state.boundedGapsFrom ?? Number.NaN;
    this.lastCpSize = this.cps.at(-1)?.size ?? 0;
  }

  /** Records the findings will cover at most: the head's size or the last checkpoint's, whichever is larger. */
  get expectedTotal(): number {
    return Math.max(this.head.size, this.lastCpSize);
  }

  /** Records checked so far. */
  get checked(): number {
    return this.expected;
  }

  /** Check the next records (in seq order). False once verification needs no more of them. */
  push(records: Iterable<StoredRecord>): boolean {
    for (const r of records) {
      if (this.done) break;
      this.record(r);
    }
    return !this.done;
  }

  /** The findings, after the last record was pushed (or `push` returned false). */
  finish(): VerifyFindings {
    this.done = true;
    const problems = this.problems;
    if (problems.length === 0) this.endOfLog();
    const lastCp = this.cps.at(-1) ?? null;
    return {
      ok: problems.length === 0,
      firstBadSeq: problems.length === 0 ? null : problems[0]!.seq,
      size: this.expected,
      pruned: this.pruned,
      checkpoints: this.cps.length,
      lastCheckpoint: lastCp,
      unsignedTail: Math.max(0, this.expected - (lastCp?.size ?? 0)),
      problems,
    };
  }

  private add(p: VerifyProblem): void {
    if (this.problems.length === 0) {
      this.stopAt = this.cps.find((c) => c.size > p.seq)?.size ?? Number.POSITIVE_INFINITY;
    }
    this.problems.push(p);
  }

  private record(r: StoredRecord): void {
    const expected = this.expected;
    if (expected >= this.stopAt) {
      this.done = true;
      return;
    }
    const { seq, v, time, hash } = r;
    if (seq !== expected) {
      this.add({
        code: 'record_missing',
        seq: expected,
        message: `record ${expected} is missing (the next record present is ${seq})`,
      });
      this.done = true;
      return;
    }
    let chainOk = false;
    if (r.event === null) {
      this.pruned++;
      if (seq >= this.head.prunedBefore || seq >= this.lastCpSize) {
        this.add({
          code: 'record_content_missing',
          seq,
          message: `record ${seq} has no content but is not in the pruned prefix below a signed checkpoint`,
        });
      }
    } else if (v !== RECORD_VERSION) {
      this.add({
        code: 'record_version_unknown',
        seq,
        message: `record ${seq} has format version ${v}; this verifier knows ${RECORD_VERSION}`,
      });
    } else {
      // A time no record of this log can hold, or a previous hash of another length, was rewritten: the hash
      // cannot even be formed.
      chainOk =
        isU64(time) &&
        time >= this.prevTime &&
        this.prevHash.length === 32 &&
        recordHash(v, this.prevHash, seq, time, r.event).equals(hash);
      if (!chainOk) {
        this.add({
          code: 'record_modified',
          seq,
          message: `record ${seq} does not match its hash chain link: it was modified, inserted or moved`,
        });
      }
    }
    // The columns count only against content whose hash matched (or a pruned row: all NULL).
    if (chainOk || r.event === null) {
      const edit = indexEdit(r);
      if (edit !== null) this.add({ code: 'record_index_modified', seq, message: edit });
    }
    const leaf = leafHash(hash);
    this.frontier.append(leaf);
    this.sinceCp?.push(leaf);
    this.prevHash = hash;
    this.prevTime = time;
    this.expected++;
    const n = this.expected;
    while (this.cpIdx < this.cps.length && this.cps[this.cpIdx]!.size === n) {
      this.atCheckpoint(this.cps[this.cpIdx++]!);
    }
    while (this.tIdx < this.trusted.length && this.trusted[this.tIdx]!.size === n) {
      this.atTrusted(this.trusted[this.tIdx++]!);
    }
  }

  private atCheckpoint(cp: Checkpoint): void {
    const goodSize = this.goodSize;
    // INVARIANT: writers sign at least every `every` records (seal.ts); a longer gap lost checkpoints.
    if (this.lastCpSeen >= this.boundedFrom && cp.size - this.lastCpSeen > this.every) {
      const from = this.lastCpSeen;
      this.add({
        code: 'checkpoint_missing',
        seq: from,
        range: [from, cp.size],
        message: `no checkpoint between sizes ${from} and ${cp.size} (${cp.size - from} records; writers sign every ${this.every} at most): checkpoints were deleted`,
      });
    }
    this.lastCpSeen = cp.size;
    if (!verifyCheckpoint(cp, this.key)) {
      this.add({
        code: 'checkpoint_signature_invalid',
        seq: goodSize,
        range: [goodSize, cp.size],
        message: `checkpoint at size ${cp.size} has an invalid signature (key id ${cp.keyId}): records ${goodSize}..${cp.size - 1} are not covered`,
      });
    } else if (this.frontier.root().toString('hex') !== cp.root) {
      const broken = this.problems.find((p) => p.seq >= goodSize && p.code === 'record_modified');
      this.add({
        code: 'checkpoint_root_mismatch',
        seq: goodSize,
        range: [goodSize, cp.size],
        message:
          `stored hashes of records ${goodSize}..${cp.size - 1} do not give the root signed at size ${cp.size}: ` +
          `a record there was rewritten together with its hash${broken ? ` (the chain breaks at ${broken.seq})` : ''}`,
      });
    } else {
      this.checkConsistency(cp);
      this.goodSize = cp.size;
    }
    this.prevCp = cp;
    // Keep what the next consistency proof needs only when this checkpoint did not match.
    const needProof = this.goodSize !== cp.size;
    this.prevSubtrees = needProof ? this.frontier.subtrees() : [];
    this.sinceCp = needProof ? [] : null;
  }

  /**
   * When the previous checkpoint's root was recomputed from these same leaves, `cp` extends it by
   * construction and a consistency proof between them always verifies; it is built and checked only when the
   * previous checkpoint did not match.
   */
  private checkConsistency(cp: Checkpoint): void {
    const prev = this.prevCp;
    const leaves = this.sinceCp;
    if (prev === null || this.goodSize === prev.size || leaves === null) return;
    const base = prev.size;
    const subtrees = new Map(this.prevSubtrees.map(([s, e, h]) => [`${s}:${e}`, h]));
    const mth: SubtreeHash = (s, e) => {
      if (s >= base) return rootOf(leaves, s - base, e - base);
      const h = subtrees.get(`${s}:${e}`);
      if (h === undefined) throw new Error(`subtree ${s}..${e} is not in the frontier at ${base}`);
      return h;
    };
    const proof = consistencyProof(base, cp.size, mth);
    const root1 = Buffer.from(prev.root, 'hex');
    if (!verifyConsistency(base, cp.size, root1, Buffer.from(cp.root, 'hex'), proof)) {
      this.add({
        code: 'checkpoint_inconsistent',
        seq: base,
        range: [base, cp.size],
        message: `checkpoint at size ${cp.size} is not an extension of the checkpoint at size ${base}`,
      });
    }
  }

  private atTrusted(t: Checkpoint): void {
    if (!verifyCheckpoint(t, this.key) || this.frontier.root().toString('hex') !== t.root) {
      this.add({
        code: 'trusted_checkpoint_mismatch',
        seq: 0,
        range: [0, t.size],
        message: `the log's first ${t.size} records do not match the trusted checkpoint (root ${t.root.slice(0, 16)}…)`,
      });
    }
  }

  /** After the last record: what the head, the checkpoints and the trusted checkpoints say should be there. */
  private endOfLog(): void {
    const { head, cps, every } = this;
    const expected = this.expected;
    const lastCp = cps.at(-1) ?? null;
    const beyond = cps[this.cpIdx];
    if (beyond !== undefined) {
      this.add({
        code: 'log_truncated',
        seq: expected,
        message: `the log ends at ${expected} records but a checkpoint was signed at size ${beyond.size}: records ${expected}..${beyond.size - 1} were removed`,
      });
    } else if (head.size > expected) {
      this.add({
        code: 'log_truncated',
        seq: expected,
        message: `the log ends at ${expected} records but its head says ${head.size}: records ${expected}..${head.size - 1} were removed`,
      });
    } else if (head.size < expected || (expected > 0 && !head.hash.equals(this.prevHash))) {
      this.add({
        code: 'head_mismatch',
        seq: Math.min(head.size, expected),
        message: `the head row (${head.size} records) does not match the last record (${expected} records)`,
      });
    } else if (expected > 0 && !head.frontier.equals(this.frontier.serialize())) {
      this.add({
        code: 'head_mismatch',
        seq: expected,
        message: `the head row's Merkle frontier does not match the ${expected} records: the next append would sign a wrong root`,
      });
    }
    const problems = this.problems;
    const tail = expected - (lastCp?.size ?? 0);
    if (problems.length === 0 && tail >= every) {
      const from = lastCp?.size ?? 0;
      this.add({
        code: 'checkpoint_missing',
        seq: from,
        range: [from, expected],
        message: `records ${from}..${expected - 1} (${tail}) follow the last checkpoint, but writers sign every ${every} at most: checkpoints were deleted`,
      });
    }
    if (
      problems.length === 0 &&
      head.checkpointSize > 0 &&
      head.checkpointSize <= expected &&
      !cps.some((c) => c.size === head.checkpointSize)
    ) {
      const from = cps.filter((c) => c.size < head.checkpointSize).at(-1)?.size ?? 0;
      this.add({
        code: 'checkpoint_missing',
        seq: from,
        range: [from, head.checkpointSize],
        message: `the head names a checkpoint at size ${head.checkpointSize}, which is not in the log: checkpoints after size ${from} were deleted`,
      });
    }
    const odd = this.allCps.find((c) => !isU64(c.size));
    if (problems.length === 0 && odd !== undefined) {
      this.add({
        code: 'checkpoint_signature_invalid',
        seq: 0,
        range: [0, expected],
        message: `a checkpoint row holds size ${odd.size}, which no signed checkpoint has: the checkpoint table was altered`,
      });
    }
    const t = this.trusted[this.tIdx];
    if (problems.length === 0 && t !== undefined && t.size > expected) {
      this.add({
        code: 'log_truncated',
        seq: expected,
        message: `the log ends at ${expected} records but a trusted checkpoint covers ${t.size}`,
      });
    }
  }
}

/** Verify a log held in memory: `records` in seq order. */
export function verifyRecords(
  state: LogState,
  records: Iterable<StoredRecord>,
  options: VerifierOptions,
): VerifyFindings {
  const v = new Verifier(state, options);
  v.push(records);
  return v.finish();
}

/**
 * Null when the record's query columns are what its event gives (`indexColumns`, the function the writer
 * derived them with; all NULL for a pruned row), else the problem's message naming each edited column.
 */
function indexEdit(r: StoredRecord): string | null {
  const generic = () =>
    `record ${r.seq}'s query columns do not match its hashed content: they were edited, so \`audit query\` would hide or misfile it`;
  // INVARIANT: fail closed — a row read without its columns, or an event they cannot be derived from, is edited.
  if (r.index === undefined) return generic();
  let want: IndexColumns;
  try {
    want = r.event === null ? PRUNED_COLUMNS : indexColumns(JSON.parse(r.event) as AuditEvent);
  } catch {
    return generic();
  }
  const got = r.index;
  if (sameColumns(want, got)) return null;
  const edited = COLUMNS.filter((k) => (want[k] ?? null) !== (got[k] ?? null));
  const show = (v: string | null) => (v === null ? 'null' : `\`${v}\``);
  const diffs = edited.map(
    (k) => `${COLUMN_NAMES[k]} is ${show(got[k] ?? null)} but the record says ${show(want[k] ?? null)}`,
  );
  return `record ${r.seq}'s query columns were edited (${diffs.join('; ')}): \`audit query\` filters on them, so the edit hides or misfiles the record`;
}

/** Do the two hold the same six columns (absent counts as NULL)? */
function sameColumns(a: IndexColumns, b: IndexColumns): boolean {
  return (
    (a.type ?? null) === (b.type ?? null) &&
    (a.agent ?? null) === (b.agent ?? null) &&
    (a.tool ?? null) === (b.tool ?? null) &&
    (a.effect ?? null) === (b.effect ?? null) &&
    (a.rule ?? null) === (b.rule ?? null) &&
    (a.decisionId ?? null) === (b.decisionId ?? null)
  );
}
