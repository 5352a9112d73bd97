/** Errors of the audit trail: a stable snake_case `code`, lowercase message, `data` for machines. */

/** Stable codes. `audit_unavailable` is the one enforcement points act on: deny the action. */
export type AuditErrorCode =
  /** The store cannot be written or read right now (connection refused, disk full, read-only). */
  | 'audit_unavailable'
  /** The database exists but is damaged or is not an ExecLayer audit database; it was left untouched. */
  | 'audit_corrupt'
  /** The signing key does not match the key the log was created with, or cannot be read. */
  | 'audit_key_error'
  /** The event cannot be recorded (no JSON form). */
  | 'invalid_event'
  /** A caller asked for something that does not exist (a sequence number past the end, a bad range). */
  | 'invalid_request'
  /** The store URL is not understood. */
  | 'invalid_store_url';

/** The one error type the audit layer throws or rejects with. */
export class AuditError extends Error {
  readonly code: AuditErrorCode;
  readonly data: Record<string, unknown>;
  constructor(
    code: AuditErrorCode,
    message: string,
    options: { cause?: unknown; data?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AuditError';
    this.code = code;
    this.data = options.data ?? {};
  }
}

/** True for an `AuditError`, optionally with the given code. */
export function isAuditError(e: unknown, code?: AuditErrorCode): e is AuditError {
  return e instanceof AuditError && (code === undefined || e.code === code);
}
