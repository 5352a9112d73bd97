/**
 * The contract between the policy engine and the canonicalisers that turn raw tool arguments into
 * facts for typed argument constraints (`path`, `url`, `sql`, `shell`, `email`).
 */
import type { Json } from '../types.js';

/** Result of parsing one raw argument value. `error` is lowercase with the user's input in backticks. */
export type FactResult<F> = { ok: true; value: F } | { ok: false; error: string };

/** A problem in a policy condition, keyed by the field it concerns (e.g. `under[1]`). */
export interface ConditionError {
  field: string;
  message: string;
}

/** Result of compiling a condition at policy load time. */
export type CompileResult<C> = { ok: true; value: C } | { ok: false; errors: ConditionError[] };

/** Result of matching facts against a condition. */
export type MatchResult = { ok: true } | { ok: false; why: string };

/** Names of the typed constraints a policy can use under `when:` / `unless:`. */
export type CanonicaliserName = 'path' | 'url' | 'sql' | 'shell' | 'email';

/**
 * One field of a canonicaliser's condition. The policy's JSON Schema, the loader's list of accepted
 * fields and the documentation test all read these, so docs, schema and code cannot drift apart.
 */
export interface ConditionField {
  /** JSON Schema (draft-07) of the field's value. */
  schema: Readonly<Record<string, unknown>>;
  /** What the field means, for editors. */
  description: string;
  /** An allow-list ("every value is in the list"): a deny/ask rule with it under `when` gets a warning. */
  allowList?: boolean;
}

/** The fields a canonicaliser's condition accepts, by the name a policy writes. */
export type ConditionFields = Readonly<Record<string, ConditionField>>;

/** A load-time warning about a compiled condition (a dangerous default, a field that widens a lot). */
export interface ConditionWarning {
  /** Field the warning concerns (`''` for the whole condition). */
  field: string;
  code: string;
  message: string;
  hint?: string;
}

/** One canonicaliser: compile a condition once, parse argument values into facts, match them. */
export interface Canonicaliser<C, F> {
  name: CanonicaliserName;
  /** One line on what the facts come from, for the JSON Schema. */
  description: string;
  /** Every field a condition may hold besides `arg`/`args` (the one definition; see ConditionField). */
  fields: ConditionFields;
  /**
   * Argument names read when a condition names none: every one present is checked (a move's `source`
   * and `destination`, an email's `to`, `cc` and `bcc`).
   */
  defaultArgs: readonly string[];
  /** Validates and normalises a condition from the policy at load time; problems are messages keyed by field. */
  compile(condition: unknown): CompileResult<C>;
  /** Parses ONE raw argument value. Never throws: any failure is { ok:false } (caller denies). */
  facts(raw: Json): FactResult<F>;
  /** Does the value satisfy the condition? `why` says, for an agent, what was refused and what is allowed. */
  match(condition: C, facts: F): MatchResult;
  /**
   * Optional check over every value the condition read in one action, after each passed `match`: limits on
   * the whole action that splitting a value across arguments must not get around (`email`'s
   * `max_recipients` over `to`, `cc` and `bcc` together).
   */
  matchAll?(condition: C, facts: readonly F[], args: readonly string[]): MatchResult;
  /** Facts as JSON for the audit trail. */
  toJson(facts: F): Json;
  /** Warnings `execlayer validate` shows for a compiled condition of an allow rule. */
  warnings?(condition: C): ConditionWarning[];
}
