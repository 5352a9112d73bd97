/**
 * The `sql` constraint, using the PostgreSQL parser itself (libpg-query, compiled to wasm).
 *
 *   when: { sql: { statements: [select], tables: [customers, tickets] } }
 *
 * The whole parse tree is walked generically, so subqueries, CTEs, joins, set operations, EXPLAIN,
 * PREPARE and DDL all contribute. A table reference counts as a write unless it sits in a position
 * that can only read (a SELECT, the FROM/USING of a DML statement, COPY ... TO), so an unfamiliar
 * construct errs towards "write". Text the parser rejects is an error (the caller denies).
 */
import { loadModule, parseSync, scanSync } from 'libpg-query';
import type { Json } from '../types.js';
import { ConditionReader, describeType, listForWhy, quote } from './condition.js';
import { integer, stringList } from './fields.js';
import {
  BUILTIN_SAMPLE_METHODS,
  isSafeFunction,
  isSafeOperator,
  isSafeType,
  isUnvettedCatalogFunction,
} from './sql-builtins.js';
import type {
  Canonicaliser,
  CompileResult,
  ConditionFields,
  ConditionWarning,
  FactResult,
  MatchResult,
} from './types.js';

/** Longest SQL text accepted. */
export const SQL_MAX = 100_000;
/** Deepest parse tree walked; deeper trees are refused rather than risking the stack. */
const MAX_DEPTH = 1000;

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

/** A qualified object name as the parser resolves it (identifiers already case-folded). */
export interface QualifiedName {
  catalog?: string;
  schema?: string;
  name: string;
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

// ---------------------------------------------------------------------------------------------------
// Names

function quoteIdent(part: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(part) ? part : `"${part.replace(/"/g, '""')}"`;
}

/** Renders a name so that distinct names never render alike (`"a.b"` vs `a.b`). */
export function showName(n: QualifiedName): string {
  const parts = [n.catalog, n.schema, n.name].filter((p): p is string => p !== undefined);
  return parts.map(quoteIdent).join('.');
}

/**
 * Parses a name written in a policy with PostgreSQL identifier rules: unquoted parts fold to lower
 * case, `"Quoted"` parts keep their case, up to three dot-separated parts.
 */
export function parseName(entry: string): { ok: true; value: QualifiedName } | { ok: false; error: string } {
  const parts: string[] = [];
  let i = 0;
  const bad = {
    ok: false as const,
    error: `${quote(entry)} is not a table name (\`table\`, \`schema.table\` or \`"Quoted"\`)`,
  };
  while (i <= entry.length) {
    if (entry[i] === '"') {
      let j = i + 1;
      let part = '';
      for (;;) {
        if (j >= entry.length) return bad;
        if (entry[j] === '"') {
          if (entry[j + 1] === '"') {
            part += '"';
            j += 2;
            continue;
          }
          break;
        }
        part += entry[j];
        j++;
      }
      if (part === '') return bad;
      parts.push(part);
      i = j + 1;
    } else {
      const m = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(entry.slice(i));
      if (m === null) return bad;
      // PostgreSQL folds only ASCII letters in unquoted identifiers (UTF-8 databases).
      parts.push(m[0].replace(/[A-Z]/g, (c) => c.toLowerCase()));
      i += m[0].length;
    }
    if (i === entry.length) break;
    if (entry[i] !== '.') return bad;
    i++;
  }
  if (parts.length === 0 || parts.length > 3) return bad;
  const name = parts[parts.length - 1] as string;
  if (parts.length === 1) return { ok: true, value: { name } };
  if (parts.length === 2) return { ok: true, value: { schema: parts[0] as string, name } };
  return { ok: true, value: { catalog: parts[0] as string, schema: parts[1] as string, name } };
}

/**
 * Does a referenced name satisfy a policy entry? An unqualified entry matches the unqualified name and
 * the same name in `public` (and, for functions, `pg_catalog`); a qualified entry matches only itself.
 */
export function nameMatches(
  entry: QualifiedName,
  ref: QualifiedName,
  implicitSchemas: readonly string[],
): boolean {
  if (entry.name !== ref.name) return false;
  if (entry.catalog !== undefined && entry.catalog !== ref.catalog) return false;
  if (entry.catalog === undefined && ref.catalog !== undefined) return false;
  if (entry.schema === undefined) return ref.schema === undefined || implicitSchemas.includes(ref.schema);
  return entry.schema === ref.schema;
}

// ---------------------------------------------------------------------------------------------------
// Walking the parse tree

type Obj = { [k: string]: unknown };

interface Ctx {
  /** Whether a table reference found here is written (true) or only read. */
  write: boolean;
  /** Inside a SELECT with a row-locking clause: every table read here is locked, i.e. written. */
  lock: boolean;
  /** CTE names visible here; an unqualified reference to one of them is not a table. */
  ctes: ReadonlySet<string>;
}

/** The context for parts that only read (or, under a row-locking clause, lock). */
function reading(ctx: Ctx, ctes: ReadonlySet<string>): Ctx {
  return { write: ctx.lock, lock: ctx.lock, ctes };
}

const NO_CTES: ReadonlySet<string> = new Set();

function stringsOf(list: unknown): string[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const parts = list.map((x) => ((x as Obj)?.String as Obj | undefined)?.sval);
  return parts.every((p) => typeof p === 'string') ? (parts as string[]) : undefined;
}

class Walk {
  readonly kinds = new Set<string>();
  readonly reads = new Map<string, QualifiedName>();
  readonly writes = new Map<string, QualifiedName>();
  readonly functions = new Map<string, QualifiedName>();
  readonly types = new Map<string, QualifiedName>();
  readonly operators = new Map<string, QualifiedName>();
  selectInto = false;
  modifyingCte = false;

