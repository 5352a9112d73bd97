/**
 * The `sql` constraint, using the PostgreSQL parser itself (libpg-query, compiled to wasm).
 *
 *   when: { sql: { statements: [select], tables: [customers, tickets] } }
 *
 * The whole parse tree is walked generically (sql-walk.ts), so subqueries, CTEs, joins, set
 * operations, EXPLAIN, PREPARE and DDL all contribute. A rule that allows only reads allows only the
 * vetted side-effect-free built-in functions (sql-builtins.ts) unless it lists others. Text the parser
 * rejects, or that a server could split differently, is an error (the caller denies).
 */
import { loadModule, parseSync, scanSync } from 'libpg-query';
import { messageOf } from '../errors.js';
import type { Json } from '../types.js';
import { ConditionReader, describeType, listForWhy, quote } from './condition.js';
import { integer, stringList } from './fields.js';
import { isSafeFunction, isSafeOperator, isSafeType } from './sql-builtins.js';
import {
  nameMatches,
  parseName,
  parseOperator,
  type QualifiedName,
  showName,
  showOperator,
} from './sql-names.js';
import { DepthError, NO_CTES, type Obj, Walk } from './sql-walk.js';
import type {
  Canonicaliser,
  CompileResult,
  ConditionFields,
  ConditionWarning,
  FactResult,
  MatchResult,
} from './types.js';

export type { QualifiedName } from './sql-names.js';
export { nameMatches, parseName, parseOperator, showName, showOperator } from './sql-names.js';

/** Longest SQL text accepted. */
export const SQL_MAX = 100_000;

/** Facts about one SQL argument. */
export interface SqlFacts {
  /** Statement kinds present (see docs/constraints.md), sorted. */
  statements: string[];
  /** Tables read, as qualified names (`customers`, `crm.customers`, `"Orders"`), sorted. */
  reads: string[];
  /** Tables written (inserted, updated, deleted, created, altered, dropped, ...), sorted. */
  writes: string[];
  /** Every table referenced, read or written, sorted. */
  tables: string[];
  /** Number of top-level statements. */
  count: number;
  /** A SELECT ... INTO creates a table. */
  selectInto: boolean;
  /** A WITH clause holds INSERT/UPDATE/DELETE/MERGE. */
  modifyingCte: boolean;
  /**
   * Functions called, qualified like tables, sorted: calls in every position, TABLESAMPLE methods other
   * than `system`/`bernoulli`, and `x.f` field names that are unvetted built-in functions (attribute
   * notation: PostgreSQL reads `x.f` as `f(x)` when `x` has no column `f`).
   */
  functions: string[];
  /** Types named by casts, typed literals and column definition lists, sorted. */
  types: string[];
  /** Operators used (`=`, `~~`, `public.===` for `OPERATOR(public.===)`), sorted. */
  operators: string[];
}

/**
 * Which functions a condition lets a statement call: `any` (not checked), or the listed names plus,
 * when `builtins`, the vetted side-effect-free built-ins. Types and operators are checked whenever
 * functions are: the built-in ones plus those listed.
 */
export type FunctionRule =
  | { kind: 'any'; explicit: boolean }
  | { kind: 'list'; builtins: boolean; names: QualifiedName[] };

/** A compiled `sql` condition. */
export interface SqlCondition {
  statements?: string[];
  tables?: QualifiedName[];
  reads?: QualifiedName[];
  writes?: QualifiedName[];
  functions: FunctionRule;
  types: QualifiedName[];
  operators: string[];
  /** Every allowed statement kind only reads: nothing may be written. */
  readOnly: boolean;
  maxStatements: number;
}

let ready = false;
let loading: Promise<void> | null = null;

/** Loads the PostgreSQL parser once. Idempotent; a failed load can be retried. */
export function initSql(): Promise<void> {
  if (ready) return Promise.resolve();
  loading ??= loadModule().then(
    () => {
      ready = true;
    },
    (e: unknown) => {
      loading = null;
      throw e;
    },
  );
  return loading;
}

/** True once the PostgreSQL parser is loaded. */
export function sqlReady(): boolean {
  return ready;
}

function sorted(m: Map<string, QualifiedName>): string[] {
  return [...m.keys()].sort();
}

interface ParsedSql {
  facts: SqlFacts;
  reads: QualifiedName[];
  writes: QualifiedName[];
  functions: QualifiedName[];
  types: QualifiedName[];
  operators: QualifiedName[];
}

const parsedNames = new WeakMap<SqlFacts, ParsedSql>();

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A plain `'...'` string literal holding a backslash, or undefined. With `standard_conforming_strings`
 * off the server reads a backslash there as an escape, so `'a\' ; DELETE ...; --'` is one literal to
 * this parser (which runs with it on) and two statements to such a server. E'' strings, dollar quotes,
 * identifiers and comments lex alike under both settings, so up to the first such literal the two
 * readings agree; without one they agree everywhere.
 */
