/**
 * RFC 9457 problem details for the decision API. Every error response is one of these: a stable `code`,
 * a lowercase `detail` that says what was wrong, and a JSON `pointer` to the offending field when there is
 * one. Never a stack trace.
 */

/** A problem to send back: HTTP status plus the fields of an `application/problem+json` body. */
export interface Problem {
  status: number;
  /** Stable snake_case code; also the last segment of the `type` URI. */
  code: ProblemCode;
  title: string;
  detail: string;
  /** RFC 6901 JSON pointer into the request body, when one field is to blame. */
  pointer?: string;
}

export type ProblemCode =
  | 'invalid_json'
  | 'invalid_encoding'
  | 'invalid_request'
  | 'batch_too_large'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unauthenticated'
  | 'forbidden_subject'
  | 'not_found'
  | 'method_not_allowed'
  | 'internal_error'
  | 'unknown_decision'
  | 'outcome_not_recorded'
  // Operator API (src/enforce/admin/).
  | 'forbidden'
  | 'not_allowed'
  | 'expired'
  | 'already_decided'
  | 'rate_limited'
  | 'not_suspended'
  | 'store_unavailable'
  | 'record_failed'
  | 'policy_rejected';

const TITLES: Record<ProblemCode, string> = {
  invalid_json: 'Malformed JSON',
  invalid_encoding: 'Body is not UTF-8',
  invalid_request: 'Invalid request',
  batch_too_large: 'Batch too large',
  payload_too_large: 'Request body too large',
  unsupported_media_type: 'Unsupported media type',
  unauthenticated: 'Authentication required',
  forbidden_subject: 'Subject not allowed for this caller',
  not_found: 'Not found',
  method_not_allowed: 'Method not allowed',
  internal_error: 'Internal error',
  unknown_decision: 'No decision awaits this outcome',
  outcome_not_recorded: 'Outcome not recorded',
  forbidden: 'Role required',
  not_allowed: 'Not allowed to decide this approval',
  expired: 'Approval expired',
  already_decided: 'Approval already decided',
  rate_limited: 'Too many decisions',
  not_suspended: 'Agent not suspended',
  store_unavailable: 'Store unavailable',
  record_failed: 'Change not recorded',
  policy_rejected: 'Policy not loaded',
};

/** Builds a problem; `pointer` is included only when given. */
export function problem(status: number, code: ProblemCode, detail: string, pointer?: string): Problem {
  const p: Problem = { status, code, title: TITLES[code], detail };
  if (pointer !== undefined) p.pointer = pointer;
  return p;
}

/** A parsed part of a request, or the problem that refuses it. */
export type ParseResult<T> = { ok: true; value: T } | { ok: false; problem: Problem };

/** A `400 invalid_request` refusal: what was wrong, and the JSON pointer of the field. */
export function invalidRequest(detail: string, pointer: string): { ok: false; problem: Problem } {
  return { ok: false, problem: problem(400, 'invalid_request', detail, pointer) };
}

/** The JSON body of a problem (RFC 9457 members plus the `code` and `pointer` extensions). */
export function problemBody(p: Problem): string {
  return JSON.stringify({
    type: `urn:execlayer:problem:${p.code}`,
    title: p.title,
    status: p.status,
    detail: p.detail,
    code: p.code,
    ...(p.pointer !== undefined ? { pointer: p.pointer } : {}),
  });
}

/** Appends one reference token to a JSON pointer (RFC 6901 escaping). */
export function pointerJoin(base: string, token: string | number): string {
  if (typeof token === 'number') return `${base}/${token}`;
  return `${base}/${token.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}