  table(rv: Obj, ctx: Ctx): void {
    const relname = rv.relname;
    if (typeof relname !== 'string') return;
    const n: QualifiedName = { name: relname };
    if (typeof rv.schemaname === 'string') n.schema = rv.schemaname;
    if (typeof rv.catalogname === 'string') n.catalog = rv.catalogname;
    if (n.schema === undefined && n.catalog === undefined && ctx.ctes.has(relname)) return;
    (ctx.write ? this.writes : this.reads).set(showName(n), n);
  }

  nameFromList(list: unknown, into: Map<string, QualifiedName>): void {
    const ps = stringsOf(list);
    if (ps === undefined || ps.length === 0) return;
    // INVARIANT: fail closed — a name of more than three parts is kept whole, so it matches nothing.
    if (ps.length > 3) {
      const n = { name: ps.join('.') };
      into.set(showName(n), n);
      return;
    }
    const n: QualifiedName = { name: ps[ps.length - 1] as string };
    if (ps.length >= 2) n.schema = ps[ps.length - 2] as string;
    if (ps.length === 3) n.catalog = ps[0] as string;
    into.set(showName(n), n);
  }

  /** An operator name list (`["="]`, `["public", "==="]`). */
  operator(list: unknown): void {
    const ps = stringsOf(list);
    if (ps === undefined || ps.length === 0) return;
    const n: QualifiedName = { name: ps[ps.length - 1] as string };
    if (ps.length === 2) n.schema = ps[0] as string;
    if (ps.length > 2) n.schema = ps.slice(0, -1).join('.');
    this.operators.set(showOperator(n), n);
  }

  /** A field selected from a row (`x.f`, `(x).f`): a call of `f(x)` if `f` is an unvetted built-in. */
  attribute(field: unknown): void {
    const f = ((field as Obj)?.String as Obj | undefined)?.sval;
    if (typeof f === 'string' && isUnvettedCatalogFunction(f))
      this.functions.set(showName({ name: f }), { name: f });
  }

