/**
 * ExecLayer: decides, before each action an AI agent takes, whether this agent may take this action
 * with these arguments now. Default deny, capabilities by policy, every decision recorded.
 *
 * The root holds the runtime (`createExecLayer`), the model every enforcement point shares (`Action`,
 * `Decision`), the errors thrown at the edges, and policy loading and compiling. Optional parts are
 * subpaths: `execlayer/stores` (limit, approval, stop-switch and tool-pin stores), `execlayer/audit` (the
 * audit log, verification, proofs, replay), `execlayer/remote` (the SDK over the HTTP decision API),
 * `execlayer/http` (the decision and operator APIs), `execlayer/mcp` (the gateway) and
 * `execlayer/adapters/*` (agent frameworks).
 *
 * @example
 * ```ts
 * import { createExecLayer } from 'execlayer';
 * const layer = await createExecLayer({ policy: './policy.yaml' });
 * const refund = layer.guard(payments.refund, { agent: 'support-bot', tool: 'payments.refund' });
 * await refund({ amount: 25, currency: 'EUR', customer: 'c-42' }); // throws DeniedError when refused
 * ```
 */
export { CanonicalJsonError, canonicalJson, jsonDigest } from './canonical-json.js';
export { compile, type Engine } from './engine/compile.js';
export { factsReady, initFacts } from './facts/index.js';
export type { Label } from './flows/label.js';
export { sessionsFromAudit } from './flows/rebuild.js';
export type { FlowState, SessionRecord } from './flows/state.js';
export type { CheckedPolicy } from './policy/check.js';
export {
  type LoadResult,
  loadPolicyFile,
  loadPolicyObject,
  loadPolicyText,
  type PolicyLoadOptions,
} from './policy/load.js';
export { formatProblem, type Problem } from './policy/problems.js';
export { policySchema } from './policy/schema.js';
export { type PolicySignature, signPolicyHash, verifyPolicySignature } from './policy/signature.js';
export type { PolicyDocument, RuleSpec } from './policy/types.js';
export { ApprovalRequiredError, DeniedError, PolicyError } from './runtime/errors.js';
export {
  type ApprovalWait,
  createExecLayer,
  type Delivered,
  type EndorseOutcome,
  type EndorseRequest,
  type ExecLayer,
  type ExecLayerOptions,
  formatRuntimeEvent,
  type ReloadOutcome,
  type ReloadTrigger,
  type RuntimeEvent,
} from './runtime/exec-layer.js';
export type { PolicyWatchTiming } from './runtime/policy-watch.js';

export type {
  Action,
  ApprovalSpec,
  AuditEvent,
  Decision,
  DecisionCode,
  Effect,
  EnforcementPoint,
  FlowEvent,
  FlowVerdictInfo,
  Json,
  LimitScope,
  LimitSpec,
  Mode,
  Recorder,
  RecordOptions,
} from './types.js';
