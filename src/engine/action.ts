/**
 * Validation of actions. Every enforcement point hands the engine untrusted data; this is the one place
 * that says what a well-formed action is. Size and depth limits apply to every input (INVARIANT 6).
 */
import { isValidToolName, MAX_TOOL_NAME } from '../policy/glob.js';
import type { Action } from '../types.js';

/** Deepest nesting accepted in args and context. */
export const MAX_ARGS_DEPTH = 32;
/** Most JSON nodes accepted in args plus context. */
export const MAX_ARGS_NODES = 50_000;
/** Longest string accepted anywhere in an action. */
export const MAX_STRING = 1 << 20;
const MAX_ID = 256;
/** Most argument names a target may declare. */
const MAX_DECLARED_ARGS = 1024;

/** Returns why `raw` is not a well-formed action, or undefined when it is. Never throws. */
export function checkAction(raw: unknown): string | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return 'action must be an object';
  const a = raw as Record<string, unknown>;
  if (typeof a.agent !== 'string' || a.agent.length === 0 || a.agent.length > MAX_ID) {
    return 'action.agent must be a non-empty string of at most 256 characters';
  }
  if (typeof a.tool !== 'string') return 'action.tool must be a string';
  if (!isValidToolName(a.tool)) {
    return `tool name ${JSON.stringify(a.tool.slice(0, MAX_TOOL_NAME))} is not valid: tool names use ASCII letters, digits and \`_ . : / -\` only (no spaces, no look-alike characters)`;
  }
  if (a.args === null || typeof a.args !== 'object' || Array.isArray(a.args))
    return 'action.args must be a JSON object';
  for (const k of ['session', 'onBehalfOf'] as const) {
    const v = a[k];
    if (v !== undefined && (typeof v !== 'string' || v.length > MAX_ID))
      return `action.${k} must be a string of at most 256 characters`;
  }
  if (a.delegation !== undefined) {
    if (
      !Array.isArray(a.delegation) ||
      a.delegation.length > 16 ||
      a.delegation.some((d) => typeof d !== 'string' || d.length > MAX_ID)
    ) {
      return 'action.delegation must be a list of at most 16 agent ids';
    }
  }
  if (a.declaredArgs !== undefined) {
    if (
      !Array.isArray(a.declaredArgs) ||
      a.declaredArgs.length > MAX_DECLARED_ARGS ||
      a.declaredArgs.some((d) => typeof d !== 'string' || d.length > MAX_ID)
    ) {
      return `action.declaredArgs must be a list of at most ${MAX_DECLARED_ARGS} argument names`;
    }
  }
  if (
    a.context !== undefined &&
    (a.context === null || typeof a.context !== 'object' || Array.isArray(a.context))
  ) {
    return 'action.context must be a JSON object';
  }
  const budget = { nodes: MAX_ARGS_NODES };
  return (
    checkJson(a.args, 'args', 0, budget) ??
    (a.context === undefined ? undefined : checkJson(a.context, 'context', 0, budget))
  );
}

function checkJson(v: unknown, where: string, depth: number, budget: { nodes: number }): string | undefined {
  if (--budget.nodes < 0) return `action has more than ${MAX_ARGS_NODES} values`;
  switch (typeof v) {
    case 'string':
      return v.length > MAX_STRING ? `${where} is longer than ${MAX_STRING} characters` : undefined;
    case 'number':
      return Number.isFinite(v) ? undefined : `${where} is not a finite number`;
    case 'boolean':
      return undefined;
    case 'object': {
      if (v === null) return undefined;
      if (depth >= MAX_ARGS_DEPTH) return `${where} is nested deeper than ${MAX_ARGS_DEPTH} levels`;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          const r = checkJson(v[i], `${where}[${i}]`, depth + 1, budget);
          if (r) return r;
        }
        return undefined;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return `${where} is not a plain JSON object`;
      for (const k of Object.keys(v)) {
        // INVARIANT: no prototype keys reach a tool; `__proto__` is how JSON payloads pollute prototypes.
        if (k === '__proto__') return `${where} has the forbidden key \`__proto__\``;
        const r = checkJson((v as Record<string, unknown>)[k], `${where}.${k}`, depth + 1, budget);
        if (r) return r;
      }
      return undefined;
    }
    default:
      return `${where} is not JSON (${typeof v})`;
  }
}

/** Validates untrusted input into an Action. Never throws. */
export function parseAction(raw: unknown): { ok: true; action: Action } | { ok: false; error: string } {
  const error = checkAction(raw);
  return error === undefined ? { ok: true, action: raw as Action } : { ok: false, error };
}
