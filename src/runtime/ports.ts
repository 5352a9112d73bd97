/**
 * What the runtime needs from its backends, stated structurally so the runtime depends on no store
 * module. The limit, approval and suspension stores satisfy these interfaces.
 */
import type { Endorsement, FlowDelta, SessionRecord } from '../flows/state.js';
import type { Action, Json, LimitSpec } from '../types.js';

export interface LimitTicketPort {
  released: boolean;
}

export interface LimitPort {
  consume(
    specs: readonly LimitSpec[],
    action: Action,
    roles: readonly string[],
    nowMs: number,
  ): Promise<
    | { ok: true; ticket: LimitTicketPort }
    | { ok: false; limit: LimitSpec; retryAfterMs: number; reason: string; code: string }
  >;
  release(ticket: LimitTicketPort, options?: { refund?: boolean }): Promise<void>;
}

export interface ApprovalBinding {
  agent: string;
  tool: string;
  argsDigest: string;
  policy: string;
  session?: string;
}

export interface ApprovalPort {
  request(
    req: ApprovalBinding & {
      onBehalfOf?: string;
      rule: string;
      reason: string;
      args: Json;
      ttlMs: number;
      uses: number;
      /** Who may decide; empty = any approver other than the agent itself. */
      approvers: string[];
      decisionId: string;
    },
    nowMs: number,
  ): Promise<{ id: string }>;
  consumeGrant(
    binding: ApprovalBinding,
    nowMs: number,
  ): Promise<{ id: string; approver?: string } | undefined>;
  get(id: string): Promise<{ status: string } | undefined>;
}

export interface StatePort {
  isSuspended(agent: string): Promise<{ suspended: boolean; reason?: string; by?: string }>;
}

/** Session flow state (labels delivered, values seen, sequence steps); rejects when it cannot answer. */
export interface SessionPort {
  append(scope: string, delta: FlowDelta): Promise<void>;
  endorse(scope: string, endorsement: Endorsement): Promise<void>;
  load(scope: string): Promise<SessionRecord>;
}
