/**
 * ExecLayer: decides, before each action an AI agent takes, whether this agent may take this action
 * with these arguments now. Default deny, capabilities by policy, every decision recorded.
 *
 * @example
 * ```ts
 * import { createExecLayer } from 'execlayer';
 * const layer = await createExecLayer({ policy: './policy.yaml' });
 * const refund = layer.guard(payments.refund, { agent: 'support-bot', tool: 'payments.refund' });
 * await refund({ amount: 25, currency: 'EUR', customer: 'c-42' }); // throws DeniedError when refused
 * ```
 */
export { checkAction, parseAction } from './engine/action.js';
export { compile, type Engine } from './engine/compile.js';
export { factsReady, initFacts } from './facts/index.js';
export type { Label } from './flows/label.js';
export { sessionsFromAudit } from './flows/rebuild.js';
export type { FlowState, SessionRecord } from './flows/state.js';
export type { CheckedPolicy } from './policy/check.js';
export { type LoadResult, loadPolicyFile, loadPolicyObject, loadPolicyText } from './policy/load.js';
export { formatProblem, type Problem } from './policy/problems.js';
export { policySchema } from './policy/schema.js';
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
export { DEFAULT_STORE, MemoryRecorder, openStores, type Stores, type StoreUrls } from './runtime/stores.js';
export { createRemoteExecLayer, type RemoteExecLayer, type RemoteExecLayerOptions } from './sdk/remote.js';
export { openSessionStore } from './sessions/open.js';
export type { SessionStore } from './sessions/types.js';
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
} from './types.js';
