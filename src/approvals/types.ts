/**
 * Human approvals bound to the exact call. An `ask` decision creates a pending approval for one binding
 * (agent, tool, sha256 of the canonical args, policy hash, session); an approver grants or denies it; a
 * grant is consumed atomically by the identical call, at most `uses` times, before it expires.
 */
import type { Json, Recorder } from '../types.js';

export type ApprovalStatus = 'pending' | 'granted' | 'denied' | 'expired' | 'used';

/** What a grant is bound to. A grant never covers a different value of any of these fields. */
export interface ApprovalBinding {
  agent: string;
  tool: string;
  /** sha256 (hex) of the canonical JSON of the arguments (`jsonDigest(args)`). */
  argsDigest: string;
  /** Content hash of the policy that asked. */
  policy: string;
  session?: string;
}

/** A request for approval, made by the runtime for an `ask` decision. */
export interface ApprovalRequest extends ApprovalBinding {
  onBehalfOf?: string;
  /** Id of the rule that asked. */
  rule: string;
  /** Why approval is needed (the decision's reason). */
  reason: string;
  /** The arguments as the policy allows them to be shown (redacted). */
  args: Json;
  /** How long the pending request, and later the grant, stay valid. */
  ttlMs: number;
  /** How many calls one grant allows (default 1). */
  uses: number;
  /** Who may decide; empty or absent = any approver other than the agent itself. */
  approvers?: string[];
  /** The decision that asked, linked in the recorded events. */
  decisionId?: string;
}

/** One approval as stored. */
export interface Approval extends ApprovalRequest {
  id: string;
  /** `expired` is reported as soon as `expiresAt` has passed, even before a sweep stores it. */
  status: ApprovalStatus;
  approvers: string[];
  /** How many times the grant has been used. */
  used: number;
  createdAt: number;
  /** Pending: createdAt + ttl. Granted: decidedAt + ttl. */
  expiresAt: number;
  decidedAt?: number;
  approver?: string;
  note?: string;
}

/** Filter for `list`. */
export interface ApprovalFilter {
  status?: ApprovalStatus;
  agent?: string;
  /** At most this many, newest first. Default 100, max 1000. */
  limit?: number;
}

/** An approver's verdict. */
export interface ApprovalVerdict {
  approve: boolean;
  /** Identity of the human deciding (from their authenticated channel). */
  approver: string;
  note?: string;
}

/** Backend for approvals. Edge methods throw `ApprovalError`; `consumeGrant` never throws. */
export interface ApprovalStore {
  /** Creates a pending approval, or returns the existing pending one for the same binding. */
  request(req: ApprovalRequest, nowMs: number): Promise<Approval>;
  get(id: string, nowMs?: number): Promise<Approval | undefined>;
  /** Newest first; stores expired rows as `expired` (recording the events) before listing. */
  list(filter?: ApprovalFilter, nowMs?: number): Promise<Approval[]>;
  /**
   * Grants or denies a pending approval. Refuses (ApprovalError) when it is unknown, expired or already
   * decided, when the approver may not decide it, or when the approver exceeded the rate cap.
   */
  decide(id: string, verdict: ApprovalVerdict, nowMs: number): Promise<Approval>;
  /**
   * Finds a granted, unexpired, not used-up grant for exactly this binding and consumes one use
   * atomically. Resolves `undefined` when there is none or on any store error (fail closed).
   */
  consumeGrant(
    binding: ApprovalBinding & { decisionId?: string },
    nowMs: number,
  ): Promise<Approval | undefined>;
  close(): Promise<void>;
}

/** Receives each newly created pending approval (e.g. the webhook notifier). Must not block. */
export interface ApprovalNotifier {
  notify(approval: Approval): void;
}

/** Options every approval backend accepts. */
export interface ApprovalStoreOptions {
  /** Records an `ApprovalEvent` after each successful state change. */
  recorder?: Recorder;
  /** Told about each new pending approval (not about grouped repeats). */
  notifier?: ApprovalNotifier;
  /** Max decisions one approver may make per minute (against approval fatigue). Default 30. */
  approverMaxPerMinute?: number;
}

export type ApprovalErrorCode =
  | 'not_found'
  | 'expired'
  | 'already_decided'
  | 'not_allowed'
  | 'rate_limited'
  | 'invalid_request'
  | 'store_error'
  | 'record_failed';

/** Error of the approval stores' edge methods: a stable code, a lowercase message, data. */
export class ApprovalError extends Error {
  readonly code: ApprovalErrorCode;
  readonly data: { [k: string]: Json };
  constructor(code: ApprovalErrorCode, message: string, data: { [k: string]: Json } = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ApprovalError';
    this.code = code;
    this.data = data;
  }
}
