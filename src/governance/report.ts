/**
 * `execlayer report`: the evidence bundle for a time window — a directory a deployer hands to an auditor.
 * Deterministic (the same log, window, policies and declarations give byte-identical files: no clock is
 * read, keys are sorted, lists have a fixed order, Ed25519 signatures are deterministic) and verifiable
 * offline with `execlayer report verify`.
 *
 *   manifest.json, manifest.sig, public-key.pem   every file with its sha256, signed with the log's key
 *   summary.html                                   self-contained summary (opens with no network)
 *   controls/index.json, controls/<id>.json        one assessment per control, honest statuses
 *   gap.json, gap.html                             the gap report for the window
 *   audit/segment.jsonl, audit/segment.json        the window's records (lossless) and where they sit
 *   audit/checkpoints.json                         signed checkpoints and consistency proofs between them
 *   audit/proofs/<seq>.json                        an inclusion proof for every record a control cites
 *   policies/index.json, policies/<hash>.yaml      the exact policy versions with their activation times
 *   declarations/…                                 the declaration files the gap report read
 *   approvals.json, stops.json, denials.json       approvals with dwell times, stops with time to halt,
 *                                                  denials per rule per day
 *
 * Streaming: the log is read page by page once; the window's records go straight to disk. Only leaf hashes
 * (64 bytes per record, plus the proof level cache) and counters stay in memory.
 */
import { createHash, sign } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { type Checkpoint, type SigningKey, verifyCheckpoint } from '../audit/checkpoint.js';
import { leafHash, verifyConsistency } from '../audit/merkle.js';
import { type AuditRecord, toAuditRecord } from '../audit/record.js';
import type { AuditStore } from '../audit/store.js';
import type { CheckedPolicy } from '../policy/check.js';
import { type Control, evaluateControls, type LogFacts } from './controls.js';
import type { Declarations } from './declaration.js';
import { type Evidence, EvidenceCollector } from './evidence.js';
import { GapAnalyzer, type GapReport } from './gap.js';
import { gapHtml } from './gap-render.js';
import { consistency, inclusionProof, LeafStore, levelTree } from './proofs.js';
import { summaryHtml } from './report-html.js';

/** The format name in the manifest; verify refuses others. */
export const BUNDLE_FORMAT = 'execlayer-evidence/v1';
/** What the manifest signature covers: this prefix, then the manifest.json bytes. */
export const MANIFEST_SIG_PREFIX = 'execlayer-evidence-manifest/v1\n';

const PAGE = 10_000;

export interface ReportOptions {
  store: AuditStore;
  key: SigningKey;
  /** The policy in force (for the gap report) and older versions, with their exact text. */
  policy: CheckedPolicy;
  policyTexts: { file: string; text: string; hash: string }[];
  declarations: Declarations;
  declarationTexts: { file: string; text: string }[];
  window: { from: number; to: number };
  agents?: readonly string[];
  out: string;
  /** Example record ids per gap row (default 5). */
  examples?: number;
}

export interface ReportResult {
  files: number;
  records: number;
  proofs: number;
  controls: Control[];
  gap: GapReport;
  unanchored: number;
}

/** Thrown when the bundle cannot be built (no checkpoint, a damaged log, a non-empty output directory). */
export class ReportError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** JSON with object keys sorted at every level and two-space indentation: the same value, the same bytes. */
export function stableJson(value: unknown): string {
  return `${JSON.stringify(sortKeys(value), null, 2)}\n`;
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  return v;
}

/** The bytes the manifest signature covers. */
export function manifestMessage(manifest: Buffer): Buffer {
  return Buffer.concat([Buffer.from(MANIFEST_SIG_PREFIX, 'utf8'), manifest]);
}

