/**
 * Inclusion proofs: build the proof that one record is in the log under a signed checkpoint, and check such
 * a proof offline with nothing but the proof and the log's public key.
 */
import type { KeyObject } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';
import { messageOf } from '../errors.js';
import type { AuditEvent } from '../types.js';
import { type Checkpoint, parsePublicKey, verifyCheckpoint } from './checkpoint.js';
import { AuditError } from './errors.js';
import { inclusionPath, leafHash, subtreesOf, verifyInclusion } from './merkle.js';
import { GENESIS_HASH, isU64, RECORD_VERSION, recordHash } from './record.js';
import type { AuditStore } from './store.js';

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

/** Records per read while collecting the leaves of a proof. */
const PROOF_CHUNK = 10_000;

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
    const rows = await store.read(from, Math.min(PROOF_CHUNK, cp.size - from));
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

/** Is `p` shaped like a version 1 inclusion proof (every field present, of its type and range)? */
function wellFormed(p: Partial<InclusionProof> | null): p is InclusionProof {
  if (typeof p !== 'object' || p === null || p.v !== 1) return false;
  const r = p.record;
  const cp = p.checkpoint;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof cp === 'object' &&
    cp !== null &&
    Array.isArray(p.path) &&
    p.path.every((h) => typeof h === 'string' && HEX32.test(h)) &&
    typeof r.prevHash === 'string' &&
    HEX32.test(r.prevHash) &&
    typeof r.hash === 'string' &&
    HEX32.test(r.hash) &&
    typeof cp.root === 'string' &&
    HEX32.test(cp.root) &&
    isU64(r.seq) &&
    isU64(r.time) &&
    Number.isSafeInteger(cp.size) &&
    Number.isSafeInteger(cp.time) &&
    typeof cp.sig === 'string' &&
    r.seq === p.seq
  );
}

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
    return bad('invalid_key', messageOf(e));
  }
  const p = proof as Partial<InclusionProof> | null;
  if (!wellFormed(p)) {
    return bad('malformed_proof', 'the proof is not a well-formed execlayer inclusion proof (v 1)');
  }
  const { record: r, checkpoint: cp } = p;
  if (r.v !== RECORD_VERSION)
    return bad('record_version_unknown', `record format version ${r.v} is not known`);
  let eventJson: string;
  try {
    eventJson = canonicalJson(r.event);
  } catch (e) {
    return bad('malformed_proof', `the record's event has no json form: ${messageOf(e)}`);
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
  if (!verifyCheckpoint(cp, key)) {
    return bad('checkpoint_signature_invalid', 'the checkpoint is not signed by this public key');
  }
  return { ok: true };
}
