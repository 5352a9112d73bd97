/**
 * The `paths` part of a `shell` condition: which files a command may name.
 *
 *   when: { shell: { programs: [cat, ls], paths: { under: [/srv/kb], cwd: /srv/kb } } }
 *
 * A program decides for itself which of its arguments are file names, so every argument is treated
 * as one unless it cannot name a file (see `pathCandidates`). Each candidate is checked with the
 * `path` canonicaliser's own rules (`parsePath`, segment-aware `under`/`not_under`, `..` refused
 * unless `allow_traversal`). Relative names are resolved against `cwd` and refused without it.
 */
import { quote } from './condition.js';
import { type PathCondition, parsePath, pathCanonicaliser } from './path.js';
import type { ConditionError, ConditionField, FactResult, MatchResult } from './types.js';

/** A compiled `paths` condition: a `path` condition plus the directory relative names start from. */
export interface ShellPaths {
  path: PathCondition;
  cwd?: string;
}

/** Longest short-option word checked letter by letter (`-f/etc/x`); longer ones are refused. */
const MAX_SHORT_OPTION = 256;

/** The `paths` field: the `path` canonicaliser's fields (one definition) and `cwd`. */
export const PATHS_FIELD: ConditionField = {
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...Object.fromEntries(
        Object.entries(pathCanonicaliser.fields).map(([k, f]) => [
          k,
          { ...f.schema, description: f.description },
        ]),
      ),
      cwd: {
        type: 'string',
        minLength: 1,
        description:
          'Directory the command runs in, absolute and normalised: relative names are resolved against it (refused without it).',
      },
    },
  },
  description:
    'Every file the command names (arguments, option values, redirections) must satisfy these `path` rules.',
  allowList: true,
};

/** Compiles `paths`; errors are keyed `paths.<field>`. */
export function compilePaths(
  raw: unknown,
): { ok: true; value: ShellPaths } | { ok: false; errors: ConditionError[] } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return {
      ok: false,
      errors: [{ field: 'paths', message: '`paths` must be a map (under, not_under, allow_traversal, cwd)' }],
    };
  }
  const { cwd, ...rest } = raw as Record<string, unknown>;
  const errors: ConditionError[] = [];
  // The path reader skips `arg`/`args` (the engine's argument selectors); here they mean nothing.
  for (const k of ['arg', 'args'])
    if (k in rest) errors.push({ field: `paths.${k}`, message: `unknown paths field ${quote(k)}` });
  const r = pathCanonicaliser.compile(rest);
  if (!r.ok)
    for (const e of r.errors)
      errors.push({ field: e.field ? `paths.${e.field}` : 'paths', message: e.message });
  let dir: string | undefined;
  if (cwd !== undefined) {
    // The same entry rules as `under` (absolute, normalised), read by the path canonicaliser.
    const c = typeof cwd === 'string' ? pathCanonicaliser.compile({ under: [cwd] }) : null;
    if (c === null) errors.push({ field: 'paths.cwd', message: '`cwd` must be a string' });
    else if (!c.ok) for (const e of c.errors) errors.push({ field: 'paths.cwd', message: e.message });
    else dir = cwd as string;
  }
  if (errors.length > 0 || !r.ok) return { ok: false, errors };
  if (dir !== undefined) {
    // INVARIANT: fail closed — a program that changes directory itself (`tar -C sub`) resolves a
    // relative name below `cwd`; that stays inside `under` only if `cwd` itself is inside.
    const at = parsePath(dir);
    const inside = at.ok ? pathCanonicaliser.match(r.value, at.value) : { ok: false as const, why: at.error };
    if (!inside.ok) {
      return {
        ok: false,
        errors: [
          { field: 'paths.cwd', message: `\`cwd\` must satisfy the paths rules itself: ${inside.why}` },
        ],
      };
    }
  }
  return { ok: true, value: dir === undefined ? { path: r.value } : { path: r.value, cwd: dir } };
}

/** Adds the text after each `=`, `:`, `,` and `@` (`if=/x`, `--file=/x`, `host:/x`, `-Wl,/x`, `@/x`). */
function addSeparated(word: string, out: Set<string>): void {
  for (let i = 0; i < word.length; i++) {
    const ch = word.charCodeAt(i);
    if (ch === 61 /* = */ || ch === 58 /* : */ || ch === 44 /* , */ || ch === 64 /* @ */)
      out.add(word.slice(i + 1));
  }
}

/**
 * The words of one command that may name a file, or an error. The rule, for every argument word
 * (already static: quote removal done, no expansion):
 * - an operand (not starting with `-`, or anything after `--`) is a file name, except `-` alone;
 * - a short option (`-xyz`) may carry an attached value at any letter (`-f/etc/x`, `-Cdir`):
 *   every suffix after the `-` is a candidate;
 * - a long option (`--name`) is not a file name, but what follows its `=` is;
 * - in every word, what follows each `=`, `:`, `,` or `@` is a candidate too, for programs that read
 *   `key=file` (`dd if=/etc/shadow`), `host:file`, comma lists and `@file` (`curl -d @/etc/passwd`).
 */
export function pathCandidates(args: readonly string[], out: Set<string>): string | null {
  let operands = false;
  for (const w of args) {
    if (!operands && w === '--') {
      operands = true;
      continue;
    }
    if (operands || w.length < 2 || w.charCodeAt(0) !== 45 /* - */) {
      if (w !== '-') out.add(w);
    } else if (w.charCodeAt(1) !== 45) {
      if (w.length > MAX_SHORT_OPTION)
        return `option ${quote(w)} is too long to check for attached file names`;
      for (let i = 1; i < w.length; i++) out.add(w.slice(i));
    }
    addSeparated(w, out);
  }
  return null;
}

/** Candidates in an assigned value (`GIT_DIR=x`, `PATH=/a:/b`): the value and its separated parts. */
export function valueCandidates(value: string, out: Set<string>): void {
  out.add(value);
  addSeparated(value, out);
}

/** Resolves one candidate to an absolute path: as written, or against `cwd`. */
function resolve(
  p: ShellPaths,
  name: string,
): FactResult<{ path: string; segments: number; traversal: boolean }> {
  if (name.startsWith('/')) return parsePath(name);
  if (name.startsWith('~')) {
    // Quoted, bash leaves it alone, but many programs expand `~` themselves.
    return { ok: false, error: `${quote(name)} starts with \`~\`; name the file with an absolute path` };
  }
  if (p.cwd === undefined) {
    return {
      ok: false,
      error: `${quote(name)} is a relative path and the policy sets no \`paths.cwd\` to resolve it against`,
    };
  }
  return parsePath(p.cwd === '/' ? `/${name}` : `${p.cwd}/${name}`);
}

/** Checks every candidate against the paths rules. */
export function matchPaths(p: ShellPaths, candidates: ReadonlySet<string>): MatchResult {
  for (const name of candidates) {
    if (name === '') continue; // an empty argument names no file
    const f = resolve(p, name);
    if (!f.ok) return { ok: false, why: `shell argument ${quote(name)} may name a file: ${f.error}` };
    const m = pathCanonicaliser.match(p.path, f.value);
    if (!m.ok) return { ok: false, why: `shell argument ${quote(name)} may name a file: ${m.why}` };
  }
  return { ok: true };
}
