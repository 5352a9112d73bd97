/**
 * Backend-independent limit logic: validating a spec once, deriving its counter key and amount from an
 * action, fixed-window arithmetic and the reasons a denial gives.
 *
 * Windows are fixed and aligned to the epoch in multiples of the window length (a day limit resets at
 * 00:00 UTC, an hour limit on the hour). That is exact, cheap and atomic in every backend; the known
 * trade-off is that a burst straddling a boundary can use up to twice `max` within one window length.
 */

import { messageOf } from '../errors.js';
import { formatDuration } from '../policy/duration.js';
import type { Action, Json, LimitScope, LimitSpec } from '../types.js';
import type { LimitFailureCode, LimitResult } from './types.js';

/** A validated spec with everything a backend needs precomputed. */
export interface CompiledLimit {
  readonly spec: LimitSpec;
  readonly kind: LimitSpec['kind'];
  readonly max: number;
  /** Window length for calls/sum; 0 otherwise. */
  readonly windowMs: number;
  /** Path segments for sum (after `args`), e.g. `['amount']`. */
  readonly sumPath: readonly string[] | null;
  /** Scope, with `session` forced in for steps. */
  readonly scope: readonly LimitScope[];
  /** `id` plus a separator, the fixed prefix of every counter key. */
  readonly keyPrefix: string;
  /** `null` when the spec is usable; otherwise why not. */
  readonly invalid: string | null;
}

const cache = new WeakMap<LimitSpec, CompiledLimit>();

/** Validates and precomputes a spec; cached per spec object, so a compiled policy pays this once. */
export function compileLimit(spec: LimitSpec): CompiledLimit {
  let c = cache.get(spec);
  if (c === undefined) {
    c = build(spec);
    cache.set(spec, c);
  }
  return c;
}

function build(spec: LimitSpec): CompiledLimit {
  let invalid: string | null = null;
  const kind = spec.kind;
  const scope: LimitScope[] =
    Array.isArray(spec.scope) && spec.scope.length > 0 ? [...spec.scope] : ['agent'];
  if (kind === 'steps' && !scope.includes('session')) scope.push('session');
  let sumPath: string[] | null = null;
  let windowMs = 0;
  if (typeof spec.id !== 'string' || spec.id === '') invalid = 'limit has no id';
  else if (kind !== 'calls' && kind !== 'sum' && kind !== 'concurrent' && kind !== 'steps') {
    invalid = `limit \`${spec.id}\` has unknown kind \`${String(kind)}\``;
  } else if (typeof spec.max !== 'number' || !Number.isFinite(spec.max) || spec.max < 0) {
    invalid = `limit \`${spec.id}\` needs a finite non-negative \`max\``;
  } else if ((kind === 'calls' || kind === 'concurrent' || kind === 'steps') && !Number.isInteger(spec.max)) {
    invalid = `limit \`${spec.id}\` needs an integer \`max\` for ${kind}`;
  }
  if (invalid === null && (kind === 'calls' || kind === 'sum')) {
    const w = spec.windowMs;
    if (typeof w !== 'number' || !Number.isSafeInteger(w) || w <= 0) {
      invalid = `limit \`${spec.id}\` needs a positive integer window (\`per\`)`;
    } else windowMs = w;
  }
  if (invalid === null && kind === 'sum') {
    const parts = typeof spec.sumOf === 'string' ? spec.sumOf.split('.') : [];
    if (parts.length < 2 || parts[0] !== 'args' || parts.some((p) => p === '')) {
      invalid = `limit \`${spec.id}\` needs \`sum\` to be a path under args, e.g. \`args.amount\``;
    } else sumPath = parts.slice(1);
  }
  for (const s of scope) {
    if (!['agent', 'role', 'tool', 'session', 'principal', 'global'].includes(s)) {
      invalid ??= `limit \`${spec.id}\` has unknown scope \`${String(s)}\``;
    }
  }
  return {
    spec,
    kind,
    max: spec.max,
    windowMs,
    sumPath,
    scope,
    keyPrefix: `${spec.id}\u0000`,
    invalid,
  };
}

/** Counter key of a spec for an action (id + scope values), or a string explaining what is missing. */
export function counterKey(
  c: CompiledLimit,
  action: Action,
  roles: readonly string[],
): { key: string } | string {
  const scope = c.scope;
  // Fast path: the default `[agent]` scope.
  if (scope.length === 1 && scope[0] === 'agent') return { key: c.keyPrefix + action.agent };
  let key = c.keyPrefix;
  for (const s of scope) {
    let v: string | undefined;
    switch (s) {
      case 'agent':
        v = action.agent;
        break;
      case 'tool':
        v = action.tool;
        break;
      case 'session':
        v = action.session;
        if (v === undefined || v === '')
          return `limit \`${c.spec.id}\` is counted per session and the call has none`;
        break;
      case 'principal':
        v = action.onBehalfOf;
        if (v === undefined || v === '') {
          return `limit \`${c.spec.id}\` is counted per principal (onBehalfOf) and the call has none`;
        }
        break;
      case 'role':
        if (roles.length === 0) return `limit \`${c.spec.id}\` is counted per role and the agent has none`;
        v = roles.length === 1 ? roles[0] : [...roles].sort().join(',');
        break;
      case 'global':
        v = '*';
        break;
    }
    // Length prefix keeps keys unambiguous whatever characters ids contain.
    key += `${(v as string).length}:${v as string}|`;
  }
  return { key };
}

