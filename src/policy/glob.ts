/**
 * Tool-name globs: `*` matches any run of characters (including none). No other metacharacters, no
 * regular expressions: matching is a linear scan (INVARIANT: no user-supplied backtracking regex).
 */

/** Characters allowed in a tool name (ASCII only, so confusables and whitespace never match). */
const TOOL_CHAR = /^[A-Za-z0-9_.:/-]+$/;
const PATTERN_CHAR = /^[A-Za-z0-9_.:/*-]+$/;

/** Longest tool name accepted. */
export const MAX_TOOL_NAME = 256;

/** True when `name` is a well-formed tool name (ASCII letters, digits, `_ . : / -`). */
export function isValidToolName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_TOOL_NAME && TOOL_CHAR.test(name);
}

/** True when `pattern` is a well-formed tool pattern (a tool name that may contain `*`). */
export function isValidToolPattern(pattern: string): boolean {
  return pattern.length > 0 && pattern.length <= MAX_TOOL_NAME && PATTERN_CHAR.test(pattern);
}

export function hasWildcard(pattern: string): boolean {
  return pattern.includes('*');
}

/** A compiled glob: literal pieces between the stars. */
export interface Glob {
  readonly source: string;
  readonly parts: readonly string[];
}

export function compileGlob(pattern: string): Glob {
  return { source: pattern, parts: pattern.split('*') };
}

/** Matches `text` against a compiled glob in linear time (leftmost placement of each literal piece). */
export function globMatch(glob: Glob, text: string): boolean {
  const parts = glob.parts;
  if (parts.length === 1) return text === parts[0];
  const first = parts[0] as string;
  const last = parts[parts.length - 1] as string;
  if (text.length < first.length + last.length) return false;
  if (!text.startsWith(first) || !text.endsWith(last)) return false;
  let pos = first.length;
  const end = text.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i] as string;
    const at = text.indexOf(part, pos);
    if (at < 0 || at + part.length > end) return false;
    pos = at + part.length;
  }
  return true;
}

/** True when every name `inner` matches is also matched by `outer` (conservative: may say false). */
export function globCovers(outer: Glob, inner: Glob): boolean {
  if (outer.source === inner.source) return true;
  if (inner.parts.length === 1) return globMatch(outer, inner.source);
  // A pattern `prefix*` covers any pattern that starts with the same prefix.
  if (outer.parts.length === 2 && outer.parts[1] === '')
    return inner.source.startsWith(outer.parts[0] as string);
  return false;
}