  /** Visits a WITH clause; returns the CTE names visible in the statement that owns it. */
  withClause(wc: unknown, ctx: Ctx, depth: number): ReadonlySet<string> {
    if (wc === null || typeof wc !== 'object') return ctx.ctes;
    const w = wc as Obj;
    const ctes = Array.isArray(w.ctes) ? w.ctes : [];
    const names = ctes
      .map((c) => ((c as Obj)?.CommonTableExpr as Obj | undefined)?.ctename)
      .filter((n): n is string => typeof n === 'string');
    const all = new Set([...ctx.ctes, ...names]);
    const visible = new Set(ctx.ctes);
    for (const c of ctes) {
      const cte = (c as Obj)?.CommonTableExpr as Obj | undefined;
      if (cte === undefined) {
        this.visit(c, reading(ctx, ctx.ctes), depth + 1);
        continue;
      }
      const q = cte.ctequery as Obj | undefined;
      if (q !== undefined && (q.InsertStmt || q.UpdateStmt || q.DeleteStmt || q.MergeStmt))
        this.modifyingCte = true;
      // A recursive WITH sees all its names; otherwise each CTE sees only the ones before it.
      this.visit(cte, reading(ctx, w.recursive === true ? all : visible), depth + 1);
      if (typeof cte.ctename === 'string') visible.add(cte.ctename);
    }
    return all;
  }

  select(s: Obj, ctx: Ctx, depth: number): void {
    // FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE lock rows: the tables are written (kind `lock`).
    // INVARIANT: fail closed — every table under the locking SELECT counts, not only those named by OF.
    const locking = Array.isArray(s.lockingClause) && s.lockingClause.length > 0;
    if (locking) this.kinds.add('lock');
    const lockCtx: Ctx = locking ? { ...ctx, lock: true } : ctx;
    const ctes = this.withClause(s.withClause, lockCtx, depth);
    const inner = reading(lockCtx, ctes);
    for (const [k, v] of Object.entries(s)) {
      // `OF` names aliases, not tables; the tables themselves are already counted.
      if (k === 'withClause' || k === 'lockingClause') continue;
      if (k === 'intoClause') {
        this.selectInto = true;
        this.kinds.add('create');
        // The INTO target is a new table, never a CTE.
        this.visit(v, { write: true, lock: false, ctes: NO_CTES }, depth + 1);
      } else if ((k === 'larg' || k === 'rarg') && v !== null && typeof v === 'object') {
        this.select(v as Obj, inner, depth + 1);
      } else this.visit(v, inner, depth + 1);
    }
  }

  /** INSERT/UPDATE/DELETE/MERGE: the target relation is written, everything else is read. */
  dml(kind: string, s: Obj, ctx: Ctx, depth: number): void {
    this.kinds.add(kind);
    const ctes = this.withClause(s.withClause, ctx, depth);
    for (const [k, v] of Object.entries(s)) {
      if (k === 'withClause') continue;
      // INVARIANT: a DML target is always a real table (PostgreSQL never resolves it to a CTE).
      if (k === 'relation' && v !== null && typeof v === 'object')
        this.table(v as Obj, { write: true, lock: false, ctes: NO_CTES });
      else this.visit(v, reading(ctx, ctes), depth + 1);
    }
  }

