/**
 * The one constructor of a deny that no rule made: an internal error, a store that cannot answer, a
 * decision that could not be reached. Every enforcement point builds such denies here, so they share one
 * shape and one id scheme (ids.ts).
 */
import type { Decision, DecisionCode } from '../types.js';
import { nextDecisionId } from './ids.js';

/** A deny in enforce mode, with no deciding rule and a fresh decision id. `policy` is the policy hash, if known. */
export function denyDecision(code: DecisionCode, reason: string, policy = ''): Decision {
  return { id: nextDecisionId(), effect: 'deny', rule: null, reason, policy, mode: 'enforce', code };
}
