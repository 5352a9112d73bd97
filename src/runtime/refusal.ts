/**
 * How a refused action reads to the model, the same at every enforcement point (gateway, adapters):
 * what refused it, why, and what to do next.
 */
import type { Decision, Json } from '../types.js';

/** Key under which refused MCP results carry the decision summary in `_meta`. */
export const DECISION_META_KEY = 'execlayer.dev/decision';

/** Words the model can act on. */
export function refusalText(d: Decision): string {
  if (d.effect === 'ask') {
    if (!d.approvalId) return `approval required, but no approval store is configured: ${d.reason}`;
    return `approval pending (id ${d.approvalId}): ask an approver to run \`execlayer approvals approve ${d.approvalId}\`, then retry the same call. ${d.reason}`;
  }
  const rule = d.rule ? `rule \`${d.rule}\`` : 'no rule allows it';
  let text = `denied by policy (${rule}, code ${d.code}, decision ${d.id}): ${d.reason}`;
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
