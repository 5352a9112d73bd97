/**
 * Verification and proofs, one implementation for every store: recompute the hash chain, the Merkle root at
 * every checkpoint, every checkpoint signature and the consistency proof between consecutive checkpoints;
 * produce and check inclusion proofs that verify offline with nothing but the proof and the public key.
 */
import type { KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { canonicalJson } from '../canonical-json.js';
import type { AuditEvent } from '../types.js';
import { type Checkpoint, parsePublicKey, verifyCheckpoint } from './checkpoint.js';
import { AuditError, messageOf } from './errors.js';
import {
  consistencyProof,
  Frontier,
  inclusionPath,
  leafHash,
  rootOf,
  type SubtreeHash,
  subtreesOf,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
import { GENESIS_HASH, type IndexColumns, indexColumns, RECORD_VERSION, recordHash } from './record.js';
import { spawnWorker } from './spawn-worker.js';
import type { AuditStore } from './store.js';
import {
  checkIndex,
  type HashRequest,
  type HashResponse,
  hashOf,
  hashRows,
  isU64,
  type PackedRows,
  packRecords,
  transferList,
} from './verify-hash.js';

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

/** The outcome of `verifyStore`. */
export interface VerifyReport {
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
  /** Records checked per second. */
  rate: number;
  elapsedMs: number;
}

/** Options for `verifyStore`. */
export interface VerifyOptions {
  /** Checkpoints held outside the log (e.g. from earlier proofs); the log must contain each of them. */
  trusted?: Checkpoint[];
  /** Called every `chunk` records with (records done, total expected). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Records per read (default 1 000). Small chunks verify faster than large ones: a chunk's bytes (about
   * 0.7 MB for 1 000 decisions) stay in the CPU caches from the read through the hashing, where 10 000 went
   * out to memory and back (1.3x slower, `npm run bench:audit`).
   */
  chunk?: number;
  /**
   * Worker threads that recompute record and leaf hashes while this thread reads on. Default: for logs of
   * 50 000 records or more, one per core beyond the first (at most 4: the reading thread feeds no more) —
   * on two cores one hashing thread beside the reader verifies about as fast as one thread doing both
   * (`npm run bench:audit`) — and none for smaller logs (starting a thread costs more than hashing them).
   * 0 hashes on this thread; at most 16.
   */
  workers?: number;
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

/** Logs this long or longer are hashed in worker threads by default. */
const PARALLEL_FROM = 50_000;
/** The most hashing threads `workers` may ask for. */
const MAX_WORKERS = 16;

/** Verification workers: each chunk goes to the next worker; answers are taken in order. */
class HashPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<
    number,
    { resolve: (r: HashResponse) => void; reject: (e: AuditError) => void }
  >();
  private next = 0;
  private id = 0;
  private failure: AuditError | null = null;

  constructor(n: number) {
    for (let i = 0; i < n; i++) {
      const w = spawnWorker('verify-worker');
      w.on('message', (m: HashResponse) => {
        const p = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        p?.resolve(m);
      });
      const fail = (why: string, cause?: unknown) => {
        this.failure ??= new AuditError('audit_unavailable', `verification worker failed: ${why}`, { cause });
        for (const p of this.waiting.values()) p.reject(this.failure);
        this.waiting.clear();
      };
      w.on('error', (e) => fail(messageOf(e), e));
      w.on('exit', (code) => fail(`exit code ${code}`));
      this.workers.push(w);
    }
  }

  hash(rows: PackedRows, prev: Uint8Array): Promise<HashResponse> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const id = ++this.id;
    const w = this.workers[this.next++ % this.workers.length]!;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      const req: HashRequest = { id, rows, prev };
      w.postMessage(req, transferList(rows));
    });
  }

  async close(): Promise<void> {
    this.failure ??= new AuditError('audit_unavailable', 'verification finished');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Verify the whole log in `store` against `publicKey`. Stops collecting after the first checkpoint boundary
 * past the first problem, so `problems` holds the first failure and what it implies.
 */
export async function verifyStore(
  store: AuditStore,
  publicKey: KeyObject,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const started = performance.now();
  const chunk = options.chunk ?? 1_000;
  const head = await store.head();
  const allCps = await store.checkpoints();
  const cps = allCps.filter((c) => c.size > 0);
  const trusted = [...(options.trusted ?? [])].sort((a, b) => a.size - b.size);
  const problems: VerifyProblem[] = [];
  const lastCp = cps[cps.length - 1] ?? null;
  const total = Math.max(head.size, lastCp?.size ?? 0);

  const frontier = Frontier.empty();
  let prevHash: Uint8Array = GENESIS_HASH;
  let prevTime = 0;
  let expected = 0;
  let pruned = 0;
  let cpIdx = 0;
  let tIdx = 0;
  let goodSize = 0; // size of the last checkpoint whose root and signature matched
  let prevCp: Checkpoint | null = null;
  let prevSubtrees: Array<[number, number, Buffer]> = [];
  // Leaves since the last checkpoint, kept only while the next consistency proof is needed (see below).
  let sinceCp = null as Buffer[] | null;
  let stopAt = Number.POSITIVE_INFINITY; // stop after the checkpoint boundary following the first problem
  const add = (p: VerifyProblem) => {
    if (problems.length === 0) stopAt = cps.find((c) => c.size > p.seq)?.size ?? Number.POSITIVE_INFINITY;
    problems.push(p);
  };

  const every = Math.max(1, Math.floor(options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY));
  const boundedFrom = Number((await store.meta(BOUNDED_GAPS_META)) ?? Number.NaN);
  let lastCpSeen = 0; // size of the previous checkpoint row, good or not
  const atCheckpoint = (cp: Checkpoint) => {
    // INVARIANT: writers sign at least every `every` records (seal.ts); a longer gap lost checkpoints.
    if (lastCpSeen >= boundedFrom && cp.size - lastCpSeen > every) {
      add({
        code: 'checkpoint_missing',
        seq: lastCpSeen,
        range: [lastCpSeen, cp.size],
        message: `no checkpoint between sizes ${lastCpSeen} and ${cp.size} (${cp.size - lastCpSeen} records; writers sign every ${every} at most): checkpoints were deleted`,
      });
    }
    lastCpSeen = cp.size;
    const root = frontier.root().toString('hex');
    const signed = verifyCheckpoint(cp, publicKey);
    if (!signed) {
      add({
        code: 'checkpoint_signature_invalid',
        seq: goodSize,
        range: [goodSize, cp.size],
        message: `checkpoint at size ${cp.size} has an invalid signature (key id ${cp.keyId}): records ${goodSize}..${cp.size - 1} are not covered`,
      });
    } else if (root !== cp.root) {
      const broken = problems.find((p) => p.seq >= goodSize && p.code === 'record_modified');
      add({
        code: 'checkpoint_root_mismatch',
        seq: goodSize,
        range: [goodSize, cp.size],
        message:
          `stored hashes of records ${goodSize}..${cp.size - 1} do not give the root signed at size ${cp.size}: ` +
          `a record there was rewritten together with its hash${broken ? ` (the chain breaks at ${broken.seq})` : ''}`,
      });
    } else {
      // When the previous checkpoint's root was recomputed from these same leaves, this one extends it by
      // construction and a consistency proof between them always verifies; it is built and checked when
      // the previous checkpoint did not match.
      if (prevCp !== null && goodSize !== prevCp.size && sinceCp !== null) {
        const base = prevCp.size;
        const subtrees = new Map(prevSubtrees.map(([s, e, h]) => [`${s}:${e}`, h]));
        const leaves = sinceCp;
        const mth: SubtreeHash = (s, e) => {
          if (s >= base) return rootOf(leaves, s - base, e - base);
          const h = subtrees.get(`${s}:${e}`);
          if (h === undefined) throw new Error(`subtree ${s}..${e} is not in the frontier at ${base}`);
          return h;
        };
        const proof = consistencyProof(base, cp.size, mth);
        if (
          !verifyConsistency(
            base,
            cp.size,
            Buffer.from(prevCp.root, 'hex'),
            Buffer.from(cp.root, 'hex'),
            proof,
          )
        ) {
          add({
            code: 'checkpoint_inconsistent',
            seq: base,
            range: [base, cp.size],
            message: `checkpoint at size ${cp.size} is not an extension of the checkpoint at size ${base}`,
          });
        }
      }
      goodSize = cp.size;
    }
    prevCp = cp;
    const needProof = goodSize !== cp.size;
    prevSubtrees = needProof ? frontier.subtrees() : [];
    sinceCp = needProof ? [] : null;
  };

  const atTrusted = (t: Checkpoint) => {
    const root = frontier.root().toString('hex');
    if (!verifyCheckpoint(t, publicKey) || root !== t.root) {
      add({
        code: 'trusted_checkpoint_mismatch',
        seq: 0,
        range: [0, t.size],
        message: `the log's first ${t.size} records do not match the trusted checkpoint (root ${t.root.slice(0, 16)}…)`,
      });
    }
  };

  const lastCpSize = lastCp?.size ?? 0;
  const workers = Math.max(
    0,
    Math.floor(
      Math.min(
        MAX_WORKERS,
        options.workers ??
          (total >= PARALLEL_FROM ? Math.min(4, Math.max(0, availableParallelism() - 1)) : 0),
      ),
    ),
  );
  const pool = workers > 0 ? new HashPool(workers) : null;
  const readChunk = async (from: number): Promise<PackedRows> =>
    store.readPacked ? store.readPacked(from, chunk) : packRecords(await store.read(from, chunk));
  // Read ahead while earlier chunks are hashed: reading (this thread) and hashing (the pool) overlap.
  const pending: Array<
    Promise<{ rows: PackedRows; chain: Uint8Array; leaves: Uint8Array; index: Uint8Array }>
  > = [];
  let nextFrom = 0;
  let more = true;
  let lastStored: Uint8Array = GENESIS_HASH;
  const readAhead = async () => {
    while (more && pending.length < workers + 1) {
      const rows = await readChunk(nextFrom);
      if (rows.count === 0) {
        more = false;
        break;
      }
      if (rows.count < chunk) more = false;
      nextFrom = rows.nums[3 * (rows.count - 1)]! + 1;
      const prev = lastStored;
      lastStored = Uint8Array.from(hashOf(rows, rows.count - 1));
      // Before the rows go to a worker (their buffers move with them).
      const index = checkIndex(rows);
      const hashed =
        pool !== null
          ? pool.hash(rows, prev).then((h) => ({ ...h, index }))
          : Promise.resolve({ rows, ...hashRows(rows, prev), index });
      // Chunks read ahead are dropped unawaited when verification stops early.
      hashed.catch(() => undefined);
      pending.push(hashed);
    }
  };

  try {
    outer: while (true) {
      await readAhead();
      const next = pending.shift();
      if (next === undefined) break;
      const { rows, chain, leaves, index } = await next;
      const nums = rows.nums;
      for (let i = 0; i < rows.count; i++) {
        if (expected >= stopAt) break outer;
        const seq = nums[3 * i]!;
        const v = nums[3 * i + 1]!;
        const time = nums[3 * i + 2]!;
        if (seq !== expected) {
          add({
            code: 'record_missing',
            seq: expected,
            message: `record ${expected} is missing (the next record present is ${seq})`,
          });
          break outer;
        }
        if (rows.pruned[i] === 1) {
          pruned++;
          if (seq >= head.prunedBefore || seq >= lastCpSize) {
            add({
              code: 'record_content_missing',
              seq,
              message: `record ${seq} has no content but is not in the pruned prefix below a signed checkpoint`,
            });
          }
        } else if (v !== RECORD_VERSION) {
          add({
            code: 'record_version_unknown',
            seq,
            message: `record ${seq} has format version ${v}; this verifier knows ${RECORD_VERSION}`,
          });
        } else if (chain[i] === 0 || time < prevTime) {
          add({
            code: 'record_modified',
            seq,
            message: `record ${seq} does not match its hash chain link: it was modified, inserted or moved`,
          });
        }
        // The columns count only against content whose hash matched (or a pruned row: all NULL).
        if (index[i] === 0 && (chain[i] === 1 || rows.pruned[i] === 1)) {
          add({
            code: 'record_index_modified',
            seq,
            message: `record ${seq}'s query columns do not match its hashed content: they were edited, so \`audit query\` would hide or misfile it`,
          });
        }
        const leaf = Buffer.from(leaves.buffer, leaves.byteOffset + 32 * i, 32);
        frontier.append(leaf);
        sinceCp?.push(leaf);
        prevTime = time;
        expected++;
        while (cpIdx < cps.length && cps[cpIdx]!.size === expected) atCheckpoint(cps[cpIdx++]!);
        while (tIdx < trusted.length && trusted[tIdx]!.size === expected) atTrusted(trusted[tIdx++]!);
      }
      if (rows.count > 0) prevHash = hashOf(rows, rows.count - 1);
      options.onProgress?.(expected, total);
    }
  } finally {
    await pool?.close();
  }

  options.onProgress?.(expected, total);
  if (problems.length === 0) {
    const beyond = cps[cpIdx];
    if (beyond !== undefined) {
      add({
        code: 'log_truncated',
        seq: expected,
        message: `the log ends at ${expected} records but a checkpoint was signed at size ${beyond.size}: records ${expected}..${beyond.size - 1} were removed`,
      });
    } else if (head.size > expected) {
      add({
        code: 'log_truncated',
        seq: expected,
        message: `the log ends at ${expected} records but its head says ${head.size}: records ${expected}..${head.size - 1} were removed`,
      });
    } else if (head.size < expected || (expected > 0 && !head.hash.equals(prevHash))) {
      add({
        code: 'head_mismatch',
        seq: Math.min(head.size, expected),
        message: `the head row (${head.size} records) does not match the last record (${expected} records)`,
      });
    } else if (expected > 0 && !head.frontier.equals(frontier.serialize())) {
      add({
        code: 'head_mismatch',
        seq: expected,
        message: `the head row's Merkle frontier does not match the ${expected} records: the next append would sign a wrong root`,
      });
    }
    const tail = expected - (lastCp?.size ?? 0);
    if (problems.length === 0 && tail >= every) {
      const from = lastCp?.size ?? 0;
      add({
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
      add({
        code: 'checkpoint_missing',
        seq: from,
        range: [from, head.checkpointSize],
        message: `the head names a checkpoint at size ${head.checkpointSize}, which is not in the log: checkpoints after size ${from} were deleted`,
      });
    }
    const odd = allCps.find((c) => !isU64(c.size));
    if (problems.length === 0 && odd !== undefined) {
      add({
        code: 'checkpoint_signature_invalid',
        seq: 0,
        range: [0, expected],
        message: `a checkpoint row holds size ${odd.size}, which no signed checkpoint has: the checkpoint table was altered`,
      });
    }
    const t = trusted[tIdx];
    if (problems.length === 0 && t !== undefined && t.size > expected) {
      add({
        code: 'log_truncated',
        seq: expected,
        message: `the log ends at ${expected} records but a trusted checkpoint covers ${t.size}`,
      });
    }
  }
  for (const p of problems)
    if (p.code === 'record_index_modified') p.message = await describeIndexEdit(store, p);
  const elapsedMs = performance.now() - started;
  const firstBadSeq = problems.length === 0 ? null : problems[0]!.seq;
  return {
    ok: problems.length === 0,
    firstBadSeq,
    size: expected,
    pruned,
    checkpoints: cps.length,
    lastCheckpoint: lastCp,
    unsignedTail: Math.max(0, expected - (lastCp?.size ?? 0)),
    problems,
    rate: elapsedMs > 0 ? (expected / elapsedMs) * 1000 : 0,
    elapsedMs,
  };
}

const COLUMN_NAMES: Record<keyof IndexColumns, string> = {
  type: 'type',
  agent: 'agent',
  tool: 'tool',
  effect: 'effect',
  rule: 'rule',
  decisionId: 'decision_id',
};

/** Name the edited columns of an `record_index_modified` record and what its hashed event says instead. */
async function describeIndexEdit(store: AuditStore, p: VerifyProblem): Promise<string> {
  try {
    const row = (await store.read(p.seq, 1))[0];
    if (row?.index === undefined || row.seq !== p.seq) return p.message;
    const want: IndexColumns =
      row.event === null
        ? { type: null, agent: null, tool: null, effect: null, rule: null, decisionId: null }
        : indexColumns(JSON.parse(row.event) as AuditEvent);
    const show = (v: string | null) => (v === null ? 'null' : `\`${v}\``);
    const diffs = (Object.keys(COLUMN_NAMES) as Array<keyof IndexColumns>)
      .filter((k) => (want[k] ?? null) !== (row.index![k] ?? null))
      .map(
        (k) =>
          `${COLUMN_NAMES[k]} is ${show(row.index![k] ?? null)} but the record says ${show(want[k] ?? null)}`,
      );
    if (diffs.length === 0) return p.message;
    return `record ${p.seq}'s query columns were edited (${diffs.join('; ')}): \`audit query\` filters on them, so the edit hides or misfiles the record`;
  } catch {
    return p.message;
  }
}

/** An inclusion proof: verifiable offline with only this JSON and the log's public key. */
export interface InclusionProof {
  /** Proof format version. */
  v: 1;
  seq: number;
  /** SHA-256(0x00 || record hash), hex. */
  leafHash: string;
  record: {
    v: number;
    seq: number;
    time: number;
    /** Hash of record seq - 1 (zeros for record 0), hex. */
    prevHash: string;
    hash: string;
    event: AuditEvent;
  };
  checkpoint: Checkpoint;
  /** RFC 6962 audit path, hex, leaf side first. */
  path: string[];
}

/**
 * Build the inclusion proof of record `seq` against the newest checkpoint that covers it. Rejects with
 * `invalid_request` when the record does not exist, was pruned, or is not yet under a checkpoint.
 */
export async function proveInclusion(store: AuditStore, seq: number): Promise<InclusionProof> {
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new AuditError('invalid_request', `\`${seq}\` is not a sequence number`);
  }
  const cp = (await store.checkpoints()).at(-1);
  if (cp === undefined || cp.size <= seq) {
    throw new AuditError(
      'invalid_request',
      `record ${seq} is not covered by a signed checkpoint yet (latest covers ${cp?.size ?? 0} records)`,
      { data: { seq } },
    );
  }
  const leaves: Buffer[] = new Array(cp.size);
  let record: { v: number; time: number; hash: Buffer; event: string | null } | undefined;
  let prevHash: Buffer = GENESIS_HASH;
  for (let from = 0; from < cp.size; ) {
    const rows = await store.read(from, Math.min(10_000, cp.size - from));
    if (rows.length === 0) break;
    for (const r of rows) {
      if (r.seq !== from) {
        throw new AuditError('audit_corrupt', `record ${from} is missing; run \`execlayer audit verify\``);
      }
      leaves[from] = leafHash(r.hash);
      if (r.seq === seq - 1) prevHash = r.hash;
      if (r.seq === seq) record = r;
      from++;
    }
  }
  if (record === undefined || leaves.length !== cp.size || leaves.some((l) => l === undefined)) {
    throw new AuditError(
      'audit_corrupt',
      `the log is shorter than its checkpoint; run \`execlayer audit verify\``,
    );
  }
  if (record.event === null) {
    throw new AuditError('invalid_request', `record ${seq} was pruned: only its hash is kept`, {
      data: { seq },
    });
  }
  const path = inclusionPath(seq, cp.size, subtreesOf(leaves));
  return {
    v: 1,
    seq,
    leafHash: leaves[seq]!.toString('hex'),
    record: {
      v: record.v,
      seq,
      time: record.time,
      prevHash: prevHash.toString('hex'),
      hash: record.hash.toString('hex'),
      event: JSON.parse(record.event) as AuditEvent,
    },
    checkpoint: cp,
    path: path.map((p) => p.toString('hex')),
  };
}

/** The result of `verifyProof`. */
export type ProofCheck = { ok: true } | { ok: false; code: string; message: string };

const HEX32 = /^[0-9a-f]{64}$/;

/**
 * Check an inclusion proof offline: the record hashes to `record.hash`, its leaf is on the path to the
 * checkpoint root, and the checkpoint is signed by `publicKeyPem`. Never throws.
 */
export function verifyProof(proof: unknown, publicKeyPem: string): ProofCheck {
  const bad = (code: string, message: string): ProofCheck => ({ ok: false, code, message });
  let key: KeyObject;
  try {
    key = parsePublicKey(publicKeyPem);
  } catch (e) {
    return bad('invalid_key', (e as Error).message);
  }
  const p = proof as Partial<InclusionProof> | null;
  const r = p?.record;
  const cp = p?.checkpoint;
  if (
    typeof p !== 'object' ||
    p === null ||
    p.v !== 1 ||
    typeof r !== 'object' ||
    r === null ||
    typeof cp !== 'object' ||
    cp === null ||
    !Array.isArray(p.path) ||
    !p.path.every((h) => typeof h === 'string' && HEX32.test(h)) ||
    typeof r.prevHash !== 'string' ||
    !HEX32.test(r.prevHash) ||
    typeof r.hash !== 'string' ||
    !HEX32.test(r.hash) ||
    typeof cp.root !== 'string' ||
    !HEX32.test(cp.root) ||
    !isU64(r.seq) ||
    !isU64(r.time) ||
    !Number.isSafeInteger(cp.size) ||
    !Number.isSafeInteger(cp.time) ||
    typeof cp.sig !== 'string' ||
    r.seq !== p.seq
  ) {
    return bad('malformed_proof', 'the proof is not a well-formed execlayer inclusion proof (v 1)');
  }
  if (r.v !== RECORD_VERSION)
    return bad('record_version_unknown', `record format version ${r.v} is not known`);
  let eventJson: string;
  try {
    eventJson = canonicalJson(r.event);
  } catch (e) {
    return bad('malformed_proof', `the record's event has no json form: ${(e as Error).message}`);
  }
  const hash = recordHash(r.v, Buffer.from(r.prevHash, 'hex'), r.seq, r.time, eventJson);
  if (hash.toString('hex') !== r.hash) {
    return bad(
      'record_modified',
      `record ${r.seq} does not hash to the hash in the proof: its content was changed`,
    );
  }
  const leaf = leafHash(hash);
  if (p.leafHash !== undefined && p.leafHash !== leaf.toString('hex')) {
    return bad('leaf_mismatch', 'the leaf hash in the proof does not match the record');
  }
  const path = p.path.map((h) => Buffer.from(h, 'hex'));
  if (!verifyInclusion(r.seq, cp.size, leaf, path, Buffer.from(cp.root, 'hex'))) {
    return bad('path_invalid', `the audit path does not lead from record ${r.seq} to the checkpoint root`);
  }
  if (!verifyCheckpoint(cp as Checkpoint, key)) {
    return bad('checkpoint_signature_invalid', 'the checkpoint is not signed by this public key');
  }
  return { ok: true };
}
