/**
 * How a refused action reads to the model, the same at every enforcement point (gateway, adapters):
 * what refused it, why, and what to do next.
 */
import type { Decision, Json } from '../types.js';

/** Key under which refused MCP results carry the decision summary in `_meta`. */
export const DECISION_META_KEY = 'execlayer.dev/decision';

/** What refused a call that no rule decided, by decision code. */
const REFUSED_BY: Partial<Record<Decision['code'], string>> = {
  no_matching_rule: 'no rule allows it',
  unknown_agent: 'unknown agent',
  invalid_action: 'invalid call',
  suspended: 'agent suspended',
  limit_exceeded: 'limit reached',
  store_error: 'a store did not answer',
  upstream_error: 'upstream unavailable',
};

/** Words the model can act on. */
export function refusalText(d: Decision): string {
  if (d.effect === 'ask') {
    if (!d.approvalId) return `approval required, but no approval store is configured: ${d.reason}`;
    return `approval pending (id ${d.approvalId}): ask an approver to run \`execlayer approvals approve ${d.approvalId}\`, then retry the same call. ${d.reason}`;
  }
  const by = d.rule ? `rule \`${d.rule}\`` : (REFUSED_BY[d.code] ?? d.code.replaceAll('_', ' '));
  let text = `denied by policy (${by}, code ${d.code}, decision ${d.id}): ${d.reason}`;
  if (d.retryAfterMs !== undefined && d.retryAfterMs >= 0) text += ` Retry after ${d.retryAfterMs} ms.`;
  return text;
}

/** The decision summary a refused MCP result carries under `_meta[DECISION_META_KEY]`. */
export function decisionMeta(d: Decision): { [k: string]: Json } {
  const m: { [k: string]: Json } = {
    decision: d.id,
    effect: d.effect,
    code: d.code,
    rule: d.rule,
    policy: d.policy,
  };
  if (d.approvalId) m.approvalId = d.approvalId;
  if (d.retryAfterMs !== undefined) m.retryAfterMs = d.retryAfterMs;
  return m;
}
