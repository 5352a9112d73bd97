/**
 * `execlayer/audit`: the tamper-evident audit trail. Open and write it (`openAuditLog`), read and query
 * it, verify a whole log against its signing key (`verifyStore`), prove one record's inclusion and check
 * such a proof offline (`proveInclusion`, `verifyProof`), and replay recorded actions against a candidate
 * policy (`replay`). See docs/audit.md.
 */

export { type Checkpoint, keyFingerprint, parsePublicKey } from './checkpoint.js';
export { AuditError, type AuditErrorCode, isAuditError } from './errors.js';
// The log: append, query, checkpoint, prune.
export {
  AuditLog,
  type AuditLogOptions,
  DEFAULT_RETENTION_MS,
  defaultKeyPath,
  openAuditLog,
  openStore,
  type PruneResult,
  type Receipt,
} from './log.js';
export type { AuditRecord, RecordFilter } from './record.js';
// Replay: what a candidate policy would have decided for the recorded actions.
export {
  type DecideFn,
  type ReplayChange,
  type ReplayExample,
  type ReplayReport,
  replay,
} from './replay.js';
export type { AuditStore, RecordQuery } from './store.js';
// Verification and proofs.
export {
  type InclusionProof,
  type ProofCheck,
  proveInclusion,
  type VerifyOptions,
  type VerifyProblem,
  type VerifyProblemCode,
  type VerifyReport,
  verifyProof,
  verifyStore,
} from './verify.js';
