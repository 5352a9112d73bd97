/**
 * The `shell` constraint, using tree-sitter-bash (through web-tree-sitter) to parse a command line
 * the way bash reads it.
 *
 *   when: { shell: { programs: [ls, cat, grep], paths: { under: [/srv/kb], cwd: /srv/kb } } }
 *
 * Every command anywhere in the tree counts, including those inside substitutions, subshells, loops
 * and function bodies. Words are unquoted with bash's rules; a word bash would still expand
 * (variables, globs, braces, tilde, `$'…'`, arithmetic, history `!`) is *dynamic*: never accepted as
 * a program, nor as an argument when `paths` is set. Where tree-sitter and bash could disagree the
 * input is refused instead of guessed at: parse errors, line continuations, carriage returns, control
 * and non-ASCII space characters, reserved words such as `time` and `coproc` where tree-sitter
 * expects a command, and any `$(` or backtick in text the parser treated as literal (e.g. some
 * here-documents). This file builds the facts; shell-condition.ts matches them (wrappers in
 * shell-wrappers.ts, the words that name files in shell-paths.ts).
 */
import { fileURLToPath } from 'node:url';
import { Language, Parser, type TreeCursor } from 'web-tree-sitter';
import type { Json } from '../types.js';
import { describeType, quote } from './condition.js';
import {
  compileShell,
  matchShell,
  SHELL_FIELDS,
  type ShellCondition,
  shellWarnings,
} from './shell-condition.js';
import type { Canonicaliser, FactResult } from './types.js';

export type { ShellCondition } from './shell-condition.js';

/** Longest command line accepted. */
export const SHELL_MAX = 64 * 1024;
/** Deepest syntax tree accepted. */
const MAX_DEPTH = 400;

/** One simple command: its program word and its argument words (unquoted with bash rules when literal). */
export interface ShellCommand {
  program: string;
  args: string[];
}

/** Facts about one shell argument. */
export interface ShellFacts {
  commands: ShellCommand[];
  /** Distinct programs, in order of appearance. */
  programs: string[];
  pipes: boolean;
  /** Redirections as written (`> out`, `2>&1`, `<<< hi`), here-documents excluded. */
  redirects: string[];
  /** Files the redirections open, after quote removal (`> out` opens `out`; `2>&1` opens none). */
  redirectTargets: string[];
  /** Here-documents, as their operator and delimiter (`<<EOF`, `<<-'END'`). */
  heredocs: string[];
  /** Command substitution (`$(...)`, backticks) or process substitution (`<(...)`, `>(...)`). */
  substitution: boolean;
  /** More than one statement in sequence (`;`, `&&`, `||`, newline) or control flow (if/while/for/case). */
  chaining: boolean;
  /** A command is run in the background with `&`. */
  background: boolean;
  /** Some program word is not a literal (expansion, glob, brace or `$'...'` escape): it is unknown until run. */
  dynamicProgram: boolean;
  /** Some argument, redirection target or assigned value is not a literal; its entry is the source text. */
  dynamicArgs: boolean;
  /** Variables assigned (`FOO=1 cmd`, `export PATH=...`, `x=1`), in order of appearance. */
  assignments: string[];
  /** The values assigned, after quote removal, in the same order. */
  assignedValues: string[];
  /** A subshell `( ... )`. */
  subshell: boolean;
  /** An arithmetic command `(( ... ))` or loop `for (( ... ))`. */
  arithmetic: boolean;
  /** Test commands, by their opening word: `[[` (a keyword) or `[` (also a program). */
  tests: string[];
  /** Names of functions the command line defines. */
  functions: string[];
}

let parser: Parser | null = null;
let loading: Promise<void> | null = null;