/** The amount a spec adds for an action: 1, or for sum the argument value (strictly typed). */
export function amountOf(c: CompiledLimit, action: Action): number | string {
  if (c.sumPath === null) return 1;
  let v: Json | undefined = action.args;
  for (const p of c.sumPath) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      v = undefined;
      break;
    }
    v = (v as { [k: string]: Json })[p];
  }
  // INVARIANT: fail closed — only a finite non-negative number counts; `"50"`, NaN, -1, absent → deny.
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    return `limit \`${c.spec.id}\` needs \`${c.spec.sumOf}\` to be a finite non-negative number; got ${describe(v)}`;
  }
  return v;
}

function describe(v: Json | undefined): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return `string \`${v.length > 40 ? `${v.slice(0, 40)}…` : v}\``;
  if (typeof v === 'number') return `\`${String(v)}\``;
  if (v === null) return '`null`';
  return Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `\`${String(v)}\``;
}

/** Start of the fixed window containing `nowMs`. */
export function windowStart(windowMs: number, nowMs: number): number {
  return nowMs - (nowMs % windowMs);
}

/** A failure result for a spec that cannot be evaluated for this action. */
export function invalidResult(c: CompiledLimit, reason: string, code: LimitFailureCode): LimitResult {
  return { ok: false, limit: c.spec, retryAfterMs: -1, reason, code };
}

/** A store failure: deny, naming the limit and the cause. */
export function storeErrorResult(spec: LimitSpec | undefined, err: unknown): LimitResult {
  const msg = messageOf(err);
  return {
    ok: false,
    limit: spec ?? { id: 'unknown', kind: 'calls', max: 0, scope: ['agent'] },
    retryAfterMs: 1000,
    reason: `limit store unavailable (${msg.toLowerCase()}); denying to fail closed`,
    code: 'store_error',
  };
}

/** The denial for a spec whose counter is at `used` and would exceed `max` by adding `amount`. */
export function exceededResult(
  c: CompiledLimit,
  action: Action,
  roles: readonly string[],
  used: number,
  amount: number,
  nowMs: number,
): LimitResult {
  const id = c.spec.id;
  const who = scopeText(c, action, roles);
  let retryAfterMs: number;
  let reason: string;
  switch (c.kind) {
    case 'concurrent':
      retryAfterMs = 1000;
      reason = `limit \`${id}\` exceeded: ${used} of ${c.max} concurrent actions already in flight ${who}; retry when one finishes`;
      break;
    case 'steps':
      retryAfterMs = -1;
      reason = `limit \`${id}\` exceeded: ${used} of ${c.max} steps used ${who}; it does not reset within a session`;
      break;
    default: {
      const resetIn = windowStart(c.windowMs, nowMs) + c.windowMs - nowMs;
      const per = perText(c.windowMs);
      if (c.kind === 'calls') {
        retryAfterMs = resetIn;
        reason = `limit \`${id}\` exceeded: ${used} of ${c.max} calls used ${per} ${who}; resets in ${durationText(resetIn)}`;
      } else if (amount > c.max) {
        retryAfterMs = -1;
        reason = `limit \`${id}\` exceeded: amount ${fmt(amount)} is more than the whole budget of ${fmt(c.max)} ${per} ${who}`;
      } else {
        retryAfterMs = resetIn;
        reason = `limit \`${id}\` exceeded: ${fmt(used)} of ${fmt(c.max)} used ${per} ${who}; amount ${fmt(amount)} would exceed it; resets in ${durationText(resetIn)}`;
      }
    }
  }
  return { ok: false, limit: c.spec, retryAfterMs, reason, code: 'limit_exceeded' };
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Math.round(n * 1e6) / 1e6);
}

function scopeText(c: CompiledLimit, action: Action, roles: readonly string[]): string {
  const parts: string[] = [];
  for (const s of c.scope) {
    if (s === 'agent') parts.push(`agent \`${action.agent}\``);
    else if (s === 'tool') parts.push(`tool \`${action.tool}\``);
    else if (s === 'session') parts.push(`session \`${action.session ?? ''}\``);
    else if (s === 'principal') parts.push(`principal \`${action.onBehalfOf ?? ''}\``);
    else if (s === 'role') parts.push(`role \`${[...roles].sort().join(',')}\``);
  }
  return parts.length === 0
    ? 'globally'
    : c.kind === 'concurrent'
      ? `for ${parts.join(' and ')}`
      : `by ${parts.join(' and ')}`;
}

const NAMED: ReadonlyArray<[number, string]> = [
  [1000, 'second'],
  [60_000, 'minute'],
  [3_600_000, 'hour'],
  [86_400_000, 'day'],
  [604_800_000, 'week'],
];

/** `per day`, `per 15m`. */
export function perText(windowMs: number): string {
  for (const [ms, name] of NAMED) if (ms === windowMs) return `per ${name}`;
  return `per ${durationText(windowMs)}`;
}

/** Compact duration: `3h12m`, `45s`, `2d4h`, `350ms`. */
export const durationText = formatDuration;
