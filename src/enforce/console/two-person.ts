/**
 * The two-person rule (`approvals.twoPersonRule`): a grant needs the approval of two different approvers.
 * The first approval is held by this process; the second, from someone else, decides the approval in the
 * store, with both names in the recorded note. A denial by either approver decides at once. Wraps the
 * store that the console and the operator API share, so neither path can skip the rule.
 */
import {
  type Approval,
  ApprovalError,
  type ApprovalStore,
  type ApprovalVerdict,
} from '../../approvals/types.js';

/** An approval store with the two-person rule; `firstApprover` tells the console who approved first. */
export interface TwoPersonStore extends ApprovalStore {
  firstApprover(id: string): string | undefined;
}

/** Most first approvals held at once (one per pending approval is plenty). */
const MAX_HELD = 10_000;

/** Wraps `store` so a grant needs two different approvers. */
export function twoPersonApprovals(store: ApprovalStore): TwoPersonStore {
  const first = new Map<string, string>();
  return {
    request: (req, now) => store.request(req, now),
    get: (id, now) => store.get(id, now),
    list: (filter, now) => store.list(filter, now),
    consumeGrant: (binding, now) => store.consumeGrant(binding, now),
    close: () => store.close(),
    firstApprover: (id) => first.get(id),
    async decide(id: string, verdict: ApprovalVerdict, now: number): Promise<Approval> {
      if (!verdict.approve) {
        first.delete(id);
        return store.decide(id, verdict, now);
      }
      const a = await store.get(id, now);
      if (!a) throw new ApprovalError('not_found', `no approval \`${id}\``, { id });
      if (a.status !== 'pending') {
        first.delete(id);
        // The store gives the precise refusal (expired, already decided).
        return store.decide(id, verdict, now);
      }
      // The store's own checks, before the first approval is held: not the agent itself, a named approver.
      if (verdict.approver === a.agent) {
        throw new ApprovalError(
          'not_allowed',
          `agent \`${verdict.approver}\` cannot decide its own approval`,
          { id },
        );
      }
      if (a.approvers.length > 0 && !a.approvers.includes(verdict.approver)) {
        throw new ApprovalError('not_allowed', `\`${verdict.approver}\` is not an approver of \`${id}\``, {
          id,
        });
      }
      const held = first.get(id);
      if (held === undefined) {
        if (first.size >= MAX_HELD) first.delete(first.keys().next().value as string);
        first.set(id, verdict.approver);
        return a;
      }
      if (held === verdict.approver) {
        throw new ApprovalError(
          'not_allowed',
          `\`${verdict.approver}\` already approved \`${id}\`: the two-person rule needs a second, different approver`,
          { id },
        );
      }
      first.delete(id);
      const note = `approved by ${held} and ${verdict.approver}${verdict.note ? `: ${verdict.note}` : ''}`;
      return store.decide(id, { ...verdict, note: note.slice(0, 2000) }, now);
    },
  };
}
