/**
 * `execlayer/stores`: the stores the runtime keeps its state in, each opened from a URL (`memory:`,
 * `sqlite:<path>`, `postgres://…`, `redis://…`; which family has which backend: docs/limits-approvals.md).
 * `createExecLayer({ store })` opens them itself; open them here to share one between runtimes, to decide
 * approvals or operate the stop switch from code, or to pass them in with their own options.
 */

// Approvals: requests bound to the exact call, decided by a human, single use.
export { type OpenApprovalStoreOptions, openApprovalStore } from './approvals/open.js';
export {
  type Approval,
  type ApprovalBinding,
  ApprovalError,
  type ApprovalErrorCode,
  type ApprovalFilter,
  type ApprovalNotifier,
  type ApprovalRequest,
  type ApprovalStatus,
  type ApprovalStore,
  type ApprovalStoreOptions,
  type ApprovalVerdict,
} from './approvals/types.js';
export { type WaitOptions, type WaitOutcome, type WaitResult, waitForDecision } from './approvals/wait.js';
export {
  SIGNATURE_HEADER,
  signWebhook,
  TIMESTAMP_HEADER,
  verifyWebhook,
  type WebhookNotifier,
  type WebhookOptions,
  type WebhookPayload,
  webhookNotifier,
} from './approvals/webhook.js';
// Tool pins: the approved definition of each upstream tool, against rug pulls.
export {
  hashToolDefinition,
  openToolPinStore,
  type PinCheck,
  type PinnedDefinition,
  type ToolPin,
  type ToolPinStore,
} from './enforce/mcp/pins.js';
// Limits: rates, value budgets, concurrency, steps per session.
export { type OpenLimitStoreOptions, openLimitStore } from './limits/open.js';
export type {
  LimitFailureCode,
  LimitResult,
  LimitStore,
  LimitStoreOptions,
  LimitTicket,
  ReleaseOptions,
} from './limits/types.js';
// All of the runtime's stores from one URL (or one per family).
export { DEFAULT_STORE, MemoryRecorder, openStores, type Stores, type StoreUrls } from './runtime/stores.js';
export { openSessionStore } from './sessions/open.js';
export type { SessionStore } from './sessions/types.js';
// The stop switch: suspend one agent or all of them.
export {
  AgentStateError,
  type AgentStateStore,
  type AgentStateStoreOptions,
  ALL_AGENTS,
  type Suspension,
  type SuspensionStatus,
} from './state/agent-state.js';
export { type OpenAgentStateStoreOptions, openAgentStateStore } from './state/open.js';