/** Loads the bash grammar once. Idempotent; a failed load can be retried. */
export function initShell(): Promise<void> {
  if (parser !== null) return Promise.resolve();
  loading ??= (async () => {
    await Parser.init();
    // The grammar ships with the package (grammars/), so installing it runs no native build of
    // tree-sitter-bash; a test keeps the copy identical to the tree-sitter-bash development dependency.
    const wasm = fileURLToPath(new URL('../../grammars/tree-sitter-bash.wasm', import.meta.url));
    const lang = await Language.load(wasm);
    const p = new Parser();
    p.setLanguage(lang);
    parser = p;
  })().catch((e: unknown) => {
    loading = null;
    throw e;
  });
  return loading;
}

/** True once the bash grammar is loaded. */
export function shellReady(): boolean {
  return parser !== null;
}

// ---------------------------------------------------------------------------------------------------
// A plain copy of the syntax tree, built in one cursor pass (wasm node objects are costly to touch).

interface TNode {
  type: string;
  named: boolean;
  missing: boolean;
  field: string | null;
  start: number;
  end: number;
  children: TNode[];
}

class TooDeep extends Error {}

function copyTree(c: TreeCursor, depth: number): TNode {
  if (depth > MAX_DEPTH) throw new TooDeep();
  const n: TNode = {
    type: c.nodeType,
    named: c.nodeIsNamed,
    missing: c.nodeIsMissing,
    field: c.currentFieldName,
    start: c.startIndex,
    end: c.endIndex,
    children: [],
  };
  if (c.gotoFirstChild()) {
    do n.children.push(copyTree(c, depth + 1));
    while (c.gotoNextSibling());
    c.gotoParent();
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Words

interface Word {
  value: string;
  dynamic: boolean;
}

/**
 * Unquotes an unquoted word with bash rules. `$`, backticks, globs, braces, extglob parentheses, `!`
 * (history) and `~` make it dynamic: `~` anywhere, because bash also expands it after `=` (`x=~`).
 */
function plainWord(text: string, alone: boolean): Word {
  if (alone && (text === '[' || text === ']')) return { value: text, dynamic: false };
  let value = '';
  let dynamic = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '\\') {
      i++;
      value += text[i] ?? '';
      continue;
    }
    if (EXPANDING.includes(c)) dynamic = true;
    value += c;
  }
  return { value, dynamic };
}

/** Characters that make an unquoted word something bash expands. */
const EXPANDING = '$`*?[]{}()~!';

