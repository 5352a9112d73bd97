/**
 * `execlayer report verify`: checks an evidence bundle offline — the manifest signature, every file against
 * the manifest, every record of the audit segment against the hash chain, every inclusion proof and
 * checkpoint signature, the consistency proofs between checkpoints, the policy texts against their
 * content hashes — and names each altered or missing file or record. Never throws on bad input.
 */
import { createHash, verify as verifySig } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { type Checkpoint, parsePublicKey, verifyCheckpoint } from '../audit/checkpoint.js';
import { verifyConsistency } from '../audit/merkle.js';
import { type AuditRecord, recordHash } from '../audit/record.js';
import { verifyProof } from '../audit/verify.js';
import { canonicalJson } from '../canonical-json.js';
import { loadPolicyText } from '../policy/load.js';
import { BUNDLE_FORMAT, manifestMessage } from './report.js';

/** One problem, naming the file and, where it is about a record, the record's seq. */
export interface BundleProblem {
  code:
    | 'manifest_missing'
    | 'manifest_invalid'
    | 'signature_invalid'
    | 'key_mismatch'
    | 'file_missing'
    | 'file_altered'
    | 'file_unexpected'
    | 'record_altered'
    | 'record_missing'
    | 'record_unexpected'
    | 'proof_invalid'
    | 'proof_missing'
    | 'checkpoint_invalid'
    | 'consistency_invalid'
    | 'policy_altered';
  message: string;
  file?: string;
  seq?: number;
}

export interface BundleVerifyReport {
  ok: boolean;
  problems: BundleProblem[];
  checked: { files: number; records: number; proofs: number; checkpoints: number; policies: number };
  keyId: string | null;
}

interface ManifestFile {
  path: string;
  sha256: string;
  bytes: number;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p).split('\\').join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * Verifies the bundle in `dir`. `publicKeyPem`, when given, is the key the bundle must be signed with (the
 * log's key as the deployer published it); without it the bundle's own `public-key.pem` is used and the
 * report says which key that was.
 */
export function verifyBundle(dir: string, publicKeyPem?: string): BundleVerifyReport {
  const problems: BundleProblem[] = [];
  const checked = { files: 0, records: 0, proofs: 0, checkpoints: 0, policies: 0 };
  const done = (keyId: string | null): BundleVerifyReport => ({
    ok: problems.length === 0,
    problems,
    checked,
    keyId,
  });
  let manifestBytes: Buffer;
  try {
    manifestBytes = readFileSync(join(dir, 'manifest.json'));
  } catch {
    problems.push({
      code: 'manifest_missing',
      file: 'manifest.json',
      message: '`manifest.json` is missing: this is not an evidence bundle',
    });
    return done(null);
  }
  let manifest: { format?: string; files?: ManifestFile[]; keyId?: string; anchor?: Checkpoint };
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8'));
  } catch {
    problems.push({
      code: 'manifest_invalid',
      file: 'manifest.json',
      message: '`manifest.json` is not JSON',
    });
    return done(null);
  }
  if (manifest.format !== BUNDLE_FORMAT || !Array.isArray(manifest.files)) {
    problems.push({
      code: 'manifest_invalid',
      file: 'manifest.json',
      message: `\`manifest.json\` is not an ${BUNDLE_FORMAT} manifest`,
    });
    return done(null);
  }
  let bundleKey: string;
  try {
    bundleKey = readFileSync(join(dir, 'public-key.pem'), 'utf8');
  } catch {
    bundleKey = '';
  }
  const pem = publicKeyPem ?? bundleKey;
  let key: ReturnType<typeof parsePublicKey>;
  try {
    key = parsePublicKey(pem);
  } catch (e) {
    problems.push({
      code: 'signature_invalid',
      file: 'public-key.pem',
      message: `no usable public key: ${(e as Error).message}`,
    });
    return done(null);
  }
  if (publicKeyPem !== undefined && bundleKey.trim() !== publicKeyPem.trim()) {
    problems.push({
      code: 'key_mismatch',
      file: 'public-key.pem',
      message: 'the bundle carries another public key than the one given',
    });
  }
  let sig: Buffer;
  try {
    sig = Buffer.from(readFileSync(join(dir, 'manifest.sig'), 'utf8').trim(), 'base64');
  } catch {
    sig = Buffer.alloc(0);
  }
  if (!verifySig(null, manifestMessage(manifestBytes), key, sig)) {
    problems.push({
      code: 'signature_invalid',
      file: 'manifest.sig',
      message:
        'the manifest signature does not verify with this public key: the manifest was changed or signed by another key',
    });
  }

  // Files against the manifest.
  const listed = new Map(manifest.files.map((f) => [f.path, f]));
  const present = new Set(listFiles(dir));
  for (const f of manifest.files) {
    checked.files++;
    if (!present.has(f.path)) {
      problems.push({ code: 'file_missing', file: f.path, message: `\`${f.path}\` is missing` });
      continue;
    }
    const sha = createHash('sha256')
      .update(readFileSync(join(dir, f.path)))
      .digest('hex');
    if (sha !== f.sha256)
      problems.push({
        code: 'file_altered',
        file: f.path,
        message: `\`${f.path}\` was altered (its sha256 is not the one in the manifest)`,
      });
  }
  for (const p of present) {
    if (!listed.has(p) && p !== 'manifest.json' && p !== 'manifest.sig') {
      problems.push({ code: 'file_unexpected', file: p, message: `\`${p}\` is not in the manifest` });
    }
  }

  verifySegment(dir, key, problems, checked);
  verifyPolicies(dir, problems, checked);
  return done(manifest.keyId ?? null);
}

