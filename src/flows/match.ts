/** Tool lookups in the flow policy's indexes: exact lower-cased names first, then globs. */
import { globMatch } from '../policy/glob.js';
import type { ToolIndex, ToolIndexLite } from './types.js';

const NONE: readonly never[] = [];

/** Every entry for this tool: exact entries, then matching globs in policy order. */
export function lookup<T>(idx: ToolIndex<T>, tool: string): readonly T[] {
  const key = tool.toLowerCase();
  const exact = idx.exact.get(key);
  if (idx.globs.length === 0) return exact ?? NONE;
  let out: T[] | undefined;
  for (const g of idx.globs) {
    if (!globMatch(g.glob, key)) continue;
    out ??= exact ? exact.slice() : [];
    if (!out.includes(g.value)) out.push(g.value);
  }
  return out ?? exact ?? NONE;
}

/** Does the tool match one step's patterns? */
export function matchesStep(step: ToolIndexLite, tool: string): boolean {
  const key = tool.toLowerCase();
  if (step.exact.has(key)) return true;
  for (const g of step.globs) if (globMatch(g, key)) return true;
  return false;
}
