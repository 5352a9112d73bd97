/**
 * The `path` constraint: absolute POSIX paths, normalised lexically, matched segment by segment.
 *
 *   when: { path: { under: [/srv/kb], not_under: [/srv/kb/private] } }
 *
 * A `..` segment is resolved lexically for the facts, but a condition refuses it unless
 * `allow_traversal: true`, because the operating system resolves `..` after following symbolic links.
 * Anything a target might decode or interpret differently is refused rather than guessed at:
 * percent-escapes (`%2e`, `%c0%af`, IIS `%u002e`), backslashes (Windows `C:\\`, UNC `\\\\server`), a
 * leading `//` (a network path on Windows and Cygwin), NUL and control characters, `~`, trailing dots
 * or spaces on a segment, non-NFC Unicode, characters that compatibility normalisation or Windows
 * "best fit" code pages turn into `/`, `\\` or `.` (`／`, `．．`, `∕`, `＼`), invisible format characters,
 * lone UTF-16 surrogates, relative paths (`file:///x`, `C:/x`).
 */
import type { Json } from '../types.js';
import { ConditionReader, describeType, listForWhy, quote } from './condition.js';
import { flag, stringList } from './fields.js';
import type {
  Canonicaliser,
  CompileResult,
  ConditionFields,
  ConditionWarning,
  FactResult,
  MatchResult,
} from './types.js';

/** Longest path accepted (Linux PATH_MAX). */
export const PATH_MAX = 4096;

/** Facts about one path argument. */
export interface PathFacts {
  /** Absolute, lexically normalised path: no `.`, `..`, `//` or trailing slash (except `/` itself). */
  path: string;
  /** Number of segments (`/` has 0, `/srv/kb` has 2). */
  segments: number;
  /**
   * The raw path contained a `..` segment. Lexical resolution is only right when no segment before
   * it is a symbolic link (`/srv/kb/link/../x` leaves `/srv/kb` if `link` points elsewhere), so a
   * condition refuses it unless `allow_traversal` is set.
   */
  traversal: boolean;
}

/** A compiled `path` condition: entries are normalised absolute paths. */
export interface PathCondition {
  under?: string[];
  notUnder?: string[];
  allowTraversal: boolean;
}

/** Characters that Windows "best fit" code pages map to `/` or `\\` (NFKC leaves them alone). */
const BEST_FIT_SEPARATORS = /[\u2215\u2216\u2044\u29f5\u29f8\u29f9\ufe68\u00a5\u20a9]/;

/** Why a non-ASCII path is refused, or undefined. */
function unicodeProblem(raw: string): string | undefined {
  // With the `u` flag a well-formed surrogate pair is one code point; only a lone half is `Cs`.
  if (/\p{Cs}/u.test(raw)) return 'contains a lone utf-16 surrogate (it has no utf-8 form)';
  if (raw.normalize('NFC') !== raw) {
    // A file system that normalises Unicode would treat two different strings as one directory.
    return 'is not in Unicode normal form nfc';
  }
  if (/\p{Cf}/u.test(raw)) return 'contains an invisible format character (zero-width, bidi control)';
  // Removing ASCII first means any `/`, `\\`, `.`, `%`, `:` or `~` left after NFKC came from a look-alike.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removes all of ASCII, control characters too
  const nonAscii = raw.replace(/[\u0000-\u007f]+/g, '');
  if (BEST_FIT_SEPARATORS.test(raw) || /[./\\%:~]/.test(nonAscii.normalize('NFKC'))) {
    return 'contains a look-alike of `/`, `\\`, `.`, `%`, `:` or `~` that a normalising target would turn into it';
  }
  return undefined;
}

/** Parses and normalises one absolute path. Never throws. */
export function parsePath(raw: string): FactResult<PathFacts> {
  if (raw.length === 0) return { ok: false, error: 'path is empty' };
  if (raw.length > PATH_MAX) return { ok: false, error: `path is longer than ${PATH_MAX} characters` };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL and control characters are what is refused here
  if (/[\u0000-\u001f\u007f-\u009f]/.test(raw)) {
    return { ok: false, error: `path ${quote(raw)} contains a NUL or control character` };
  }
  if (/%[0-9a-fA-F]{2}/.test(raw)) {
    // INVARIANT: fail closed — a target that percent-decodes would see a different path (`%2e%2e`, `%2f`).
    return {
      ok: false,
      error: `path ${quote(raw)} contains a percent-encoded sequence; send the decoded path`,
    };
  }
  if (/%u[0-9a-fA-F]{4}/.test(raw)) {
    return { ok: false, error: `path ${quote(raw)} contains a \`%u\` escape; send the decoded path` };
  }
  if (raw.includes('\\')) return { ok: false, error: `path ${quote(raw)} contains a backslash` };
  if (raw.startsWith('~'))
    return { ok: false, error: `path ${quote(raw)} starts with \`~\`; send an absolute path` };
  if (!raw.startsWith('/')) {
    const hint = raw.startsWith('file:') ? ' (send the path, not a `file:` url)' : '';
    return { ok: false, error: `path ${quote(raw)} is not absolute${hint}` };
  }
  if (raw.charCodeAt(1) === 47 /* / */ && raw.charCodeAt(2) !== 47) {
    // POSIX leaves exactly two leading slashes implementation-defined; Windows and Cygwin read `//host/share`.
    return { ok: false, error: `path ${quote(raw)} starts with \`//\`, a network path on some systems` };
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: only non-ASCII paths need the Unicode checks
  if (/[^\u0000-\u007f]/.test(raw)) {
    const u = unicodeProblem(raw);
    if (u !== undefined) return { ok: false, error: `path ${quote(raw)} ${u}` };
  }
  const out: string[] = [];
  let traversal = false;
  for (const seg of raw.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      traversal = true;
      out.pop();
      continue;
    }
    if (seg.endsWith('.') || seg.endsWith(' ')) {
      // SMB and Windows targets strip these, so `/srv/kb./x` would reach `/srv/kb/x`.
      return { ok: false, error: `path ${quote(raw)} has a segment ending in a dot or space: ${quote(seg)}` };
    }
    out.push(seg);
  }
  return { ok: true, value: { path: `/${out.join('/')}`, segments: out.length, traversal } };
}