function verifySegment(
  dir: string,
  key: ReturnType<typeof parsePublicKey>,
  problems: BundleProblem[],
  checked: BundleVerifyReport['checked'],
): void {
  const seg = readJson<{
    first: number;
    end: number;
    prevHash: string;
    anchor: Checkpoint;
    proofs: number[];
  }>(join(dir, 'audit', 'segment.json'));
  if (!seg) return; // named above as missing or altered
  const cps = readJson<{
    checkpoints: Checkpoint[];
    consistency: { from: Checkpoint; to: Checkpoint; proof: string[] }[];
  }>(join(dir, 'audit', 'checkpoints.json'));
  for (const cp of cps?.checkpoints ?? []) {
    checked.checkpoints++;
    if (!verifyCheckpoint(cp, key))
      problems.push({
        code: 'checkpoint_invalid',
        file: 'audit/checkpoints.json',
        message: `checkpoint at size ${cp.size} is not signed by this key`,
      });
  }
  for (const c of cps?.consistency ?? []) {
    const ok = verifyConsistency(
      c.from.size,
      c.to.size,
      Buffer.from(c.from.root, 'hex'),
      Buffer.from(c.to.root, 'hex'),
      c.proof.map((h) => Buffer.from(h, 'hex')),
    );
    if (!ok)
      problems.push({
        code: 'consistency_invalid',
        file: 'audit/checkpoints.json',
        message: `checkpoint ${c.to.size} does not extend checkpoint ${c.from.size}: the log was rewritten between them`,
      });
  }

  // The chain: each record's hash recomputed from the previous record's, starting at the segment's prevHash.
  const hashes = new Map<number, string>();
  let text = '';
  try {
    text = readFileSync(join(dir, 'audit', 'segment.jsonl'), 'utf8');
  } catch {
    return;
  }
  let prev = Buffer.from(seg.prevHash, 'hex');
  let expect = seg.first;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    // After a missing or unreadable record the next one's predecessor is unknown: its hash is not recomputed.
    let broken = false;
    let r: AuditRecord;
    try {
      r = JSON.parse(line) as AuditRecord;
    } catch {
      problems.push({
        code: 'record_altered',
        file: 'audit/segment.jsonl',
        seq: expect,
        message: `the line after record ${expect - 1} is not a record`,
      });
      expect++;
      prev = Buffer.alloc(0);
      continue;
    }
    checked.records++;
    if (r.seq !== expect) {
      problems.push(
        r.seq > expect
          ? {
              code: 'record_missing',
              file: 'audit/segment.jsonl',
              seq: expect,
              message: `record${r.seq - expect > 1 ? `s ${expect} to ${r.seq - 1} are` : ` ${expect} is`} missing from the segment`,
            }
          : {
              code: 'record_unexpected',
              file: 'audit/segment.jsonl',
              seq: r.seq,
              message: `record ${r.seq} appears out of order`,
            },
      );
      broken = true;
      expect = r.seq;
    }
    let computed: string;
    if (r.event === null) computed = r.hash;
    else {
      try {
        computed = recordHash(r.v, prev, r.seq, r.time, canonicalJson(r.event)).toString('hex');
      } catch {
        computed = '';
      }
    }
    if (prev.length !== 32) broken = true;
    if (computed !== r.hash && !broken) {
      problems.push({
        code: 'record_altered',
        file: 'audit/segment.jsonl',
        seq: r.seq,
        message: `record ${r.seq} does not hash to its recorded hash: its content was changed`,
      });
    }
    // Continue from the stated hash so one altered record is named once, not every record after it.
    prev = Buffer.from(r.hash, 'hex');
    hashes.set(r.seq, r.hash);
    expect = r.seq + 1;
  }
  if (expect < seg.end) {
    problems.push({
      code: 'record_missing',
      file: 'audit/segment.jsonl',
      seq: expect,
      message: `records ${expect} to ${seg.end - 1} are missing from the segment`,
    });
  }

  // Proofs: each verifies offline, matches the segment, and is against the anchor checkpoint.
  const pem = key.export({ type: 'spki', format: 'pem' }).toString();
  for (const seq of seg.proofs) {
    const file = `audit/proofs/${seq}.json`;
    const proof = readJson<{ record: { hash: string; prevHash: string }; checkpoint: Checkpoint }>(
      join(dir, file),
    );
    if (!proof) {
      problems.push({
        code: 'proof_missing',
        file,
        seq,
        message: `the inclusion proof of record ${seq} is missing or unreadable`,
      });
      continue;
    }
    checked.proofs++;
    const r = verifyProof(proof, pem);
    if (!r.ok) problems.push({ code: 'proof_invalid', file, seq, message: `record ${seq}: ${r.message}` });
    else if (hashes.has(seq) && hashes.get(seq) !== proof.record.hash) {
      problems.push({
        code: 'record_altered',
        file: 'audit/segment.jsonl',
        seq,
        message: `record ${seq} in the segment is not the record its proof anchors`,
      });
    }
    if (seq === seg.first && proof.record.prevHash !== seg.prevHash) {
      problems.push({
        code: 'record_altered',
        file: 'audit/segment.json',
        seq,
        message: 'the segment does not start where its first record says',
      });
    }
    if (proof.checkpoint.root !== seg.anchor.root || proof.checkpoint.size !== seg.anchor.size) {
      problems.push({
        code: 'proof_invalid',
        file,
        seq,
        message: `the proof of record ${seq} is not against the bundle's anchor checkpoint`,
      });
    }
  }
  // Every record a control cites has its proof.
  const proven = new Set(seg.proofs);
  let entries: string[] = [];
  try {
    entries = readdirSync(join(dir, 'controls')).filter((f) => f.endsWith('.json') && f !== 'index.json');
  } catch {
    entries = [];
  }
  for (const f of entries.sort()) {
    const c = readJson<{ id: string; records: number[] }>(join(dir, 'controls', f));
    for (const s of c?.records ?? []) {
      if (!proven.has(s))
        problems.push({
          code: 'proof_missing',
          file: `controls/${f}`,
          seq: s,
          message: `control \`${c?.id}\` cites record ${s}, which has no inclusion proof`,
        });
    }
  }
}

function verifyPolicies(
  dir: string,
  problems: BundleProblem[],
  checked: BundleVerifyReport['checked'],
): void {
  const index = readJson<{ versions: { hash: string; file: string | null }[] }>(
    join(dir, 'policies', 'index.json'),
  );
  for (const v of index?.versions ?? []) {
    if (v.file === null) continue;
    checked.policies++;
    let text: string;
    try {
      text = readFileSync(join(dir, v.file), 'utf8');
    } catch {
      continue; // named as a missing file
    }
    const r = loadPolicyText(text, v.file);
    if (!r.ok || r.policy.hash !== v.hash) {
      problems.push({
        code: 'policy_altered',
        file: v.file,
        message: `\`${v.file}\` is not the policy version ${v.hash.slice(0, 16)}…: it was edited`,
      });
    }
  }
}