function backslashLiteral(raw: string): string | undefined {
  if (!raw.includes('\\')) return undefined;
  for (const t of scanSync(raw).tokens) {
    if (t.tokenName === 'SCONST' && t.text.startsWith("'") && t.text.includes('\\')) return t.text;
  }
  return undefined;
}

/** Parses SQL text with the PostgreSQL parser and extracts facts. Never throws. */
export function parseSql(raw: string): FactResult<SqlFacts> {
  // INVARIANT: fail closed — before the parser is loaded every value is an error, never an allow.
  if (!ready) return { ok: false, error: 'sql parser not initialised' };
  if (raw.trim() === '') return { ok: false, error: 'sql is empty' };
  if (raw.length > SQL_MAX) return { ok: false, error: `sql is longer than ${SQL_MAX} characters` };
  if (raw.includes('\u0000')) return { ok: false, error: 'sql contains a NUL character' };
  // A driver encodes a lone surrogate as U+FFFD (or refuses it); the parser would see other bytes.
  if (LONE_SURROGATE.test(raw))
    return { ok: false, error: 'sql is not well-formed Unicode (lone surrogate)' };
  let tree: { stmts?: unknown[] };
  let literal: string | undefined;
  try {
    tree = parseSync(raw) as { stmts?: unknown[] };
    literal = backslashLiteral(raw);
  } catch (e) {
    const details = (e as { sqlDetails?: { cursorPosition?: number } }).sqlDetails;
    const at = typeof details?.cursorPosition === 'number' ? ` at position ${details.cursorPosition}` : '';
    const msg = e instanceof Error ? e.message : 'unknown error';
    return { ok: false, error: `sql ${quote(raw)} does not parse: ${msg}${at}` };
  }
  // INVARIANT: no parser differential — text the server may split differently is refused.
  if (literal !== undefined) {
    return {
      ok: false,
      error: `sql string literal ${quote(literal)} holds a backslash, which a server with standard_conforming_strings off reads as an escape; write E'...' or a dollar-quoted string`,
    };
  }
  const stmts = Array.isArray(tree.stmts) ? tree.stmts : [];
  if (stmts.length === 0) return { ok: false, error: `sql ${quote(raw)} holds no statement` };
  const w = new Walk();
  try {
    for (const s of stmts) {
      const stmt = (s as Obj)?.stmt as Obj | undefined;
      if (stmt === undefined) return { ok: false, error: `sql ${quote(raw)} has an empty statement` };
      if (stmt.SelectStmt !== undefined) w.kinds.add('select');
      w.visit(stmt, { write: true, lock: false, ctes: NO_CTES }, 0);
    }
  } catch (e) {
    if (e instanceof DepthError || e instanceof RangeError) {
      return { ok: false, error: 'sql is nested too deeply to analyse' };
    }
    return { ok: false, error: `sql could not be analysed: ${messageOf(e)}` };
  }
  const all = new Map([...w.reads, ...w.writes]);
  const facts: SqlFacts = {
    statements: [...w.kinds].sort(),
    reads: sorted(w.reads),
    writes: sorted(w.writes),
    tables: sorted(all),
    count: stmts.length,
    selectInto: w.selectInto,
    modifyingCte: w.modifyingCte,
    functions: sorted(w.functions),
    types: sorted(w.types),
    operators: sorted(w.operators),
  };
  parsedNames.set(facts, {
    facts,
    reads: [...w.reads.values()],
    writes: [...w.writes.values()],
    functions: [...w.functions.values()],
    types: [...w.types.values()],
    operators: [...w.operators.values()],
  });
  return { ok: true, value: facts };
}

/** Structured names behind a facts value (re-parsed from the rendered names if it was rebuilt). */
function namesOf(f: SqlFacts): ParsedSql {
  const cached = parsedNames.get(f);
  if (cached !== undefined) return cached;
  const parse = (xs: readonly string[] | undefined) =>
    (xs ?? []).map((x) => {
      const r = parseName(x);
      // A rendered name always re-parses; a non-name can never match, so keep it as an impossible name.
      return r.ok ? r.value : { name: `\u0000${x}` };
    });
  const ops = (f.operators ?? []).map((o): QualifiedName => {
    const r = parseOperator(o);
    return r.ok ? r.value : { name: `\u0000${o}` };
  });
  return {
    facts: f,
    reads: parse(f.reads),
    writes: parse(f.writes),
    functions: parse(f.functions),
    types: parse(f.types),
    operators: ops,
  };
}

