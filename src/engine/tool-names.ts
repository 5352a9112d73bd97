/**
 * Look-alike tool names. A name that differs from a tool the policy knows only by letter case or by
 * characters that read alike (`0`/`o`, `1`/`l`/`i`, `rn`/`m`, `-`/`_`, `.`/`:`/`/`) is an attempt to
 * reach a tool under a name its rules do not cover — or to turn a denied call into an approval
 * request. The engine refuses such a name before it reads any rule. (Non-ASCII look-alikes and
 * whitespace never get this far: `checkAction` refuses every name outside ASCII `A-Za-z0-9_.:/-`.)
 */
import { compileGlob, type Glob, globMatch } from '../policy/glob.js';

/** The form two look-alike names share. `*` is kept, so glob patterns fold the same way. */
export function skeleton(name: string): string {
  return name
    .toLowerCase()
    .replace(/rn/g, 'm')
    .replace(/vv/g, 'w')
    .replace(/[01i]/g, (c) => (c === '0' ? 'o' : 'l'))
    .replace(/[-_]+/g, '_')
    .replace(/[.:/]/g, '.');
}

/** Known tool names and patterns, indexed by skeleton. */
export interface NameIndex {
  /**
   * The known name or pattern `tool` imitates, when it matches none exactly but one by its skeleton;
   * undefined when `tool` is a known name, matches a known pattern, or resembles nothing known.
   */
  imitated(tool: string): string | undefined;
}

/** Indexes exact names and glob patterns (`crm.*`) the policy names. */
export function indexNames(names: Iterable<string>): NameIndex {
  const exact = new Set<string>();
  const bySkeleton = new Map<string, string>();
  const globs: { exact: Glob; folded: Glob; source: string }[] = [];
  const seenGlobs = new Set<string>();
  for (const n of names) {
    if (n.includes('*')) {
      // Many agents repeat the same pattern: each is tried once per decision, not once per agent.
      if (seenGlobs.has(n)) continue;
      seenGlobs.add(n);
      globs.push({ exact: compileGlob(n), folded: compileGlob(skeleton(n)), source: n });
      continue;
    }
    exact.add(n);
    if (!bySkeleton.has(skeleton(n))) bySkeleton.set(skeleton(n), n);
  }
  return {
    imitated(tool) {
      if (exact.has(tool)) return undefined;
      const s = skeleton(tool);
      const hit = bySkeleton.get(s);
      if (hit !== undefined) return hit;
      for (const g of globs) {
        if (!globMatch(g.exact, tool) && globMatch(g.folded, s)) return g.source;
      }
      return undefined;
    },
  };
}
