/**
 * The domain model every layer shares: the action an enforcement point asks about, the decision the
 * engine returns, and the events the audit trail records. This file imports nothing.
 */

/** What a rule does when it matches. Deny beats ask beats allow. */
export type Effect = 'allow' | 'deny' | 'ask';

/** `enforce` applies the decision; `shadow` records what it would have been and lets the action run. */
export type Mode = 'enforce' | 'shadow';

/** JSON value as it crosses the wire: the one canonical parse of the arguments. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** One action an agent wants to take. */
export interface Action {
  /** Agent id, taken from the authenticated channel — never from model output. */
  agent: string;
  /** Fully qualified tool name, e.g. `db.query`, `files.write_file`. */
  tool: string;
  /** The exact arguments that will be forwarded (parsed once; the same object is forwarded). */
  args: { [key: string]: Json };
  session?: string;
  /** The human the agent acts for. */
  onBehalfOf?: string;
  /** Chain of agents that delegated to this one, outermost first. */
  delegation?: string[];
  /** Anything else an enforcement point knows (client address, transport, labels). */
  context?: { [key: string]: Json };
  /**
   * The argument names the target itself declares (an MCP tool's `inputSchema.properties`), when it
   * declares a closed set: any other argument is refused, names compared exactly.
   */
  declaredArgs?: string[];
}

/** A limit attached to a rule or an agent, enforced by the runtime after the engine allows. */
export interface LimitSpec {
  /** Stable id (given in the policy, or derived from the rule id and position). */
  id: string;
  kind: 'calls' | 'sum' | 'concurrent' | 'steps';
  /** Maximum calls / sum / concurrent actions / steps in the window. */
  max: number;
  /** Window length in milliseconds (calls, sum). Steps are per session; concurrency has no window. */
  windowMs?: number;
  /** For `sum`: dotted path into the action, e.g. `args.amount`. */
  sumOf?: string;
  /** What the counter is keyed by; default `['agent']`. */
  scope: LimitScope[];
}

export type LimitScope = 'agent' | 'role' | 'tool' | 'session' | 'principal' | 'global';

/** How an `ask` decision becomes a grant. */
export interface ApprovalSpec {
  /** How long a pending request and a grant stay valid, in milliseconds. */
  ttlMs: number;
  /** How many times one grant may be used (default 1). */
  uses: number;
  /** Who may approve (free-form principals or groups; empty = any authenticated approver). */
  approvers: string[];
}

/** The engine's answer. Never thrown: errors become `deny` with a reason. */
export interface Decision {
  /** Unique id of this decision; outcomes, approvals and audit records link to it. */
  id: string;
  /** The effect to apply. In shadow mode this is `allow` and `wouldBe` holds the real verdict. */
  effect: Effect;
  /** Shadow mode only: what enforce mode would have decided. */
  wouldBe?: Effect;
  /** Id of the deciding rule; null when nothing matched (default deny) or the action was invalid. */
  rule: string | null;
  /** Why, in words an agent can act on: what was refused and what would be allowed. */
  reason: string;
  /** Content hash (sha256, hex) of the policy that decided. */
  policy: string;
  mode: Mode;
  /** Stable machine code for the outcome, e.g. `allowed`, `denied_by_rule`, `no_matching_rule`. */
  code: DecisionCode;
  /**
   * Limits the runtime must consume before the action may run: the deciding allow or ask rule's, then the
   * agent's. An ask's are consumed when the approved call runs.
   */
  limits?: LimitSpec[];
  /** For `ask`: how approval works for this rule. */
  approval?: ApprovalSpec;
  /** Roles of the agent, for limit scoping and reports. */
  roles?: string[];
  /** For `ask`: the pending approval created for exactly this call (set by the runtime). */
  approvalId?: string;
  /** For a limit denial: when the limit allows again, in milliseconds. */
  retryAfterMs?: number;
  /** Facts the canonicalisers derived (e.g. SQL statement kinds and tables), for audit and explain. */
  facts?: { [name: string]: Json };
  /** A flow rule's verdict on this call (see docs/flows.md); `applied: false` in flow shadow mode. */
  flow?: FlowVerdictInfo;
}

/** What a flow rule said about a call, and the results that raised the session's label. */
export interface FlowVerdictInfo {
  effect: 'deny' | 'ask';
  rule: string;
  reason: string;
  /** The taint chain: decisions whose results raised the label, oldest first. */
  chain: { decisionId: string; tool: string; resultDigest: string }[];
  /** False in shadow mode: recorded, not enforced. */
  applied: boolean;
}

export type DecisionCode =
  | 'allowed'
  | 'asked'
  | 'denied_by_rule'
  | 'denied_by_flow'
  | 'no_matching_rule'
  | 'unknown_agent'
  | 'invalid_action'
  | 'evaluation_error'
  | 'limit_exceeded'
  | 'approval_pending'
  | 'approval_granted'
  | 'suspended'
  | 'store_error'
  | 'upstream_error'
  | 'internal_error';