const STATEMENT_KIND = /^[a-z_]+$/;
/** Statement kinds that only read: a condition allowing only these gets the built-in function list. */
const READ_ONLY_KINDS: ReadonlySet<string> = new Set(['select', 'show', 'explain']);
/** In `functions:`, this entry stands for the vetted built-in functions (`"default"` is a name). */
const DEFAULT_ENTRY = 'default';

/** The fields of a `sql` condition (the one definition: schema, loader and docs test read it). */
const FIELDS: ConditionFields = {
  statements: stringList('Allowed statement kinds: select, insert, update, delete, …', { allowList: true }),
  tables: stringList('Every table read or written must be one of these.', { allowList: true }),
  reads: stringList('Every table read must be one of these.', { allowList: true }),
  writes: stringList('Every table written must be one of these (`[]`: read-only).', { allowList: true }),
  functions: {
    schema: {
      oneOf: [
        { type: 'array', items: { type: 'string', minLength: 1 } },
        { const: 'any', description: 'Do not check functions, types or operators (warned).' },
      ],
    },
    description:
      'Functions a statement may call: a list (`default` = the vetted side-effect-free built-ins), or `any`. Without it, a read-only rule allows the vetted built-ins only.',
    allowList: true,
  },
  types: stringList('Types casts may name besides the built-in ones (checked with functions).', {
    allowList: true,
  }),
  operators: stringList('Operators allowed besides the built-in ones (checked with functions).', {
    allowList: true,
  }),
  max_statements: integer('Most statements in one value (default 1).', 1, 1000),
};

function functionRule(r: ConditionReader, readOnly: boolean): FunctionRule {
  const v = r.obj.functions;
  if (v === undefined)
    return readOnly ? { kind: 'list', builtins: true, names: [] } : { kind: 'any', explicit: false };
  if (v === 'any') return { kind: 'any', explicit: true };
  if (typeof v === 'string') {
    r.error('functions', `\`functions\` must be a list of names or \`any\`, got ${quote(v)}`);
    return { kind: 'list', builtins: false, names: [] };
  }
  let builtins = false;
  const names =
    r.strings('functions', (s) => {
      if (s !== DEFAULT_ENTRY) return parseName(s);
      builtins = true;
      return { ok: true, value: null };
    }) ?? [];
  return { kind: 'list', builtins, names: names.filter((n): n is QualifiedName => n !== null) };
}

function compile(condition: unknown): CompileResult<SqlCondition> {
  const r = new ConditionReader(condition, 'sql', FIELDS);
  const statements = r.strings('statements', (s) => {
    const k = s.toLowerCase();
    return STATEMENT_KIND.test(k)
      ? { ok: true, value: k }
      : { ok: false, error: `${quote(s)} is not a statement kind` };
  });
  const tables = r.strings('tables', parseName);
  const reads = r.strings('reads', parseName);
  const writes = r.strings('writes', parseName);
  const readOnly = statements?.every((k) => READ_ONLY_KINDS.has(k)) === true;
  const functions = functionRule(r, readOnly);
  const types = r.strings('types', parseName) ?? [];
  const operators = (r.strings('operators', parseOperator) ?? []).map(showOperator);
  const maxStatements = r.int('max_statements', 1, 1000) ?? 1;
  if (r.errors.length > 0) return { ok: false, errors: r.errors };
  const value: SqlCondition = { functions, types, operators, readOnly, maxStatements };
  if (statements !== undefined) value.statements = statements;
  if (tables !== undefined) value.tables = tables;
  if (reads !== undefined) value.reads = reads;
  if (writes !== undefined) value.writes = writes;
  return { ok: true, value };
}

function facts(raw: Json): FactResult<SqlFacts> {
  if (typeof raw !== 'string') return { ok: false, error: `sql must be a string, got ${describeType(raw)}` };
  return parseSql(raw);
}

/**
 * Unqualified table entries also cover `public`: the default search_path is `"$user", public` (with
 * `pg_temp` implicitly first for tables), which an allowed statement cannot change.
 */
const TABLE_SCHEMAS = ['public'];
const FUNCTION_SCHEMAS = ['public', 'pg_catalog'];
const BUILTINS_TEXT = 'the vetted built-in functions';

function outside(refs: QualifiedName[], allowed: QualifiedName[], schemas: readonly string[]): string[] {
  return refs.filter((r) => !allowed.some((a) => nameMatches(a, r, schemas))).map(showName);
}

function refusal(what: string, bad: string[], allowed: string[]): MatchResult {
  return {
    ok: false,
    why: `sql ${what} ${listForWhy([...new Set(bad)])} not allowed; allowed: ${listForWhy(allowed)}`,
  };
}