/** Unquotes the inside of a double-quoted string without expansions. */
function doubleQuoted(text: string): string {
  return text.replace(/\\([$`"\\\n])/g, '$1');
}

class Analysis {
  readonly commands: ShellCommand[] = [];
  readonly programs: string[] = [];
  readonly redirects: string[] = [];
  readonly assignments: string[] = [];
  readonly assignedValues: string[] = [];
  readonly redirectTargets: string[] = [];
  readonly heredocs: string[] = [];
  readonly tests: string[] = [];
  readonly functions: string[] = [];
  subshell = false;
  arithmetic = false;
  pipes = false;
  substitution = false;
  chaining = false;
  background = false;
  dynamicProgram = false;
  dynamicArgs = false;
  statements = 0;

  constructor(private readonly src: string) {}

  text(n: TNode): string {
    return this.src.slice(n.start, n.end);
  }

  word(n: TNode, alone: boolean): Word {
    const t = this.text(n);
    switch (n.type) {
      case 'word':
        return plainWord(t, alone);
      case 'number':
        return { value: t, dynamic: false };
      case 'raw_string':
        return { value: t.slice(1, -1), dynamic: false };
      case 'ansi_c_string':
        // `$'\x2f'` is decoded by bash; even without escapes it is not taken as a literal.
        return { value: t, dynamic: true };
      case 'string': {
        // `$"…"` is translated through the locale's message catalogue; `!` is history in an
        // interactive shell.
        const literal =
          !t.startsWith('$') &&
          !t.includes('!') &&
          n.children.every((c) => !c.named || c.type === 'string_content');
        return literal
          ? { value: doubleQuoted(t.slice(1, -1)), dynamic: false }
          : { value: t, dynamic: true };
      }
      case 'concatenation':
      case 'command_name': {
        if (n.children.some((c) => !c.named)) return { value: t, dynamic: true };
        let value = '';
        let dynamic = false;
        const only = n.children.length === 1;
        for (const c of n.children) {
          const w = this.word(c, alone && only);
          value += w.value;
          dynamic ||= w.dynamic;
        }
        return dynamic ? { value: t, dynamic } : { value, dynamic };
      }
      default:
        return { value: t, dynamic: true };
    }
  }

  addCommand(program: Word, args: TNode[]): void {
    const a: string[] = [];
    for (const x of args) {
      const w = this.word(x, true);
      if (w.dynamic) this.dynamicArgs = true;
      a.push(w.value);
    }
    if (program.dynamic) this.dynamicProgram = true;
    this.commands.push({ program: program.value, args: a });
    if (!this.programs.includes(program.value)) this.programs.push(program.value);
  }

  /**
   * INVARIANT: fail closed — two words with nothing between them are one word to bash. tree-sitter
   * splits some (`'s'\\s` after a quote becomes two words), which would let `priv'a'\\te` pass as
   * `priva` and `te` while bash opens `private`.
   */
  splitWord(n: TNode): string | null {
    for (let i = 1; i < n.children.length; i++) {
      const a = n.children[i - 1] as TNode;
      const b = n.children[i] as TNode;
      if (a.end === b.start && WORD_TYPES.has(a.type) && WORD_TYPES.has(b.type)) {
        return `shell ${quote(this.src)} has a word the parser split in two where bash reads one: ${quote(this.src.slice(a.start, b.end))}`;
      }
    }
    return null;
  }

  /** Records the file a redirection opens: every destination except a descriptor after `>&`/`<&`. */
  redirectTarget(n: TNode): void {
    const op = n.children.find((c) => !c.named)?.type ?? '';
    for (const d of n.children) {
      if (d.field !== 'destination') continue;
      const w = this.word(d, false);
      if ((op === '>&' || op === '<&') && !w.dynamic && /^(?:[0-9]+-?|-)$/.test(w.value)) continue;
      if (w.dynamic) this.dynamicArgs = true;
      this.redirectTargets.push(w.value);
    }
  }

  /**
   * INVARIANT: fail closed — text the parser kept as literal must not hold `$(` or a backtick, or bash
   * would run a command the facts do not name.
   */
  checkLiteral(n: TNode): string | null {
    let pos = n.start;
    const gaps: string[] = [];
    for (const c of n.children) {
      if (c.start > pos) gaps.push(this.src.slice(pos, c.start));
      pos = Math.max(pos, c.end);
    }
    if (n.end > pos) gaps.push(this.src.slice(pos, n.end));
    for (const g of gaps) {
      for (let i = 0; i < g.length; i++) {
        const ch = g[i];
        if (ch === '\\') i++;
        else if (ch === '`' || (ch === '$' && g[i + 1] === '(')) return g;
      }
    }
    return null;
  }

  visit(n: TNode): string | null {
    if (n.type === 'ERROR' || n.missing) {
      return `shell ${quote(this.src)} does not parse near ${quote(this.src.slice(n.start, n.start + 20))}`;
    }
    if (n.named && !LITERAL_TYPES.has(n.type)) {
      const hidden = this.checkLiteral(n);
      if (hidden !== null) {
        return `shell ${quote(this.src)} has \`$(\` or a backtick the parser did not read as a substitution: ${quote(hidden.trim())}`;
      }
    }
    if (!WORD_PARTS.has(n.type)) {
      const split = this.splitWord(n);
      if (split !== null) return split;
    }
    if (STATEMENT_CONTAINERS.has(n.type)) {
      const count = n.children.filter((c) => STATEMENT_TYPES.has(c.type)).length;
      if (n.type === 'program') this.statements = count;
      if (count > 1) this.chaining = true;
    }
    switch (n.type) {
      case 'command': {
        const name = n.children.find((c) => c.field === 'name');
        if (name !== undefined) {
          const program = this.word(name, true);
          if (RESERVED_WORDS.has(this.text(name))) {
            // e.g. `time { rm; }` parses as `time` with arguments; bash runs `rm`.
            return `shell ${quote(this.src)} uses the reserved word ${quote(this.text(name))} where the parser expects a command; it is not supported`;
          }
          this.addCommand(
            program,
            n.children.filter((c) => c.field === 'argument'),
          );
        }
        break;
      }
      case 'declaration_command':
      case 'unset_command': {
        const kw = n.children[0];
        const program =
          kw !== undefined && !kw.named ? kw.type : n.type === 'unset_command' ? 'unset' : 'declare';
        this.addCommand(
          { value: program, dynamic: false },
          n.children.filter((c) => c.named && c.type !== 'variable_assignment'),
        );
        break;
      }
      case 'test_command': {
        const open = n.children[0];
        const kind = open !== undefined && !open.named ? open.type : '[[';
        this.tests.push(kind);
        // `[` is a builtin command (and a wrapper: `[ -v 'a[$(rm)]' ]` runs rm); `[[` is a keyword.
        if (kind === '[') this.addCommand({ value: '[', dynamic: false }, []);
        break;
      }
      case 'variable_assignment': {
        const name = n.children.find((c) => c.field === 'name') ?? n.children[0];
        this.assignments.push(name !== undefined ? this.text(name) : this.text(n));
        const value = n.children.find((c) => c.field === 'value');
        const w = value === undefined ? { value: '', dynamic: false } : this.word(value, false);
        if (w.dynamic) this.dynamicArgs = true;
        this.assignedValues.push(w.value);
        break;
      }
      case 'subshell':
        this.subshell = true;
        break;
      case 'compound_statement':
        if (n.children[0]?.type === '((') this.arithmetic = true;
        break;
      case 'function_definition': {
        const name = n.children.find((c) => c.field === 'name');
        this.functions.push(name !== undefined ? this.text(name) : '?');
        break;
      }
      case 'pipeline':
      case '|':
      case '|&':
        this.pipes = true;
        break;
      case 'list':
      case '&&':
      case '||':
      case ';':
      case ';;':
      case ';&':
      case ';;&':
      case 'if_statement':
      case 'while_statement':
      case 'for_statement':
      case 'case_statement':
        this.chaining = true;
        break;
      case 'c_style_for_statement':
        this.chaining = true;
        this.arithmetic = true;
        break;
      case '&':
        this.background = true;
        break;
      case 'command_substitution':
      case 'process_substitution':
        this.substitution = true;
        break;
      case 'file_redirect':
        this.redirects.push(this.text(n).replace(/\s+/g, ' '));
        this.redirectTarget(n);
        break;
      case 'herestring_redirect':
        this.redirects.push(this.text(n).replace(/\s+/g, ' '));
        break;
      case 'heredoc_redirect': {
        const start = n.children.find((c) => c.type === 'heredoc_start');
        const op = n.children.find((c) => !c.named);
        this.heredocs.push(`${op?.type ?? '<<'}${start !== undefined ? this.text(start) : ''}`);
        if (start !== undefined && /['"\\]/.test(this.text(start))) {
          // A quoted delimiter makes the body literal: nothing inside it runs, so it is not walked.
          for (const c of n.children)
            if (c.type !== 'heredoc_body') {
              const e = this.visit(c);
              if (e !== null) return e;
            }
          return null;
        }
        break;
      }
      case 'comment':
        return null;
    }
    for (const c of n.children) {
      const e = this.visit(c);
      if (e !== null) return e;
    }
    return null;
  }
}

/**
 * Bash reserved words. Met unquoted as a command name they mean tree-sitter has not read them as
 * bash would (`time`, `coproc` and stray braces take a whole command as their "arguments").
 */
const RESERVED_WORDS = new Set([
  'time',
  'coproc',
  '{',
  '}',
  '!',
  '[[',
  ']]',
  'case',
  'do',
  'done',
  'elif',
  'else',
  'esac',
  'fi',
  'for',
  'function',
  'if',
  'in',
  'select',
  'then',
  'until',
  'while',
]);

/** Nodes that are (part of) one shell word. */
const WORD_TYPES = new Set([
  'word',
  'number',
  'string',
  'raw_string',
  'ansi_c_string',
  'translated_string',
  'concatenation',
  'command_name',
  'simple_expansion',
  'expansion',
  'arithmetic_expansion',
  'command_substitution',
  'process_substitution',
  'brace_expression',
  'extglob_pattern',
]);

/** Nodes whose children are the pieces of one word, adjacent by definition. */
const WORD_PARTS = new Set(['concatenation', 'string', 'command_name', 'translated_string']);

/** Nodes whose text bash does not expand (or that are anonymous tokens such as `$(`). */
const LITERAL_TYPES = new Set(['raw_string', 'ansi_c_string', 'comment', 'heredoc_start', 'heredoc_end']);

const STATEMENT_CONTAINERS = new Set([
  'program',
  'compound_statement',
  'subshell',
  'do_group',
  'command_substitution',
  'process_substitution',
  'else_clause',
  'elif_clause',
  'case_item',
]);

const STATEMENT_TYPES = new Set([
  'command',
  'redirected_statement',
  'pipeline',
  'list',
  'subshell',
  'compound_statement',
  'if_statement',
  'while_statement',
  'for_statement',
  'c_style_for_statement',
  'case_statement',
  'function_definition',
  'declaration_command',
  'unset_command',
  'test_command',
  'negated_command',
  'variable_assignment',
  'variable_assignments',
]);

/** Nodes whose range a backslash-escaped blank must lie in for the parser to have kept it. */
const KEEPS_ESCAPE = new Set([...WORD_TYPES, 'string_content', 'comment', 'heredoc_body', 'heredoc_content']);

/**
 * INVARIANT: fail closed — bash keeps `\\ ` and `\\<tab>` as part of a word; tree-sitter drops them at
 * the start of a word or after a quote (`"a"\\ b` becomes `a` and `b`, one word `a b` to bash).
 * Returns the offset of such an escape no word node covers, or null.
 */
function lostEscape(raw: string, root: TNode): number | null {
  const at: number[] = [];
  for (let i = raw.indexOf('\\'); i >= 0; i = raw.indexOf('\\', i + 2)) {
    const next = raw[i + 1];
    if (next === ' ' || next === '\t') at.push(i);
  }
  if (at.length === 0) return null;
  const covered = (n: TNode, i: number): boolean =>
    n.start <= i && i + 1 < n.end && (KEEPS_ESCAPE.has(n.type) || n.children.some((c) => covered(c, i)));
  return at.find((i) => !covered(root, i)) ?? null;
}

/** Unicode spaces, separators, format characters (zero-width, bidi), C1 controls, lone surrogates. */
const ODD_SPACE = /[\u0080-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\p{Cf}\p{Cs}]/u;

/** Parses a command line with tree-sitter-bash and extracts facts. Never throws. */
export function parseShell(raw: string): FactResult<ShellFacts> {
  // INVARIANT: fail closed — before the grammar is loaded every value is an error, never an allow.
  if (parser === null) return { ok: false, error: 'shell parser not initialised' };
  if (raw.length > SHELL_MAX)
    return { ok: false, error: `shell command is longer than ${SHELL_MAX} characters` };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters (CR included) are refused
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(raw)) {
    return { ok: false, error: `shell ${quote(raw)} contains a NUL, carriage return or control character` };
  }
  if (ODD_SPACE.test(raw)) {
    // INVARIANT: fail closed — bash splits words only on space, tab and newline; a parser that
    // also splits on U+00A0 or skips U+200B would see other words than bash runs.
    return {
      ok: false,
      error: `shell ${quote(raw)} contains a non-ASCII space, invisible formatting character or broken surrogate`,
    };
  }
  if (/\\\n/.test(raw)) {
    return {
      ok: false,
      error: `shell ${quote(raw)} contains a line continuation (backslash-newline); send one line`,
    };
  }
  if (raw.trim() === '') return { ok: false, error: 'shell command is empty' };
  let root: TNode;
  const tree = parser.parse(raw);
  if (tree === null) return { ok: false, error: `shell ${quote(raw)} could not be parsed` };
  try {
    if (tree.rootNode.hasError) {
      // Found again during the walk for a precise position; this is the backstop.
      const a = new Analysis(raw);
      const e = a.visit(copyTree(tree.walk(), 0));
      return { ok: false, error: e ?? `shell ${quote(raw)} does not parse` };
    }
    root = copyTree(tree.walk(), 0);
  } catch (e) {
    if (e instanceof TooDeep || e instanceof RangeError)
      return { ok: false, error: 'shell command is nested too deeply' };
    return { ok: false, error: `shell ${quote(raw)} could not be analysed` };
  } finally {
    tree.delete();
  }
  const lost = lostEscape(raw, root);
  if (lost !== null) {
    return {
      ok: false,
      error: `shell ${quote(raw)} has an escaped space or tab the parser read as a separator, near ${quote(raw.slice(Math.max(0, lost - 10), lost + 10))}`,
    };
  }
  const a = new Analysis(raw);
  let err: string | null;
  try {
    err = a.visit(root);
  } catch {
    return { ok: false, error: 'shell command is nested too deeply' };
  }
  if (err !== null) return { ok: false, error: err };
  if (a.statements === 0) return { ok: false, error: `shell ${quote(raw)} holds no command` };
  return {
    ok: true,
    value: {
      commands: a.commands,
      programs: a.programs,
      pipes: a.pipes,
      redirects: a.redirects,
      redirectTargets: a.redirectTargets,
      heredocs: a.heredocs,
      substitution: a.substitution,
      chaining: a.chaining,
      background: a.background,
      dynamicProgram: a.dynamicProgram,
      dynamicArgs: a.dynamicArgs,
      assignments: a.assignments,
      assignedValues: a.assignedValues,
      subshell: a.subshell,
      arithmetic: a.arithmetic,
      tests: a.tests,
      functions: a.functions,
    },
  };
}

function facts(raw: Json): FactResult<ShellFacts> {
  if (typeof raw !== 'string')
    return { ok: false, error: `a shell command must be a string, got ${describeType(raw)}` };
  return parseShell(raw);
}

/** The `shell` canonicaliser. */
export const shellCanonicaliser: Canonicaliser<ShellCondition, ShellFacts> = {
  name: 'shell',
  description: 'Shell command facts from a bash parser.',
  fields: SHELL_FIELDS,
  defaultArgs: ['command', 'cmd', 'script', 'shell'],
  compile: compileShell,
  facts,
  match: matchShell,
  warnings: shellWarnings,
  toJson: (f) => ({
    commands: f.commands.map((c) => ({ program: c.program, args: [...c.args] })),
    programs: [...f.programs],
    pipes: f.pipes,
    redirects: [...f.redirects],
    redirectTargets: [...f.redirectTargets],
    heredocs: [...f.heredocs],
    substitution: f.substitution,
    chaining: f.chaining,
    background: f.background,
    dynamicProgram: f.dynamicProgram,
    dynamicArgs: f.dynamicArgs,
    assignments: [...f.assignments],
    assignedValues: [...f.assignedValues],
    subshell: f.subshell,
    arithmetic: f.arithmetic,
    tests: [...f.tests],
    functions: [...f.functions],
  }),
};
