/**
 * The flows section as written (`FlowsSpec`, validated by the schema built from `fields.ts`) and as
 * compiled by the policy checker (`CompiledFlows`). Imports nothing but types.
 */
import type { CompiledConditions } from '../policy/check.js';
import type { ArgCheck } from '../policy/conditions.js';
import type { Glob } from '../policy/glob.js';
import type { ArgConstraint, Conditions } from '../policy/types.js';
import type { Mode } from '../types.js';
import type { JsonPath } from './jsonpath.js';
import type { Integrity, Label } from './label.js';

export interface LabelSpec {
  integrity?: Integrity;
  level?: string;
  readers?: string[];
  tags?: string[];
}

export interface ItemSpec {
  path: string;
  where?: Record<string, ArgConstraint>;
  unless?: Record<string, ArgConstraint>;
  label?: LabelSpec;
  action?: 'drop' | 'redact';
}

export interface ProducesSpec {
  label?: LabelSpec;
  overrides?: { when: Conditions; label: LabelSpec }[];
  items?: ItemSpec[];
  withhold?: ItemSpec[];
  extract?: Record<string, string>;
}

export interface SinkSpec {
  effect?: 'deny' | 'ask';
  trusted?: boolean;
  max_level?: string;
  recipients?: { email?: string[]; url?: string[]; text?: string[] };
  seen?: Record<string, string>;
  reason?: string;
}

export interface ContextSpec {
  integrity?: Integrity;
  level_at_least?: string;
  tags_any?: string[];
}

export interface GuardSpec {
  id?: string;
  deny?: string | string[];
  ask?: string | string[];
  when?: Conditions;
  unless?: Conditions;
  context?: ContextSpec;
  reason?: string;
}

export interface SequenceSpec {
  id?: string;
  after: (string | string[])[];
  then: string | string[];
  within?: string;
  effect?: 'deny' | 'ask';
  reason?: string;
}

export interface PresetSpec {
  effect?: 'deny' | 'ask';
  sensitive?: string;
  egress: string | string[];
}

/** The `flows:` section of a policy. */
export interface FlowsSpec {
  mode?: Mode;
  scope?: 'session' | 'principal';
  levels?: string[];
  produces?: Record<string, ProducesSpec>;
  sinks?: Record<string, SinkSpec>;
  guards?: GuardSpec[];
  sequences?: SequenceSpec[];
  presets?: { lethal_trifecta?: PresetSpec; rule_of_two?: PresetSpec };
}

/** Tool name → entries: exact names (lower-cased) in one lookup, then globs. */
export interface ToolIndex<T> {
  exact: Map<string, T[]>;
  globs: { glob: Glob; value: T }[];
}

/** A label as a policy writes it, levels resolved; absent fields stay absent (overrides merge). */
export interface PartialLabel {
  integrity?: Integrity;
  level?: number;
  readers?: readonly string[];
  tags?: readonly string[];
}

export interface CompiledItem {
  path: JsonPath;
  where: ArgCheck[];
  unless: ArgCheck[];
  label?: PartialLabel;
  action?: 'drop' | 'redact';
}

export interface CompiledProduces {
  tool: string;
  label: Label;
  overrides: { when: CompiledConditions; label: PartialLabel }[];
  items: CompiledItem[];
  withhold: CompiledItem[];
  extract: { set: string; path: JsonPath }[];
}

export interface CompiledSink {
  tool: string;
  effect: 'deny' | 'ask';
  trusted: boolean;
  maxLevel?: number;
  recipients: { email: string[]; url: string[]; text: string[] };
  seen: { arg: string; set: string }[];
  reason?: string;
}

export interface CompiledContext {
  integrity?: Integrity;
  levelAtLeast?: number;
  tagsAny?: readonly string[];
}

/** A guard, a preset, or the final step of a sequence: a rule that can only tighten. */
export interface CompiledGuard {
  id: string;
  effect: 'deny' | 'ask';
  when?: CompiledConditions;
  unless?: CompiledConditions;
  context?: CompiledContext;
  /** For sequence rules: the automaton whose final state must be reached. */
  sequence?: CompiledSequence;
  reason?: string;
  /** `guard`, `sequence`, `lethal_trifecta` or `rule_of_two`: for messages. */
  kind: string;
}

export interface CompiledSequence {
  id: string;
  /** Steps in order; a delivered result of a matching tool advances the automaton one state. */
  steps: ToolIndexLite[];
  withinMs?: number;
}

/** A step's tool patterns: exact lower-cased names and globs. */
export interface ToolIndexLite {
  exact: ReadonlySet<string>;
  globs: readonly Glob[];
}

export interface CompiledFlows {
  mode: Mode;
  /** `principal`: one state per agent and principal, whatever the channel's session key. */
  scope: 'session' | 'principal';
  levels: readonly string[];
  produces: ToolIndex<CompiledProduces>;
  sinks: ToolIndex<CompiledSink>;
  /** Guards, presets and sequence rules, indexed by the tool they refuse. */
  guards: ToolIndex<CompiledGuard>;
  /** Sequences indexed by the tools that step them (any step). */
  steppers: ToolIndex<CompiledSequence>;
  /** Rule count, for reports and benchmarks. */
  rules: number;
}