  node(type: string, body: Obj, ctx: Ctx, depth: number): void {
    switch (type) {
      case 'RangeVar':
        this.table(body, ctx);
        return;
      case 'SelectStmt':
        this.select(body, ctx, depth);
        return;
      case 'InsertStmt':
        this.dml('insert', body, ctx, depth);
        return;
      case 'UpdateStmt':
        this.dml('update', body, ctx, depth);
        return;
      case 'DeleteStmt':
        this.dml('delete', body, ctx, depth);
        return;
      case 'MergeStmt':
        this.dml('merge', body, ctx, depth);
        return;
      case 'CopyStmt': {
        this.kinds.add('copy');
        const rel = body.relation;
        if (rel !== null && typeof rel === 'object')
          this.table(rel as Obj, { write: body.is_from === true, lock: false, ctes: ctx.ctes });
        const { relation: _r, ...rest } = body;
        this.fields(rest, reading(ctx, ctx.ctes), depth);
        return;
      }
      case 'FuncCall': {
        this.nameFromList(body.funcname, this.functions);
        this.fields(body, ctx, depth);
        return;
      }
      case 'ColumnRef': {
        // `x.f` (and `s.x.f`) may be the call `f(x)`; a lone name is a column or a whole row.
        const fs = Array.isArray(body.fields) ? body.fields : [];
        if (fs.length >= 2) this.attribute(fs[fs.length - 1]);
        return;
      }
      case 'A_Indirection': {
        for (const i of Array.isArray(body.indirection) ? body.indirection : []) this.attribute(i);
        this.fields(body, ctx, depth);
        return;
      }
      case 'A_Expr': {
        // BETWEEN's name is the construct, not an operator (it expands to >= and <=).
        if (!String(body.kind).includes('BETWEEN')) this.operator(body.name);
        this.fields(body, ctx, depth);
        return;
      }
      case 'SubLink':
        this.operator(body.operName);
        this.fields(body, ctx, depth);
        return;
      case 'SortBy':
        this.operator(body.useOp);
        this.fields(body, ctx, depth);
        return;
      case 'RangeTableSample': {
        const m = stringsOf(body.method);
        const builtin = m !== undefined && m.length === 1 && BUILTIN_SAMPLE_METHODS.has(m[0] as string);
        if (!builtin) this.nameFromList(body.method, this.functions);
        this.fields(body, ctx, depth);
        return;
      }
      case 'TypeName':
        this.nameFromList(body.names, this.types);
        this.fields(body, ctx, depth);
        return;
      case 'DropStmt': {
        this.kinds.add('drop');
        if (DROP_RELATION_TYPES.has(String(body.removeType))) {
          for (const o of Array.isArray(body.objects) ? body.objects : []) {
            this.nameFromList(((o as Obj)?.List as Obj | undefined)?.items, this.writes);
          }
        }
        this.fields(body, ctx, depth);
        return;
      }
      case 'ExplainStmt':
      case 'PrepareStmt':
      case 'DeclareCursorStmt': {
        // The wrapped statement runs (EXPLAIN ANALYZE) or will run (EXECUTE, FETCH): it counts in full.
        this.kinds.add(stmtKind(type, body));
        const q = body.query as Obj | undefined;
        if (q?.SelectStmt !== undefined) this.kinds.add('select');
        this.fields(body, ctx, depth);
        return;
      }
      default:
        if (type.endsWith('Stmt')) this.kinds.add(stmtKind(type, body));
        this.fields(body, ctx, depth);
    }
  }

  fields(o: Obj, ctx: Ctx, depth: number): void {
    for (const v of Object.values(o)) this.visit(v, ctx, depth + 1);
  }

  visit(v: unknown, ctx: Ctx, depth: number): void {
    if (v === null || typeof v !== 'object') return;
    if (depth > MAX_DEPTH) throw new DepthError();
    if (Array.isArray(v)) {
      for (const x of v) this.visit(x, ctx, depth + 1);
      return;
    }
    const o = v as Obj;
    const keys = Object.keys(o);
    const k0 = keys[0];
    if (keys.length === 1 && k0 !== undefined && /^[A-Z]/.test(k0)) {
      const body = o[k0];
      if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
        this.node(k0, body as Obj, ctx, depth);
        return;
      }
    }
    // Unwrapped structs: a RangeVar (`relation`, `rel`, `view`), a FuncCall (`CallStmt.funccall`) or
    // a TypeName (`TypeCast.typeName`, `ColumnDef.typeName`).
    if (typeof o.relname === 'string') {
      this.table(o, ctx);
      return;
    }
    if (Array.isArray(o.funcname) && 'funcformat' in o) {
      this.node('FuncCall', o, ctx, depth);
      return;
    }
    // INVARIANT: fail closed — only TypeName has `names`; any object with it counts as a type.
    if (Array.isArray(o.names)) {
      this.node('TypeName', o, ctx, depth);
      return;
    }
    this.fields(o, ctx, depth);
  }
}

class DepthError extends Error {}

const DROP_RELATION_TYPES = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_FOREIGN_TABLE',
  'OBJECT_SEQUENCE',
  'OBJECT_INDEX',
]);