/** Builds the bundle into `out` (created; must not exist or be empty). */
export async function buildReport(o: ReportOptions): Promise<ReportResult> {
  if (existsSync(o.out) && readdirSync(o.out).length > 0) {
    throw new ReportError('output_not_empty', `output directory \`${o.out}\` is not empty; give a new one`);
  }
  const { store } = o;
  const head = await store.head();
  const checkpoints = await store.checkpoints();
  const latest = checkpoints.at(-1);
  if (latest === undefined) {
    throw new ReportError(
      'no_checkpoint',
      'the audit log has no signed checkpoint yet: nothing can be proven',
    );
  }
  let first = await store.seqAtTime(o.window.from);
  let end = Math.max(first, await store.seqAtTime(o.window.to));
  // The segment ends at a checkpoint so that every record in it is anchored to a signature.
  const anchor = checkpoints.find((c) => c.size >= end) ?? latest;
  const unanchored = Math.max(0, end - anchor.size);
  end = Math.min(end, anchor.size);
  first = Math.min(first, end);
  const before = [...checkpoints].reverse().find((c) => c.size <= first);
  const inBundle = checkpoints.filter((c) => c.size >= (before?.size ?? 0) && c.size <= anchor.size);

  mkdirSync(join(o.out, 'audit', 'proofs'), { recursive: true });
  const files = new Map<string, { sha256: string; bytes: number }>();
  const put = (rel: string, content: string | Buffer) => {
    const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    mkdirSync(dirname(join(o.out, rel)), { recursive: true });
    writeFileSync(join(o.out, rel), buf);
    files.set(rel, { sha256: createHash('sha256').update(buf).digest('hex'), bytes: buf.length });
  };

  const leaves = new LeafStore(anchor.size);
  const gap = new GapAnalyzer({
    policy: o.policy,
    declarations: o.declarations,
    ...(o.agents ? { agents: o.agents } : {}),
    window: o.window,
    examples: o.examples ?? 5,
  });
  const collector = new EvidenceCollector(o.window, { first, end });
  const wanted = o.agents ? new Set(o.agents) : undefined;
  let prunedUntilTime: number | null = null;
  let logStart: number | null = null;
  let prevHash: Buffer = Buffer.alloc(32);
  let segmentCount = 0;
  const segment = createWriteStream(join(o.out, 'audit', 'segment.jsonl'));
  const segmentHash = createHash('sha256');
  let segmentBytes = 0;
  const write = (line: string) =>
    new Promise<void>((resolve, reject) => {
      const buf = Buffer.from(line, 'utf8');
      segmentHash.update(buf);
      segmentBytes += buf.length;
      if (segment.write(buf)) resolve();
      else segment.once('drain', resolve).once('error', reject);
    });
  try {
    for (let from = 0; from < anchor.size; ) {
      const rows = await store.read(from, Math.min(PAGE, anchor.size - from));
      if (rows.length === 0) break;
      let lines = '';
      for (const row of rows) {
        if (row.seq !== from)
          throw new ReportError(
            'audit_corrupt',
            `record ${from} is missing from the log; run \`execlayer audit verify\``,
          );
        leaves.push(leafHash(row.hash));
        if (row.seq === 0) logStart = row.time;
        if (row.seq === head.prunedBefore - 1) prunedUntilTime = row.time;
        if (row.seq === first - 1) prevHash = row.hash;
        if (row.seq >= first && row.seq < end) {
          const r = toAuditRecord(row);
          lines += `${JSON.stringify(r)}\n`;
          segmentCount++;
          gap.observe(r);
          const who = recordAgent(r);
          if (!wanted || who === null || who === '*' || wanted.has(who)) collector.observe(r);
        }
        from++;
      }
      if (lines) await write(lines);
    }
  } finally {
    await new Promise<void>((resolve) => segment.end(resolve));
  }
  files.set('audit/segment.jsonl', { sha256: segmentHash.digest('hex'), bytes: segmentBytes });
  if (leaves.size !== anchor.size)
    throw new ReportError(
      'audit_corrupt',
      'the log is shorter than its checkpoint; run `execlayer audit verify`',
    );

  const mth = levelTree(leaves);
  if (mth(0, anchor.size).toString('hex') !== anchor.root) {
    throw new ReportError(
      'audit_corrupt',
      `the records do not match checkpoint ${anchor.size}; run \`execlayer audit verify\``,
    );
  }
  const consistencyProofs = inBundle.slice(1).map((to, i) => consistency(mth, inBundle[i] as Checkpoint, to));
  const consistencyVerified =
    inBundle.every((c) => verifyCheckpoint(c, o.key.publicKey)) &&
    consistencyProofs.every((p) =>
      verifyConsistency(
        p.from.size,
        p.to.size,
        Buffer.from(p.from.root, 'hex'),
        Buffer.from(p.to.root, 'hex'),
        p.proof.map((h) => Buffer.from(h, 'hex')),
      ),
    );

  const gapReport = gap.finish();
  const evidence = collector.finish();
  const declared = [...o.declarations.agents.values()].filter((d) => !wanted || wanted.has(d.id));
  const facts: LogFacts = {
    prunedBefore: head.prunedBefore,
    prunedUntilTime,
    logStart,
    checkpoints: inBundle.length,
    consistencyVerified,
    unanchored,
  };
  const controls = evaluateControls(evidence, gapReport, declared, facts);

  // Inclusion proofs for every record a control or a gap row cites, and the segment's ends (which anchor
  // the whole chain between them).
  const cited = new Set<number>();
  for (const c of controls) for (const s of c.records) cited.add(s);
  for (const r of gapReport.rows) for (const s of r.examples) cited.add(s);
  if (segmentCount > 0) {
    cited.add(first);
    cited.add(end - 1);
  }
  const proofs: number[] = [];
  for (const seq of [...cited].sort((a, b) => a - b)) {
    if (seq < first || seq >= end) continue;
    const rows = await store.read(Math.max(0, seq - 1), seq === 0 ? 1 : 2);
    const row = rows.at(-1);
    if (!row || row.seq !== seq || row.event === null) continue;
    const r = toAuditRecord(row);
    if (r.event === null) continue;
    const prevHash = seq === 0 ? Buffer.alloc(32) : (rows[0] as { hash: Buffer }).hash;
    const at = { v: r.v, seq, time: r.time, hash: row.hash, prevHash, event: r.event };
    put(`audit/proofs/${seq}.json`, stableJson(inclusionProof(leaves, mth, anchor, at)));
    proofs.push(seq);
  }
  const proven = new Set(proofs);
  for (const c of controls) c.records = c.records.filter((s) => proven.has(s));

  put(
    'audit/segment.json',
    stableJson({
      first,
      end,
      records: segmentCount,
      prevHash: prevHash.toString('hex'),
      anchor,
      unanchored,
      prunedBefore: head.prunedBefore,
      proofs,
    }),
  );
  put('audit/checkpoints.json', stableJson({ checkpoints: inBundle, consistency: consistencyProofs }));

  // Policy versions: the texts given, and every version that decided or was activated in the window.
  const texts = new Map(o.policyTexts.map((p) => [p.hash, p]));
  const versions = new Map(evidence.policies.map((p) => [p.hash, p]));
  for (const t of o.policyTexts)
    if (!versions.has(t.hash))
      versions.set(t.hash, {
        hash: t.hash,
        activations: [],
        decisions: 0,
        firstDecision: null,
        lastDecision: null,
      });
  const policyIndex = [...versions.values()]
    .sort((a, b) => (a.hash < b.hash ? -1 : 1))
    .map((v) => {
      const t = texts.get(v.hash);
      if (t) put(`policies/${v.hash}.yaml`, t.text);
      return {
        ...v,
        file: t ? `policies/${v.hash}.yaml` : null,
        source: t ? basename(t.file) : null,
        inForce: v.hash === o.policy.hash,
      };
    });
  put('policies/index.json', stableJson({ versions: policyIndex }));
  const declIndex = o.declarationTexts.map((d, i) => {
    const rel = `declarations/${String(i + 1).padStart(2, '0')}-${basename(d.file)}`;
    put(rel, d.text);
    return { file: rel, source: basename(d.file), sha256: createHash('sha256').update(d.text).digest('hex') };
  });
  put('declarations/index.json', stableJson({ files: declIndex }));
  const bundlePath = new Map(
    o.declarationTexts.map((d, i) => [d.file, declIndex[i]?.file ?? basename(d.file)]),
  );

  // The gap report names its inputs by bundle path, not by where they were on the building machine.
  const gapOut: GapReport = {
    ...gapReport,
    policy: { hash: gapReport.policy.hash, file: `policies/${gapReport.policy.hash}.yaml` },
    declarations: declIndex.map((d) => ({ file: d.file, sha256: d.sha256 })),
    rows: gapReport.rows.map((r) =>
      r.capability
        ? {
            ...r,
            capability: {
              ...r.capability,
              file: bundlePath.get(r.capability.file) ?? basename(r.capability.file),
            },
          }
        : r,
    ),
  };
  put('gap.json', stableJson(gapOut));
  put('gap.html', gapHtml(gapOut));
  put('approvals.json', stableJson({ approvals: evidence.approvals }));
  put('stops.json', stableJson({ stops: evidence.stops }));
  put('denials.json', stableJson({ byRule: evidence.denialsByRule }));
  put(
    'controls/index.json',
    stableJson({
      controls: controls.map((c) => ({ id: c.id, framework: c.framework, title: c.title, status: c.status })),
    }),
  );
  for (const c of controls) put(`controls/${c.id}.json`, stableJson(c));
  put(
    'summary.html',
    summaryHtml({
      evidence,
      controls,
      gap: gapOut,
      policies: policyIndex,
      facts,
      keyId: o.key.keyId,
      window: o.window,
    }),
  );
  put('public-key.pem', o.key.publicPem);

  const manifest = Buffer.from(
    stableJson({
      format: BUNDLE_FORMAT,
      window: o.window,
      agents: o.agents ? [...o.agents].sort() : null,
      keyId: o.key.keyId,
      anchor,
      files: [...files.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, f]) => ({ path, ...f })),
    }),
    'utf8',
  );
  writeFileSync(join(o.out, 'manifest.json'), manifest);
  writeFileSync(
    join(o.out, 'manifest.sig'),
    `${sign(null, manifestMessage(manifest), o.key.privateKey).toString('base64')}\n`,
  );
  return {
    files: files.size + 2,
    records: segmentCount,
    proofs: proofs.length,
    controls,
    gap: gapOut,
    unanchored,
  };
}

function recordAgent(r: AuditRecord): string | null {
  const e = r.event;
  if (e === null) return null;
  if (e.type === 'decision') return e.action.agent;
  if (e.type === 'approval' || e.type === 'outcome' || e.type === 'agent') return e.agent;
  return null;
}

export type { Evidence };