/** Is `path` equal to `dir` or inside it, segment-aware? Both must be normalised. */
export function isUnder(path: string, dir: string): boolean {
  if (dir === '/') return true;
  return path === dir || (path.startsWith(dir) && path.charCodeAt(dir.length) === 47) /* '/' */;
}

function compileEntry(entry: string): { ok: true; value: string } | { ok: false; error: string } {
  const r = parsePath(entry);
  if (!r.ok) return { ok: false, error: r.error };
  if (r.value.path !== entry) {
    return {
      ok: false,
      error: `write the normalised path ${quote(r.value.path)} instead of ${quote(entry)}`,
    };
  }
  return { ok: true, value: entry };
}

/** The fields of a `path` condition (the one definition: schema, loader and docs test read it). */
const FIELDS: ConditionFields = {
  under: stringList('Every path must be one of these directories or inside one.', { allowList: true }),
  not_under: stringList('No path may be one of these directories or inside one.'),
  allow_traversal: flag('Accept a `..` segment (default false).'),
};

function compile(condition: unknown): CompileResult<PathCondition> {
  const r = new ConditionReader(condition, 'path', FIELDS);
  const under = r.strings('under', compileEntry);
  const notUnder = r.strings('not_under', compileEntry);
  const allowTraversal = r.bool('allow_traversal') ?? false;
  if (r.errors.length > 0) return { ok: false, errors: r.errors };
  const value: PathCondition = { allowTraversal };
  if (under !== undefined) value.under = under;
  if (notUnder !== undefined) value.notUnder = notUnder;
  return { ok: true, value };
}

function facts(raw: Json): FactResult<PathFacts> {
  if (typeof raw !== 'string')
    return { ok: false, error: `a path must be a string, got ${describeType(raw)}` };
  return parsePath(raw);
}

function match(c: PathCondition, f: PathFacts): MatchResult {
  if (f.traversal && !c.allowTraversal) {
    return {
      ok: false,
      why: `path contains a \`..\` segment (resolves to ${quote(f.path)}); send the path without \`..\``,
    };
  }
  if (c.under !== undefined && !c.under.some((d) => isUnder(f.path, d))) {
    return {
      ok: false,
      why: `path ${quote(f.path)} is outside the allowed directories: ${listForWhy(c.under)}`,
    };
  }
  const hit = c.notUnder?.find((d) => isUnder(f.path, d));
  if (hit !== undefined)
    return { ok: false, why: `path ${quote(f.path)} is inside ${quote(hit)}, which is excluded` };
  return { ok: true };
}

/** The dangerous defaults an allow rule's `path` condition may leave open. */
function warnings(c: PathCondition): ConditionWarning[] {
  const out: ConditionWarning[] = [];
  if (c.under === undefined || c.under.includes('/')) {
    out.push({
      field: c.under === undefined ? '' : 'under',
      code: 'path_anywhere',
      message: `${c.under === undefined ? 'no `under`' : '`under: [/]`'}: any path on the machine is allowed (\`/etc/shadow\`, \`/root/.ssh\`)`,
      hint: 'list the directories the tool may touch: `under: [/srv/data]`',
    });
  }
  if (c.allowTraversal) {
    out.push({
      field: 'allow_traversal',
      code: 'path_traversal',
      message:
        '`allow_traversal: true` checks `..` lexically, but the system follows symbolic links first: `/srv/kb/link/../x` can leave `/srv/kb`',
    });
  }
  return out;
}

/** The `path` canonicaliser. */
export const pathCanonicaliser: Canonicaliser<PathCondition, PathFacts> = {
  name: 'path',
  description: 'File path facts (absolute, normalised, segment-aware).',
  fields: FIELDS,
  defaultArgs: ['path', 'file', 'filename', 'file_path', 'filepath', 'source', 'destination'],
  compile,
  facts,
  match,
  warnings,
  toJson: (f) => ({ path: f.path, segments: f.segments, traversal: f.traversal }),
};