const TRANSACTION_KINDS: Record<string, string> = {
  TRANS_STMT_BEGIN: 'begin',
  TRANS_STMT_START: 'begin',
  TRANS_STMT_COMMIT: 'commit',
  TRANS_STMT_ROLLBACK: 'rollback',
  TRANS_STMT_SAVEPOINT: 'savepoint',
  TRANS_STMT_RELEASE: 'release',
  TRANS_STMT_ROLLBACK_TO: 'rollback',
  TRANS_STMT_PREPARE: 'prepare_transaction',
  TRANS_STMT_COMMIT_PREPARED: 'commit',
  TRANS_STMT_ROLLBACK_PREPARED: 'rollback',
};

const STMT_KINDS: Record<string, string> = {
  SelectStmt: 'select',
  InsertStmt: 'insert',
  UpdateStmt: 'update',
  DeleteStmt: 'delete',
  MergeStmt: 'merge',
  CopyStmt: 'copy',
  TruncateStmt: 'truncate',
  CallStmt: 'call',
  DoStmt: 'do',
  VariableSetStmt: 'set',
  VariableShowStmt: 'show',
  ExplainStmt: 'explain',
  LockStmt: 'lock',
  PrepareStmt: 'prepare',
  ExecuteStmt: 'execute',
  DeallocateStmt: 'deallocate',
  DeclareCursorStmt: 'declare',
  FetchStmt: 'fetch',
  ClosePortalStmt: 'close',
  ListenStmt: 'listen',
  UnlistenStmt: 'unlisten',
  NotifyStmt: 'notify',
  RefreshMatViewStmt: 'refresh',
  CommentStmt: 'comment',
  ReindexStmt: 'reindex',
  ClusterStmt: 'cluster',
  DiscardStmt: 'discard',
  LoadStmt: 'load',
  CheckPointStmt: 'checkpoint',
  ViewStmt: 'create',
  IndexStmt: 'create',
  RuleStmt: 'create',
  DefineStmt: 'create',
  CompositeTypeStmt: 'create',
  SecLabelStmt: 'alter',
  RenameStmt: 'alter',
  ReassignOwnedStmt: 'alter',
  DropOwnedStmt: 'drop',
  ImportForeignSchemaStmt: 'create',
  ConstraintsSetStmt: 'set',
};

/** Maps a parse-tree statement node to its lowercase kind; unknown statements are `other`. */
function stmtKind(type: string, body: Obj): string {
  if (type === 'TransactionStmt') return TRANSACTION_KINDS[String(body.kind)] ?? 'other';
  if (type === 'GrantStmt') return body.is_grant === true ? 'grant' : 'revoke';
  if (type === 'GrantRoleStmt') return body.is_grant === true ? 'grant' : 'revoke';
  if (type === 'VacuumStmt') return body.is_vacuumcmd === true ? 'vacuum' : 'analyze';
  const k = STMT_KINDS[type];
  if (k !== undefined) return k;
  if (type.startsWith('Create')) return 'create';
  if (type.startsWith('Drop')) return 'drop';
  if (type.startsWith('Alter')) return 'alter';
  return 'other';
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

/** Renders an operator: `=`, or `public.===` for `OPERATOR(public.===)`. */
export function showOperator(n: QualifiedName): string {
  return n.schema === undefined ? n.name : `${quoteIdent(n.schema)}.${n.name}`;
}

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
    return { ok: false, error: `sql could not be analysed: ${e instanceof Error ? e.message : String(e)}` };
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
const OPERATOR = /^(?:([A-Za-z_][A-Za-z0-9_$]*)\.)?([-+*/<>=~!@#%^&|`?]{1,63})$/;

/** Parses an operator written in a policy: `===` or `schema.===`. */
export function parseOperator(
  entry: string,
): { ok: true; value: QualifiedName } | { ok: false; error: string } {
  const m = OPERATOR.exec(entry);
  if (m === null)
    return { ok: false, error: `${quote(entry)} is not an operator (\`===\` or \`schema.===\`)` };
  const op = m[2] as string;
  return m[1] === undefined
    ? { ok: true, value: { name: op } }
    : { ok: true, value: { schema: m[1].toLowerCase(), name: op } };
}

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
