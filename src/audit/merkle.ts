/**
 * RFC 6962 / RFC 9162 Merkle tree hashing over record hashes: leaf = SHA-256(0x00 || data),
 * node = SHA-256(0x01 || left || right), MTH splitting at the largest power of two below n, inclusion
 * (audit) paths and consistency proofs with the RFC 9162 verification algorithms.
 */
import { sha256 } from '../sha256.js';

const LEAF_PREFIX = Buffer.from([0]);
const NODE_PREFIX = Buffer.from([1]);

/** SHA-256(0x00 || data). */
export function leafHash(data: Uint8Array): Buffer {
  return sha256(Buffer.concat([LEAF_PREFIX, data]));
}

/** SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(Buffer.concat([NODE_PREFIX, left, right]));
}

/** MTH({}) = SHA-256(""). */
export const EMPTY_ROOT: Buffer = sha256(new Uint8Array(0));

/** The largest power of two strictly below n (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Hash of the subtree over leaves [start, end), supplied by the caller (from memory, a frontier, a store). */
export type SubtreeHash = (start: number, end: number) => Buffer;

/** MTH over `leaves[start, end)` (leaf hashes already applied). O(end - start) node hashes. */
export function rootOf(leaves: readonly Buffer[], start = 0, end = leaves.length): Buffer {
  const n = end - start;
  if (n === 0) return EMPTY_ROOT;
  if (n === 1) return leaves[start]!;
  const k = splitPoint(n);
  return nodeHash(rootOf(leaves, start, start + k), rootOf(leaves, start + k, end));
}

/** A `SubtreeHash` over an in-memory array of leaf hashes, where index 0 is leaf `offset`. */
export function subtreesOf(leaves: readonly Buffer[], offset = 0): SubtreeHash {
  return (start, end) => rootOf(leaves, start - offset, end - offset);
}

/** RFC 6962 PATH(m, D[n]): the audit path for leaf `index` in a tree of `size` leaves, leaf side first. */
export function inclusionPath(index: number, size: number, mth: SubtreeHash): Buffer[] {
  if (!(index >= 0 && index < size)) throw new RangeError(`leaf ${index} is not in a tree of size ${size}`);
  const out: Buffer[] = [];
  const walk = (m: number, start: number, end: number): void => {
    const n = end - start;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      walk(m, start, start + k);
      out.push(mth(start + k, end));
    } else {
      walk(m - k, start + k, end);
      out.push(mth(start, start + k));
    }
  };
  walk(index, 0, size);
  return out;
}

/** RFC 9162 §2.1.3.2: does `path` prove leaf `index` with hash `leaf` is in the tree of `size` with `root`? */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  path: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size))
    return false;
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && Buffer.from(r).equals(Buffer.from(root));
}

/** RFC 6962 PROOF(m, D[n]): consistency proof from the tree of size `m` to the tree of size `n`. */
export function consistencyProof(m: number, n: number, mth: SubtreeHash): Buffer[] {
  if (!(m >= 0 && m <= n)) throw new RangeError(`no consistency proof from size ${m} to size ${n}`);
  if (m === 0 || m === n) return [];
  const out: Buffer[] = [];
  const sub = (mm: number, start: number, end: number, whole: boolean): void => {
    const nn = end - start;
    if (mm === nn) {
      if (!whole) out.push(mth(start, end));
      return;
    }
    const k = splitPoint(nn);
    if (mm <= k) {
      sub(mm, start, start + k, whole);
      out.push(mth(start + k, end));
    } else {
      sub(mm - k, start + k, end, false);
      out.push(mth(start, start + k));
    }
  };
  sub(m, 0, n, true);
  return out;
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree (m, root1) is a prefix of the tree (n, root2)? */
export function verifyConsistency(
  m: number,
  n: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  const r1 = Buffer.from(root1);
  const r2 = Buffer.from(root2);
  if (!(Number.isSafeInteger(m) && Number.isSafeInteger(n) && m >= 0 && m <= n)) return false;
  if (m === n) return proof.length === 0 && r1.equals(r2);
  if (m === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path: Uint8Array[] = isPowerOfTwo(m) ? [r1, ...proof] : [...proof];
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Uint8Array = path[0]!;
  let sr: Uint8Array = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && Buffer.from(fr).equals(r1) && Buffer.from(sr).equals(r2);
}

function isPowerOfTwo(x: number): boolean {
  if (x < 1) return false;
  while (x % 2 === 0) x /= 2;
  return x === 1;
}

/**
 * The compact state of a growing tree: the roots of the perfect subtrees that make up [0, size), largest
 * first (one per set bit of `size`). Appending is O(1) amortised and the root is O(log size), so checkpoints
 * never need to read old records, and several writers can share the tree through the store's head row.
 */
export class Frontier {
  private constructor(
    private count: number,
    private readonly nodes: Buffer[],
  ) {}

  /** An empty tree. */
  static empty(): Frontier {
    return new Frontier(0, []);
  }

  /** Rebuild from `serialize()` output; throws when the byte length does not fit `size`. */
  static from(size: number, bytes: Uint8Array): Frontier {
    const expected = popcount(size);
    if (bytes.length !== expected * 32) {
      throw new RangeError(
        `merkle frontier has ${bytes.length} bytes, a tree of ${size} needs ${expected * 32}`,
      );
    }
    const nodes: Buffer[] = [];
    for (let i = 0; i < expected; i++) nodes.push(Buffer.from(bytes.subarray(i * 32, i * 32 + 32)));
    return new Frontier(size, nodes);
  }

  get size(): number {
    return this.count;
  }

  /** Add one leaf hash (already `leafHash`ed). */
  append(leaf: Buffer): void {
    let h = leaf;
    let s = this.count;
    while (s % 2 === 1) {
      h = nodeHash(this.nodes.pop()!, h);
      s = Math.floor(s / 2);
    }
    this.nodes.push(h);
    this.count++;
  }

  /** MTH of the leaves so far. */
  root(): Buffer {
    if (this.nodes.length === 0) return EMPTY_ROOT;
    let r = this.nodes[this.nodes.length - 1]!;
    for (let i = this.nodes.length - 2; i >= 0; i--) r = nodeHash(this.nodes[i]!, r);
    return r;
  }

  /** The perfect subtrees as [start, end, hash], for answering consistency-proof lookups inside [0, size). */
  subtrees(): Array<[number, number, Buffer]> {
    const out: Array<[number, number, Buffer]> = [];
    let start = 0;
    let bit = 1;
    while (bit * 2 <= this.count) bit *= 2;
    let i = 0;
    for (; bit >= 1; bit /= 2) {
      if (Math.floor(this.count / bit) % 2 === 1) {
        out.push([start, start + bit, this.nodes[i++]!]);
        start += bit;
      }
    }
    return out;
  }

  clone(): Frontier {
    return new Frontier(this.count, [...this.nodes]);
  }

  serialize(): Buffer {
    return Buffer.concat(this.nodes);
  }
}

function popcount(n: number): number {
  let c = 0;
  while (n > 0) {
    c += n % 2;
    n = Math.floor(n / 2);
  }
  return c;
}
