/**
 * Verify a stored log: read its head, checkpoints and records from an `AuditStore` and hand them to the pure
 * verifier (verifier.ts), which decides. This file only reads, in seq order, a chunk at a time.
 */
import type { KeyObject } from 'node:crypto';
import type { Checkpoint } from './checkpoint.js';
import type { StoredRecord } from './record.js';
import type { AuditStore } from './store.js';
import { BOUNDED_GAPS_META, Verifier, type VerifyFindings } from './verifier.js';

export { type InclusionProof, type ProofCheck, proveInclusion, verifyProof } from './proofs.js';
export {
  BOUNDED_GAPS_META,
  DEFAULT_CHECKPOINT_EVERY,
  type VerifyFindings,
  type VerifyProblem,
  type VerifyProblemCode,
} from './verifier.js';

/** The outcome of `verifyStore`: the verifier's findings and how fast the log was read and checked. */
export interface VerifyReport extends VerifyFindings {
  /** Records checked per second. */
  rate: number;
  elapsedMs: number;
}

/** Options for `verifyStore`. */
export interface VerifyOptions {
  /** Checkpoints held outside the log (e.g. from earlier proofs); the log must contain each of them. */
  trusted?: Checkpoint[];
  /** Called after every chunk with (records done, total expected). */
  onProgress?: (done: number, total: number) => void;
  /** Records per read (default 1 000). */
  chunk?: number;
  /**
   * The most records a writer of this log leaves between two checkpoints (`checkpointEvery` of
   * `openAuditLog`, default 1000). A longer stretch without a checkpoint is reported as
   * `checkpoint_missing`; pass the largest value any writer of the log used.
   */
  checkpointEvery?: number;
}

/**
 * Verify the whole log in `store` against `publicKey` (see verifier.ts for what is checked). While the
 * verifier checks one chunk, the next one is being read.
 */
export async function verifyStore(
  store: AuditStore,
  publicKey: KeyObject,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const started = performance.now();
  const chunk = Math.max(1, Math.floor(options.chunk ?? 1_000));
  const head = await store.head();
  const checkpoints = await store.checkpoints();
  const bounded = await store.meta(BOUNDED_GAPS_META);
  const verifier = new Verifier(
    { head, checkpoints, boundedGapsFrom: bounded === null ? null : Number(bounded) },
    {
      publicKey,
      ...(options.trusted === undefined ? {} : { trusted: options.trusted }),
      ...(options.checkpointEvery === undefined ? {} : { checkpointEvery: options.checkpointEvery }),
    },
  );
  const total = verifier.expectedTotal;
  let next: Promise<StoredRecord[]> | null = store.read(0, chunk);
  while (next !== null) {
    const rows: StoredRecord[] = await next;
    const last = rows.at(-1);
    // A short chunk is the end of the log; the seq after the last row read is where the next one starts.
    next = last === undefined || rows.length < chunk ? null : store.read(last.seq + 1, chunk);
    const more = verifier.push(rows);
    options.onProgress?.(verifier.checked, total);
    if (!more) break;
  }
  // A read started ahead and no longer needed settles on its own; its failure does not change the findings.
  next?.catch(() => undefined);
  const findings = verifier.finish();
  const elapsedMs = performance.now() - started;
  return {
    ...findings,
    rate: elapsedMs > 0 ? (findings.size / elapsedMs) * 1000 : 0,
    elapsedMs,
  };
}
