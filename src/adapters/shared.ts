/**
 * What every framework adapter shares: turn one tool call into an Action, ask the runtime, and phrase
 * the answer for the model. Adapters add no decision logic of their own — every verdict comes from
 * `layer.authorize`, every outcome goes to `layer.outcome`, exactly as at the gateway.
 */

import { denyDecision } from '../engine/deny.js';
import { messageOf } from '../errors.js';
import type { ExecLayer } from '../runtime/exec-layer.js';
import { DECISION_META_KEY, decisionMeta, refusalText } from '../runtime/refusal.js';
import type { Action, Decision, EnforcementPoint, Json } from '../types.js';

export { DECISION_META_KEY, decisionMeta, refusalText };

/**
 * The part of an ExecLayer the adapters call. Any ExecLayer satisfies it; `deliver` hands results to the
 * policy's flow rules (a layer without it has none).
 */
export type AdapterLayer = Pick<ExecLayer, 'authorize' | 'outcome' | 'waitForApproval'> &
  Partial<Pick<ExecLayer, 'deliver'>>;

/** Options common to the framework adapters. */
export interface AdapterOptions {
  /**
   * The agent id the policy knows. Set by the application from its own configuration or the
   * authenticated channel — never from anything the model wrote.
   */
  agent: string;
  /** Session id, for per-session limits and the audit trail. */
  session?: string;
  /** Prepended to each framework tool name to form the policy tool name (`files.` + `read_file`). */
  prefix?: string;
  /** The human the agent acts for, recorded with each decision. */
  onBehalfOf?: string;
  /**
   * For `ask` decisions: how long to wait for a reviewer before telling the model the call is pending.
   * 0 (the default) reports the pending approval at once; the model can retry after it is granted.
   */
  approvalTimeoutMs?: number;
  /** Called with every decision (after any approval wait), e.g. for metrics. Exceptions are ignored. */
  onDecision?: (decision: Decision, action: Action) => void;
}

/** The result of asking the runtime about one tool call. */
export type CallVerdict =
  | { allowed: true; decision: Decision; action: Action }
  | { allowed: false; decision: Decision; action: Action; message: string };

/**
 * A refused tool call, thrown where a framework expects an exception (AI SDK `execute`, a direct
 * LangChain tool invoke). The message is what the model reads; `decision` is the full verdict.
 */
export class ToolCallRefusedError extends Error {
  /** `denied` for a deny; `approval_required` for an ask still waiting for a reviewer. */
  readonly code: 'denied' | 'approval_required';
  readonly decision: Decision;
  constructor(message: string, decision: Decision) {
    super(message);
    this.name = 'ToolCallRefusedError';
    this.code = decision.effect === 'ask' ? 'approval_required' : 'denied';
    this.decision = decision;
  }
}

/** Codes of {@link AdapterError}. */
export type AdapterErrorCode =
  /** A tool whose calls would not pass through ExecLayer (no `execute`, not a function tool, …). */
  | 'unprotectable_tool'
  /** An MCP server that is already protected: protecting it twice would count every call twice. */
  | 'already_protected'
  /** An MCP server of a shape this version cannot protect. */
  | 'unsupported_server';

/**
 * Thrown by every framework adapter at set-up (never during a call) when a tool or server cannot be
 * protected: ExecLayer refuses to start rather than leave it unprotected.
 */
export class AdapterError extends Error {
  readonly code: AdapterErrorCode;
  /** The tool that cannot be protected (`unprotectable_tool`). */
  readonly tool?: string;
  constructor(code: AdapterErrorCode, message: string, tool?: string) {
    super(message);
    this.name = 'AdapterError';
    this.code = code;
    if (tool !== undefined) this.tool = tool;
  }
}

/** The error for a refused verdict. */
export function refusalError(verdict: CallVerdict & { allowed: false }): ToolCallRefusedError {
  return new ToolCallRefusedError(verdict.message, verdict.decision);
}

/**
 * Builds the Action for one call. Non-object inputs (a string-input tool) are authorized as
 * `{ input: <value> }`, so a policy can still constrain them.
 */
