/**
 * A compiled `shell` condition and how facts are matched against it: the structure of the command
 * line (`allow_*`), the programs (never dynamic, never an unlisted wrapper, in `programs`), and the
 * files it names (`paths`). The facts come from shell.ts.
 */
import { ConditionReader, listForWhy, quote } from './condition.js';
import { flag, stringList } from './fields.js';
import type { ShellFacts } from './shell.js';
import {
  compilePaths,
  matchPaths,
  PATHS_FIELD,
  pathCandidates,
  type ShellPaths,
  valueCandidates,
} from './shell-paths.js';
import { changesDirectory, isWrapper, runsCommandsViaOptions } from './shell-wrappers.js';
import type { CompileResult, ConditionFields, ConditionWarning, MatchResult } from './types.js';

/** A compiled `shell` condition. */
export interface ShellCondition {
  programs?: string[];
  allowPipes: boolean;
  allowRedirects: boolean;
  allowSubstitution: boolean;
  allowChaining: boolean;
  allowBackground: boolean;
  allowAssignments: boolean;
  allowSubshells: boolean;
  allowArithmetic: boolean;
  allowTests: boolean;
  allowFunctions: boolean;
  allowHeredocs: boolean;
  /** Wrappers accepted as programs (see shell-wrappers.ts); all others are refused. */
  allowWrappers: string[];
  paths?: ShellPaths;
}

function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20) return true;
  return false;
}

/** The fields of a `shell` condition (the one definition: schema, loader and docs test read it). */
export const SHELL_FIELDS: ConditionFields = {
  programs: stringList('Every program run must be one of these, matched exactly.', { allowList: true }),
  allow_wrappers: stringList(
    'Wrappers and interpreters listed in `programs` that may run (`env`, `sudo`, `sh`, `xargs`, ...); all others are refused.',
  ),
  paths: PATHS_FIELD,
  allow_pipes: flag('Accept `|` and `|&` (default false).'),
  allow_redirects: flag('Accept redirections and here-strings (default false).'),
  allow_heredocs: flag('Accept here-documents `<<` (default false).'),
  allow_substitution: flag('Accept `$(...)`, backticks and process substitution (default false).'),
  allow_chaining: flag('Accept `;`, `&&`, `||`, newlines and control flow (default false).'),
  allow_background: flag('Accept `&` (default false).'),
  allow_assignments: flag('Accept variable assignments such as `FOO=1 cmd` (default false).'),
  allow_subshells: flag('Accept subshells `( ... )` (default false).'),
  allow_arithmetic: flag('Accept arithmetic commands `(( ... ))` and `for (( ... ))` (default false).'),
  allow_tests: flag('Accept `[[ ... ]]` tests (default false).'),
  allow_functions: flag('Accept function definitions (default false).'),
};

function programName(p: string): { ok: true; value: string } | { ok: false; error: string } {
  return p === '' || /\s/.test(p) || hasControl(p)
    ? { ok: false, error: `${quote(p)} is not a program name` }
    : { ok: true, value: p };
}

/** Validates a `shell` condition from the policy. */
export function compileShell(condition: unknown): CompileResult<ShellCondition> {
  const r = new ConditionReader(condition, 'shell', SHELL_FIELDS);
  const programs = r.strings('programs', programName);
  const wrappers = r.strings('allow_wrappers', programName) ?? [];
  const value: ShellCondition = {
    allowPipes: r.bool('allow_pipes') ?? false,
    allowRedirects: r.bool('allow_redirects') ?? false,
    allowSubstitution: r.bool('allow_substitution') ?? false,
    allowChaining: r.bool('allow_chaining') ?? false,
    allowBackground: r.bool('allow_background') ?? false,
    allowAssignments: r.bool('allow_assignments') ?? false,
    allowSubshells: r.bool('allow_subshells') ?? false,
    allowArithmetic: r.bool('allow_arithmetic') ?? false,
    allowTests: r.bool('allow_tests') ?? false,
    allowFunctions: r.bool('allow_functions') ?? false,
    allowHeredocs: r.bool('allow_heredocs') ?? false,
    allowWrappers: wrappers,
  };
  programs?.forEach((p, i) => {
    if (isWrapper(p) && !wrappers.includes(p)) {
      r.error(
        `programs[${i}]`,
        `${quote(p)} runs its arguments as a command or code, which \`programs\` cannot check; remove it, or list it in \`allow_wrappers\` too to accept that`,
      );
    }
  });
  wrappers.forEach((w, i) => {
    if (!isWrapper(w))
      r.error(`allow_wrappers[${i}]`, `${quote(w)} is not a wrapper; \`programs\` alone allows it`);
    else if (programs !== undefined && !programs.includes(w))
      r.error(`allow_wrappers[${i}]`, `${quote(w)} is not in \`programs\`; list it there too`);
  });
  if (r.obj.paths !== undefined) {
    const p = compilePaths(r.obj.paths);
    if (p.ok) value.paths = p.value;
    else for (const e of p.errors) r.error(e.field, e.message);
    if (value.allowTests) {
      r.error('allow_tests', '`[[ ... ]]` operands are not checked against `paths`; drop one of the two');
    }
  }
  if (r.errors.length > 0) return { ok: false, errors: r.errors };
  if (programs !== undefined) value.programs = programs;
  return { ok: true, value };
}

const deny = (why: string): MatchResult => ({ ok: false, why });

