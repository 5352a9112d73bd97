/**
 * Rebuilding session flow state from the audit trail: every delivered result and every endorsement is a
 * `flow` record, so replaying the records in any order gives each session the state its store holds.
 */
import type { AuditEvent } from '../types.js';
import { parseLabel } from './label.js';
import type { Endorsement, FlowDelta, SessionRecord } from './state.js';

/**
 * The session records that `events` describe, by scope. `levels` are the policy's confidentiality
 * levels (records name levels, stores number them). A record that does not parse is an error.
 */
export function sessionsFromAudit(
  events: Iterable<AuditEvent>,
  levels: readonly string[],
): Map<string, SessionRecord> {
  const out = new Map<string, { deltas: FlowDelta[]; endorsements: Endorsement[] }>();
  const at = (scope: string) => {
    let r = out.get(scope);
    if (!r) {
      r = { deltas: [], endorsements: [] };
      out.set(scope, r);
    }
    return r;
  };
  for (const e of events) {
    if (e.type !== 'flow') continue;
    if (e.status === 'delivered' && e.delta) {
      const raw = e.delta as unknown as FlowDelta & { label: unknown };
      const label = parseLabel(raw.label, levels);
      if (!label)
        throw new Error(
          `flow record of decision \`${e.decisionId ?? '?'}\` has a label this policy cannot read`,
        );
      at(e.scope).deltas.push({ ...raw, label });
    } else if (e.status === 'endorsed' && e.endorsement) {
      at(e.scope).endorsements.push(e.endorsement as unknown as Endorsement);
    }
  }
  return out;
}