export function toAction(opts: AdapterOptions, name: string, input: unknown): Action {
  const args =
    typeof input === 'object' && input !== null && !Array.isArray(input)
      ? (input as { [key: string]: Json })
      : { input: (input === undefined ? null : input) as Json };
  const action: Action = { agent: opts.agent, tool: `${opts.prefix ?? ''}${name}`, args };
  if (opts.session !== undefined) action.session = opts.session;
  if (opts.onBehalfOf !== undefined) action.onBehalfOf = opts.onBehalfOf;
  return action;
}

/**
 * Authorizes one call. Never throws: a failure anywhere becomes a refusal with a reason.
 */
export async function authorizeCall(
  layer: AdapterLayer,
  action: Action,
  opts: AdapterOptions,
  point: EnforcementPoint = 'sdk',
  signal?: AbortSignal,
): Promise<CallVerdict> {
  let decision: Decision;
  try {
    decision = await layer.authorize(action, { point });
    if (decision.effect === 'ask' && decision.approvalId && (opts.approvalTimeoutMs ?? 0) > 0) {
      const status = await layer.waitForApproval(decision.approvalId, {
        timeoutMs: opts.approvalTimeoutMs ?? 0,
        ...(signal ? { signal } : {}),
      });
      // A grant is bound to this exact call; authorizing again consumes it and records the use.
      if (status === 'granted') decision = await layer.authorize(action, { point });
    }
  } catch (error) {
    // INVARIANT: fail closed — authorize is specified never to reject; if it does, the call is refused.
    decision = internalDenial(error);
  }
  try {
    opts.onDecision?.(decision, action);
  } catch {
    // An observer must not change the verdict.
  }
  if (decision.effect === 'allow') return { allowed: true, decision, action };
  return { allowed: false, decision, action, message: refusalText(decision) };
}

/**
 * Runs an allowed call and records its outcome (which also releases its concurrency slot). The tool's
 * own error is rethrown unchanged so the framework handles it as it would without ExecLayer.
 */
export async function runAllowed<R>(
  layer: AdapterLayer,
  decision: Decision,
  fn: () => Promise<R> | R,
): Promise<R> {
  const started = performance.now();
  let result: R;
  try {
    result = await fn();
  } catch (error) {
    await recordFailure(layer, decision, error, started);
    throw error;
  }
  const delivered = await deliverResult(layer, decision, result, started);
  await recordOutcome(layer, decision, { ok: true, result, durationMs: performance.now() - started });
  return delivered;
}

/**
 * Hands an allowed call's result to the policy's flow rules before the model sees it, and returns what
 * the model may see (withheld parts removed). When the session state cannot be updated the result is not
 * shown: the failure is recorded as the outcome and thrown.
 */
export async function deliverResult<R>(
  layer: AdapterLayer,
  decision: Decision,
  result: R,
  started: number,
): Promise<R> {
  if (!layer.deliver) return result;
  const seen = await layer.deliver(decision, { result });
  if (seen.ok) return seen.result as R;
  const error = new Error(seen.reason);
  await recordFailure(layer, decision, error, started);
  throw error;
}

/** Records that an allowed call failed (the error's message, how long it ran). */
export function recordFailure(
  layer: AdapterLayer,
  decision: Decision,
  error: unknown,
  started: number,
): Promise<void> {
  return recordOutcome(layer, decision, {
    ok: false,
    error: messageOf(error),
    durationMs: performance.now() - started,
  });
}

/** Records an outcome; a recording failure must not turn a finished call into a retry by the model. */
export async function recordOutcome(
  layer: AdapterLayer,
  decision: Decision,
  o: { ok: boolean; error?: string; result?: unknown; durationMs: number },
): Promise<void> {
  try {
    await layer.outcome(decision, o);
  } catch (error) {
    process.emitWarning(
      `execlayer: could not record the outcome of decision ${decision.id}: ${messageOf(error)}`,
      { code: 'EXECLAYER_OUTCOME_NOT_RECORDED' },
    );
  }
}

function internalDenial(error: unknown): Decision {
  return denyDecision(
    'internal_error',
    `the authorization check failed (${messageOf(error)}), so the call was refused`,
  );
}