/** Functions, types and operators: checked unless the rule says `functions: any`. */
function matchCalls(c: SqlCondition, n: ParsedSql): MatchResult {
  const rule = c.functions;
  if (rule.kind === 'any') return { ok: true };
  const badFns = n.functions
    .filter((f) => !(rule.builtins && isSafeFunction(f)))
    .filter((f) => !rule.names.some((a) => nameMatches(a, f, FUNCTION_SCHEMAS)))
    .map(showName);
  if (badFns.length > 0) {
    const allowed = [...(rule.builtins ? [BUILTINS_TEXT] : []), ...rule.names.map(showName)];
    return refusal('function', badFns, allowed);
  }
  const badTypes = n.types
    .filter((t) => !isSafeType(t) && !c.types.some((a) => nameMatches(a, t, FUNCTION_SCHEMAS)))
    .map(showName);
  if (badTypes.length > 0) return refusal('type', badTypes, ['built-in types', ...c.types.map(showName)]);
  const badOps = n.operators
    .filter((o) => !isSafeOperator(o) && !c.operators.includes(showOperator(o)))
    .map(showOperator);
  if (badOps.length > 0) return refusal('operator', badOps, ['built-in operators', ...c.operators]);
  return { ok: true };
}

function match(c: SqlCondition, f: SqlFacts): MatchResult {
  if (f.count > c.maxStatements) {
    return {
      ok: false,
      why: `sql holds ${f.count} statements; at most ${c.maxStatements} allowed (send one statement per call)`,
    };
  }
  if (c.statements !== undefined) {
    const allowed = c.statements;
    const bad = f.statements.filter((k) => !allowed.includes(k));
    if (bad.length > 0) return refusal('statement kind', bad, allowed);
  }
  // INVARIANT: a rule that allows only reads never lets a write through, whatever made it one.
  if (c.readOnly && f.writes.length > 0) {
    return { ok: false, why: `sql writes ${listForWhy(f.writes)}; the rule allows only reads` };
  }
  const n = namesOf(f);
  const checks: [string, QualifiedName[], QualifiedName[] | undefined, readonly string[]][] = [
    ['table', [...n.reads, ...n.writes], c.tables, TABLE_SCHEMAS],
    ['read of table', n.reads, c.reads, TABLE_SCHEMAS],
    ['write to table', n.writes, c.writes, TABLE_SCHEMAS],
  ];
  for (const [what, refs, allowed, schemas] of checks) {
    if (allowed === undefined) continue;
    const bad = outside(refs, allowed, schemas);
    if (bad.length > 0) return refusal(what, bad, allowed.map(showName));
  }
  return matchCalls(c, n);
}

/** Warnings for an allow rule: the defaults that still let a statement do more than it seems. */
function warnings(c: SqlCondition): ConditionWarning[] {
  const out: ConditionWarning[] = [];
  if (c.functions.kind === 'any' && c.functions.explicit) {
    out.push({
      field: 'functions',
      code: 'sql_functions_any',
      message:
        '`functions: any` lets a statement call any function (volatile ones that write, pg_read_file, dblink, set_config, ...), and cast to any type',
      hint: 'list what is needed instead: `functions: [default, my_function]`',
    });
  } else if (c.functions.kind === 'any') {
    out.push({
      field: '',
      code: 'sql_functions_unchecked',
      message:
        'functions are not checked: `statements` allows more than reads and `functions` is not given, so any function can be called',
      hint: 'add `functions: [default]` (the vetted built-ins) plus the functions the statements need',
    });
  }
  if (c.statements === undefined) {
    out.push({
      field: '',
      code: 'sql_statements_any',
      message: 'no `statements`: every statement kind is allowed, DDL and `set` included',
      hint: 'add `statements: [select]` (or the kinds needed)',
    });
  } else if (c.statements.includes('set')) {
    out.push({
      field: 'statements',
      code: 'sql_set_allowed',
      message:
        '`set` lets a statement change search_path, the role and other settings: unqualified names may then resolve to other tables and functions',
      hint: 'qualify table names (`public.customers`) or keep `set` out of `statements`',
    });
  }
  return out;
}

/** The `sql` canonicaliser. */
export const sqlCanonicaliser: Canonicaliser<SqlCondition, SqlFacts> = {
  name: 'sql',
  description: 'SQL facts from the PostgreSQL parser.',
  fields: FIELDS,
  defaultArgs: ['sql', 'query', 'statement'],
  compile,
  facts,
  match,
  warnings,
  toJson: (f) => ({
    statements: [...f.statements],
    reads: [...f.reads],
    writes: [...f.writes],
    tables: [...f.tables],
    count: f.count,
    selectInto: f.selectInto,
    modifyingCte: f.modifyingCte,
    functions: [...f.functions],
    types: [...f.types],
    operators: [...f.operators],
  }),
};
