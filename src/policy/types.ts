/**
 * The policy document as written by a reviewer (after YAML/JSON parsing and schema validation).
 * `compile()` turns it into an immutable decision function.
 */
import type { FlowsSpec } from '../flows/types.js';
import type { Effect, Mode } from '../types.js';

export interface PolicyDocument {
  version: 1;
  /** Default mode for every agent and rule. */
  mode?: Mode;
  description?: string;
  agents: Record<string, AgentSpec>;
  roles?: Record<string, RuleSpec[]>;
  /** Known tools: argument schemas (for static checks) and what to redact in audit records. */
  tools?: Record<string, ToolSpec>;
  /** Argument names redacted from audit records for every tool. */
  redact?: string[];
  /** Session flow policy: result labels, sinks, guards, sequence rules (see docs/flows.md). */
  flows?: FlowsSpec;
}

export interface AgentSpec {
  owner?: string;
  purpose?: string;
  risk?: 'low' | 'medium' | 'high';
  /** Documented capabilities from the governance registry (free text), for gap reports. */
  documented?: string[];
  roles?: string[];
  mode?: Mode;
  /** Rules for this agent alone. */
  rules?: RuleSpec[];
  /** Limits on every allowed action of this agent. */
  limits?: LimitInput | LimitInput[];
}

export interface ToolSpec {
  description?: string;
  /** JSON-Schema-like description of the arguments: property names and JSON types. */
  args?: Record<string, { type?: JsonTypeName | JsonTypeName[] }>;
  redact?: string[];
}

export type JsonTypeName = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null';

/** One capability rule: exactly one of allow / deny / ask. */
export interface RuleSpec {
  id?: string;
  allow?: string | string[];
  deny?: string | string[];
  ask?: string | string[];
  when?: Conditions;
  unless?: Conditions;
  limit?: LimitInput | LimitInput[];
  approval?: { ttl?: string; uses?: number; approvers?: string[] };
  mode?: Mode;
  /** Text shown to the agent when this rule denies or asks. */
  reason?: string;
  description?: string;
  /** Warning codes the author has read and accepts for this rule; `validate` no longer shows them. */
  acknowledge?: string[];
}

/** Conditions are ANDed. Canonicaliser conditions name the argument(s) they read with `arg`/`args`. */
export interface Conditions {
  path?: CanonCondition;
  url?: CanonCondition;
  sql?: CanonCondition;
  shell?: CanonCondition;
  email?: CanonCondition;
  args?: Record<string, ArgConstraint>;
  cel?: string;
}

export type CanonCondition = { arg?: string; args?: string[] } & Record<string, unknown>;

export interface ArgConstraint {
  type?: JsonTypeName;
  min?: number;
  max?: number;
  /** Exclusive lower bound (`gt: 0` refuses 0). */
  gt?: number;
  /** Exclusive upper bound. */
  lt?: number;
  equals?: string | number | boolean | null;
  in?: (string | number | boolean)[];
  max_length?: number;
  glob?: string;
  present?: boolean;
}

export interface LimitInput {
  id?: string;
  calls?: number;
  sum?: string;
  max?: number;
  concurrent?: number;
  steps?: number;
  per?: string;
  scope?: string | string[];
}

export type CanonName = 'path' | 'url' | 'sql' | 'shell' | 'email';
export const CANON_NAMES: readonly CanonName[] = ['path', 'url', 'sql', 'shell', 'email'];

export const EFFECTS: readonly Effect[] = ['deny', 'ask', 'allow'];
