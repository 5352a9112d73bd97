/** Typed errors the SDK throws at its edge (`guard`). Hot-path code returns Decisions instead. */
import type { Decision } from '../types.js';

/** The action was denied; `decision` says by which rule and why. */
export class DeniedError extends Error {
  readonly code = 'denied' as const;
  readonly decision: Decision;
  constructor(decision: Decision) {
    super(`denied: ${decision.reason}`);
    this.name = 'DeniedError';
    this.decision = decision;
  }
}

/** The action needs a human's approval first; `approvalId` names the pending request. */
export class ApprovalRequiredError extends Error {
  readonly code = 'approval_required' as const;
  readonly decision: Decision;
  readonly approvalId: string | undefined;
  constructor(decision: Decision) {
    super(
      decision.approvalId
        ? `approval required (id ${decision.approvalId}): ${decision.reason}`
        : `approval required: ${decision.reason}`,
    );
    this.name = 'ApprovalRequiredError';
    this.decision = decision;
    this.approvalId = decision.approvalId;
  }
}

/** A policy that cannot be loaded. `problems` are formatted `file:line:column: error[...]` lines. */
export class PolicyError extends Error {
  readonly code = 'policy_invalid' as const;
  readonly problems: readonly string[];
  constructor(problems: readonly string[], options?: { cause?: unknown }) {
    super(`policy is invalid:\n${problems.join('\n')}`, options);
    this.name = 'PolicyError';
    this.problems = problems;
  }
}
