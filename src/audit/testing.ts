/** Event builders shared by the audit tests and the benchmark. */

import { jsonDigest } from '../canonical-json.js';
import type { AuditEvent, DecisionEvent, Effect } from '../types.js';

/** A realistic decision event (~500 bytes of canonical JSON) numbered `i`. */
export function decisionEvent(
  i: number,
  over: {
    agent?: string;
    tool?: string;
    effect?: Effect;
    rule?: string | null;
    args?: DecisionEvent['action']['args'];
  } = {},
): DecisionEvent {
  const effect = over.effect ?? 'allow';
  const args = over.args ?? { sql: `select * from customers where id = ${i}`, i };
  return {
    type: 'decision',
    decision: {
      id: `dec_${i.toString(36).padStart(8, '0')}`,
      effect,
      rule: over.rule === undefined ? 'support.db-read' : over.rule,
      reason: effect === 'allow' ? 'allowed by rule `support.db-read`' : 'no rule allows this action',
      policy: 'b1946ac92492d2347c6235b4d2611184b1946ac92492d2347c6235b4d2611184',
      mode: 'enforce',
      code: effect === 'allow' ? 'allowed' : effect === 'ask' ? 'asked' : 'denied_by_rule',
      facts: { sql: { statements: ['select'], tables: ['customers'] } },
    },
    action: {
      agent: over.agent ?? 'support-bot',
      tool: over.tool ?? 'db.query',
      session: 'sess_7f3a',
      onBehalfOf: 'alice@example.com',
      args,
      argsDigest: jsonDigest(args),
    },
    point: 'mcp',
    latencyUs: 42,
  };
}

/** One event of every type, for round-trip tests. */
export function oneOfEach(): AuditEvent[] {
  return [
    decisionEvent(1),
    {
      type: 'outcome',
      decisionId: 'dec_1',
      agent: 'support-bot',
      tool: 'db.query',
      ok: true,
      durationMs: 12,
    },
    {
      type: 'approval',
      status: 'granted',
      approvalId: 'apr_1',
      decisionId: 'dec_1',
      agent: 'support-bot',
      tool: 'payments.refund',
      argsDigest: 'ab'.repeat(32),
      approver: 'bob@example.com',
    },
    { type: 'policy', status: 'loaded', policy: 'cd'.repeat(32), source: 'policy.yaml' },
    { type: 'agent', status: 'suspended', agent: 'support-bot', by: 'ops@example.com', reason: 'incident 7' },
    {
      type: 'tool',
      status: 'changed',
      tool: 'crm.read_customer',
      hash: 'ef'.repeat(32),
      previousHash: '01'.repeat(32),
    },
    { type: 'auth', status: 'rejected', point: 'http', reason: 'bad api key', remote: '10.0.0.7' },
  ];
}