/** Where a decision was enforced. */
export type EnforcementPoint = 'sdk' | 'mcp' | 'http' | 'authzen' | 'cli' | 'replay';

/** Events the audit trail records. `time` and `seq` are assigned by the store. */
export type AuditEvent =
  | DecisionEvent
  | OutcomeEvent
  | ApprovalEvent
  | PolicyEvent
  | AgentStateEvent
  | ToolDefinitionEvent
  | AuthEvent
  | StoreEvent
  | FlowEvent;

export interface DecisionEvent {
  type: 'decision';
  decision: Decision;
  action: {
    agent: string;
    tool: string;
    session?: string;
    onBehalfOf?: string;
    delegation?: string[];
    /** The argument names the target declared, when the enforcement point knew them. */
    declaredArgs?: string[];
    /** Arguments as the policy allows them to be stored (redacted fields replaced). */
    args: Json;
    /** sha256 of the canonical JSON of the original arguments. */
    argsDigest: string;
  };
  point: EnforcementPoint;
  /** Decision latency in microseconds. */
  latencyUs: number;
}

export interface OutcomeEvent {
  type: 'outcome';
  decisionId: string;
  agent: string;
  tool: string;
  ok: boolean;
  error?: string;
  resultDigest?: string;
  durationMs: number;
}

export interface ApprovalEvent {
  type: 'approval';
  status: 'requested' | 'granted' | 'denied' | 'expired' | 'used';
  approvalId: string;
  decisionId?: string;
  agent: string;
  tool: string;
  argsDigest: string;
  approver?: string;
  note?: string;
}

/**
 * A policy load or reload. `loaded`: `policy` came into force, replacing `previous`. `rejected`: the
 * candidate was invalid, unreadable or still being written, and `previous` stayed in force. `unchanged`:
 * a forced reload found the same policy. `trigger`: `start`, `watch` (the file changed), `signal`
 * (SIGHUP), `api` (the operator API; `by` is the caller) or `manual` (a `reload()` call).
 */
export interface PolicyEvent {
  type: 'policy';
  status: 'loaded' | 'rejected' | 'unchanged';
  policy?: string;
  previous?: string;
  source: string;
  problems?: string[];
  trigger?: 'start' | 'watch' | 'signal' | 'api' | 'manual';
  by?: string;
}

export interface AgentStateEvent {
  type: 'agent';
  status: 'suspended' | 'resumed';
  /** `*` for the global emergency stop. */
  agent: string;
  by: string;
  reason?: string;
}

export interface ToolDefinitionEvent {
  type: 'tool';
  status: 'pinned' | 'changed' | 'approved';
  tool: string;
  hash: string;
  previousHash?: string;
  by?: string;
}

export interface AuthEvent {
  type: 'auth';
  status: 'rejected';
  point: EnforcementPoint;
  reason: string;
  remote?: string;
}

/**
 * Written by the audit log itself: records of an append that had failed by its deadline (so their callers
 * were told they were not recorded, and denied their actions) were found committed afterwards.
 */
export interface StoreEvent {
  type: 'store';
  status: 'late_commit';
  store: 'audit';
  /** Seq of the first record that landed late, how many there were, and the first one's hash (hex). */
  seq: number;
  count: number;
  hash: string;
  reason: string;
}

/**
 * A session's flow state changed: a result was delivered (`delta`: its label, the values it let the
 * session see, the sequence steps it took; `withheld`: what the agent did not see) or an approval endorsed
 * one result (`endorsement`). Replaying these events rebuilds every session's state.
 */
export interface FlowEvent {
  type: 'flow';
  status: 'delivered' | 'endorsed';
  agent: string;
  tool: string;
  session?: string;
  onBehalfOf?: string;
  /** The session scope the state is kept under. */
  scope: string;
  decisionId?: string;
  delta?: Json;
  endorsement?: Json;
  /** Items withheld from the agent: how many, and the digest of each. */
  withheld?: { count: number; digests: string[] };
  /** Flow shadow mode: the state is tracked, verdicts are not applied. */
  shadow?: boolean;
}

/**
 * Where enforcement points send events. `record` resolves once the event is durable; it rejects when it
 * cannot be recorded, and callers then deny (fail closed).
 */
export interface Recorder {
  record(event: AuditEvent, options?: RecordOptions): Promise<void>;
}

/** How an event is recorded. */
export interface RecordOptions {
  /**
   * Nothing waits on this event (a denial, an outcome reported after the reply): it may wait a few
   * milliseconds to share a transaction with the next event someone waits on. It is still durable before
   * the promise resolves.
   */
  lazy?: boolean;
}
