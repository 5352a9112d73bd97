/**
 * The answer of `POST /v1/decide` (and each item of `/v1/decide/batch`) as it goes on the wire. It is its
 * own type, not the engine's `Decision`: a member added to `Decision` for the runtime's use stays off the
 * wire until it is added here, and schema/decision-api.openapi.json (`DecideResponse`) is checked against
 * the tables below by test/http-openapi.test.ts.
 */
import type { ApprovalSpec, Decision, DecisionCode, Effect, Json, LimitSpec, Mode } from '../../types.js';

/** One decision as `/v1/decide` answers it. deny and ask are answers (HTTP 200), not errors. */
export interface DecideResponse {
  /** Unique id of the decision; report its outcome with `POST /v1/outcome` `{decision: id}`. */
  id: string;
  /** The effect to apply. In shadow mode `allow`, with `wouldBe` holding the real verdict. */
  effect: Effect;
  /** Shadow mode only: what enforce mode would have decided. */
  wouldBe?: Effect;
  /** Id of the deciding rule; null when nothing matched (default deny) or the action was invalid. */
  rule: string | null;
  /** Why, in words an agent can act on. */
  reason: string;
  /** SHA-256 (hex) of the policy that decided. */
  policy: string;
  mode: Mode;
  /** Stable machine code, e.g. `allowed`, `denied_by_rule`, `no_matching_rule`. */
  code: DecisionCode;
  /** Roles of the agent. */
  roles?: string[];
  /** Facts the canonicalisers derived (SQL statement kinds and tables, normalised paths, …). */
  facts?: { [name: string]: Json };
  /** Limits the deciding rule and the agent carry. */
  limits?: LimitSpec[];
  /** For `ask`: how approval works for the rule. */
  approval?: ApprovalSpec;
  /** For `ask`: the pending approval created for exactly this call. */
  approvalId?: string;
  /** For a limit denial: when the limit allows again, in milliseconds (-1: it will not). */
  retryAfterMs?: number;
}

/** The answer of `POST /v1/decide/batch`: one decision per action, in order. */
export interface DecideBatchResponse {
  decisions: DecideResponse[];
}

/** The answer of `POST /v1/outcome`. */
export interface OutcomeResponse {
  decision: string;
  recorded: true;
  /** The label the flow policy gave the reported result, when one was given. */
  label?: Json;
  /** The result as the agent may see it (items a flow policy withholds removed), when one was sent. */
  result?: Json;
  /** How many parts of the result were withheld from the agent. */
  withheld?: number;
}

/** The wire form of `d`: exactly the members of DecideResponse, the required ones first. */
export function toDecideResponse(d: Decision): DecideResponse {
  const r: DecideResponse = {
    id: d.id,
    effect: d.effect,
    rule: d.rule,
    reason: d.reason,
    policy: d.policy,
    mode: d.mode,
    code: d.code,
  };
  if (d.wouldBe !== undefined) r.wouldBe = d.wouldBe;
  if (d.roles !== undefined) r.roles = d.roles;
  if (d.facts !== undefined) r.facts = d.facts;
  if (d.limits !== undefined) r.limits = d.limits;
  if (d.approval !== undefined) r.approval = d.approval;
  if (d.approvalId !== undefined) r.approvalId = d.approvalId;
  if (d.retryAfterMs !== undefined) r.retryAfterMs = d.retryAfterMs;
  return r;
}

/** For each member of T: whether it is required or optional (`-?` keeps every key in the table). */
type Members<T> = { [K in keyof T]-?: object extends Pick<T, K> ? 'optional' : 'required' };

/** Every member of DecideResponse and whether it is always present; the compiler keeps it exact. */
export const DECIDE_RESPONSE_MEMBERS: Readonly<Members<DecideResponse>> = {
  id: 'required',
  effect: 'required',
  wouldBe: 'optional',
  rule: 'required',
  reason: 'required',
  policy: 'required',
  mode: 'required',
  code: 'required',
  roles: 'optional',
  facts: 'optional',
  limits: 'optional',
  approval: 'optional',
  approvalId: 'optional',
  retryAfterMs: 'optional',
};

/** Every value of each closed set on the wire; a `Record` over the union keeps each list complete. */
const EFFECT_SET: Record<Effect, true> = { allow: true, deny: true, ask: true };
const MODE_SET: Record<Mode, true> = { enforce: true, shadow: true };
const CODE_SET: Record<DecisionCode, true> = {
  allowed: true,
  asked: true,
  denied_by_rule: true,
  denied_by_flow: true,
  no_matching_rule: true,
  unknown_agent: true,
  invalid_action: true,
  evaluation_error: true,
  limit_exceeded: true,
  approval_pending: true,
  approval_granted: true,
  suspended: true,
  store_error: true,
  upstream_error: true,
  internal_error: true,
};
export const EFFECTS: readonly Effect[] = Object.keys(EFFECT_SET) as Effect[];
export const MODES: readonly Mode[] = Object.keys(MODE_SET) as Mode[];
export const DECISION_CODES: readonly DecisionCode[] = Object.keys(CODE_SET) as DecisionCode[];