/** The structure of the command line: each feature is refused unless its `allow_*` is set. */
function matchStructure(c: ShellCondition, f: ShellFacts): MatchResult {
  if (f.substitution && !c.allowSubstitution) {
    return deny(
      'shell command uses command or process substitution (`$(...)`, backticks, `<(...)`), which is not allowed',
    );
  }
  if (f.chaining && !c.allowChaining) {
    return deny(
      'shell command runs several statements (`;`, `&&`, `||`, newline or control flow); send one command',
    );
  }
  if (f.pipes && !c.allowPipes) return deny('shell command uses a pipe (`|`), which is not allowed');
  if (f.background && !c.allowBackground)
    return deny('shell command runs something in the background (`&`), which is not allowed');
  if (f.redirects.length > 0 && !c.allowRedirects) {
    return deny(
      `shell command redirects input or output (${listForWhy(f.redirects.map(quote))}), which is not allowed`,
    );
  }
  if (f.heredocs.length > 0 && !c.allowHeredocs) {
    return deny(
      `shell command uses a here-document (${listForWhy(f.heredocs.map(quote))}), which is not allowed`,
    );
  }
  if (f.assignments.length > 0 && !c.allowAssignments) {
    return deny(
      `shell command assigns variables (${listForWhy(f.assignments.map(quote))}), which is not allowed`,
    );
  }
  if (f.functions.length > 0 && !c.allowFunctions) {
    return deny(
      `shell command defines functions (${listForWhy(f.functions.map(quote))}), which is not allowed`,
    );
  }
  if (f.subshell && !c.allowSubshells)
    return deny('shell command uses a subshell `( ... )`, which is not allowed');
  if (f.arithmetic && !c.allowArithmetic) {
    return deny('shell command uses an arithmetic command `(( ... ))`, which is not allowed');
  }
  if (f.tests.includes('[[') && !c.allowTests)
    return deny('shell command uses a `[[ ... ]]` test, which is not allowed');
  return { ok: true };
}

/** The programs: always a literal, never an unlisted wrapper, and in `programs` when it is set. */
function matchPrograms(c: ShellCondition, f: ShellFacts): MatchResult {
  if (f.dynamicProgram) {
    // INVARIANT: fail closed — the program bash runs must be known, or no wrapper check means anything.
    return deny(
      'shell command names its program with an expansion, glob or escape; name the program literally',
    );
  }
  const wrapped = f.programs.filter((p) => isWrapper(p) && !c.allowWrappers.includes(p));
  if (wrapped.length > 0) {
    return deny(
      `shell program ${listForWhy(wrapped.map(quote))} runs its arguments as a command or code; not allowed`,
    );
  }
  if (c.programs !== undefined) {
    const allowed = c.programs;
    const bad = f.programs.filter((p) => !allowed.includes(p));
    if (bad.length > 0)
      return deny(`shell program ${listForWhy(bad.map(quote))} not allowed; allowed: ${listForWhy(allowed)}`);
  }
  return { ok: true };
}

/** Every word that may name a file (see shell-paths.ts) satisfies `paths`. */
function matchFiles(p: ShellPaths, f: ShellFacts): MatchResult {
  if (f.dynamicArgs) {
    return deny(
      "shell command has an argument, redirection target or assigned value bash would expand (variable, glob, brace, `~`, `$'…'`); with `paths` set every word must be literal",
    );
  }
  if (f.tests.length > 0)
    return deny('shell command uses a `[ ... ]` test, whose operands are not checked against `paths`');
  const names = new Set<string>();
  for (const cmd of f.commands) {
    if (p.cwd !== undefined && changesDirectory(cmd.program)) {
      return deny(
        `shell command changes directory (${quote(cmd.program)}); relative paths are checked against \`paths.cwd\``,
      );
    }
    const e = pathCandidates(cmd.args, names);
    if (e !== null) return deny(`shell ${e}`);
  }
  for (const t of f.redirectTargets) names.add(t);
  for (const v of f.assignedValues) valueCandidates(v, names);
  return matchPaths(p, names);
}

/** Does one command line satisfy the condition? */
export function matchShell(c: ShellCondition, f: ShellFacts): MatchResult {
  const s = matchStructure(c, f);
  if (!s.ok) return s;
  const p = matchPrograms(c, f);
  if (!p.ok || c.paths === undefined) return p;
  return matchFiles(c.paths, f);
}

/** Validation warnings for an allow rule: what the condition still lets through. */
export function shellWarnings(c: ShellCondition): ConditionWarning[] {
  const out: ConditionWarning[] = [];
  if (c.programs === undefined) {
    out.push({
      field: '',
      code: 'shell_any_program',
      message: 'the condition has no `programs`, so the command may run any program that is not a wrapper',
      hint: 'list the programs the tool may run: `programs: [ls, cat]`',
    });
  }
  for (const w of c.allowWrappers) {
    out.push({
      field: 'allow_wrappers',
      code: 'shell_wrapper_allowed',
      message: `${quote(w)} runs its arguments as a command or code: whatever it runs is allowed, unchecked`,
    });
  }
  for (const p of c.programs ?? []) {
    if (runsCommandsViaOptions(p)) {
      out.push({
        field: 'programs',
        code: 'shell_program_runs_commands',
        message: `${quote(p)} can run commands or open files through its own options or scripts, which \`programs\` and \`paths\` do not see`,
      });
    }
  }
  if (c.allowAssignments) {
    out.push({
      field: 'allow_assignments',
      code: 'shell_assignments',
      message:
        'any variable may be set, including `PATH`, `LD_PRELOAD` and `BASH_ENV`, which choose what runs',
    });
  }
  return out;
}
