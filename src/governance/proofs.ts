/**
 * Proofs for the evidence bundle, built with the audit log's own RFC 6962 functions (`inclusionPath`,
 * `consistencyProof`) over every leaf hash of the log, read once. Subtree hashes come from a level cache
 * (every perfect aligned subtree, about 2 × 32 bytes per leaf), so a bundle citing a thousand records of a
 * million-record log hashes each node once instead of once per proof.
 */
import type { Checkpoint } from '../audit/checkpoint.js';
import { consistencyProof, inclusionPath, nodeHash, type SubtreeHash } from '../audit/merkle.js';
import type { AuditEvent } from '../types.js';

/** Leaf hashes of the first `size` records, 32 bytes each, in one flat buffer. */
export class LeafStore {
  readonly leaves: Buffer;
  size = 0;

  constructor(capacity: number) {
    this.leaves = Buffer.alloc(capacity * 32);
  }

  push(leaf: Uint8Array): void {
    this.leaves.set(leaf, this.size * 32);
    this.size++;
  }

  leaf(i: number): Buffer {
    return this.leaves.subarray(i * 32, i * 32 + 32);
  }
}

/**
 * A `SubtreeHash` over the leaves: perfect aligned subtrees (size 2^k starting at a multiple of 2^k) come
 * from per-level buffers built once; any other range splits as RFC 6962's MTH does.
 */
export function levelTree(store: LeafStore): SubtreeHash {
  const levels: Buffer[] = [store.leaves.subarray(0, store.size * 32)];
  for (let n = store.size; n > 1; ) {
    const prev = levels[levels.length - 1] as Buffer;
    const half = Math.floor(n / 2);
    const next = Buffer.alloc(half * 32);
    for (let i = 0; i < half; i++) {
      next.set(nodeHash(prev.subarray(i * 64, i * 64 + 32), prev.subarray(i * 64 + 32, i * 64 + 64)), i * 32);
    }
    levels.push(next);
    n = half;
  }
  const mth: SubtreeHash = (start, end) => {
    const n = end - start;
    if (n <= 0) throw new RangeError(`empty subtree [${start}, ${end})`);
    // Perfect and aligned: one lookup.
    if ((n & (n - 1)) === 0 && start % n === 0) {
      const k = Math.log2(n);
      const level = levels[k];
      if (level && (start / n + 1) * 32 <= level.length)
        return level.subarray((start / n) * 32, (start / n) * 32 + 32);
    }
    let k = 1;
    while (k * 2 < n) k *= 2;
    return nodeHash(mth(start, start + k), mth(start + k, end));
  };
  return mth;
}

/** An inclusion proof in the audit log's own format (`verifyProof` checks it offline). */
export interface BundleInclusionProof {
  v: 1;
  seq: number;
  leafHash: string;
  record: { v: number; seq: number; time: number; prevHash: string; hash: string; event: AuditEvent };
  checkpoint: Checkpoint;
  path: string[];
}

/** The inclusion proof of one record against `cp`; `prevHash` is the hash of record seq - 1. */
export function inclusionProof(
  store: LeafStore,
  mth: SubtreeHash,
  cp: Checkpoint,
  record: { v: number; seq: number; time: number; hash: Buffer; prevHash: Buffer; event: AuditEvent },
): BundleInclusionProof {
  const prev = record.prevHash;
  return {
    v: 1,
    seq: record.seq,
    leafHash: store.leaf(record.seq).toString('hex'),
    record: {
      v: record.v,
      seq: record.seq,
      time: record.time,
      prevHash: prev.toString('hex'),
      hash: record.hash.toString('hex'),
      event: record.event,
    },
    checkpoint: cp,
    path: inclusionPath(record.seq, cp.size, mth).map((p) => p.toString('hex')),
  };
}

/** A consistency proof between two checkpoints of the bundle. */
export interface BundleConsistencyProof {
  from: Checkpoint;
  to: Checkpoint;
  proof: string[];
}

export function consistency(mth: SubtreeHash, from: Checkpoint, to: Checkpoint): BundleConsistencyProof {
  return { from, to, proof: consistencyProof(from.size, to.size, mth).map((p) => p.toString('hex')) };
}
