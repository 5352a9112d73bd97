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
import { loadModule, parseSync } from 'libpg-query';
import type { Json } from '../types.js';
import { ConditionReader, describeType, listForWhy, quote } from './condition.js';
import { integer, stringList } from './fields.js';
import type { Canonicaliser, CompileResult, ConditionFields, FactResult, MatchResult } from './types.js';

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
  /** Functions called, qualified like tables, sorted. */
  functions: string[];
}

/** A qualified object name as the parser resolves it (identifiers already case-folded). */
export interface QualifiedName {
  catalog?: string;
  schema?: string;
  name: string;
}

/** A compiled `sql` condition. */
export interface SqlCondition {
  statements?: string[];
  tables?: QualifiedName[];
  reads?: QualifiedName[];
  writes?: QualifiedName[];
  functions?: QualifiedName[];
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
  /** CTE names visible here; an unqualified reference to one of them is not a table. */
  ctes: ReadonlySet<string>;
}

class Walk {
  readonly kinds = new Set<string>();
  readonly reads = new Map<string, QualifiedName>();
  readonly writes = new Map<string, QualifiedName>();
  readonly functions = new Map<string, QualifiedName>();
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
    if (!Array.isArray(list)) return;
    const parts = list.map((x) => ((x as Obj)?.String as Obj | undefined)?.sval);
    if (parts.length === 0 || parts.length > 3 || !parts.every((p) => typeof p === 'string')) return;
    const ps = parts as string[];
    const n: QualifiedName = { name: ps[ps.length - 1] as string };
    if (ps.length >= 2) n.schema = ps[ps.length - 2] as string;
    if (ps.length === 3) n.catalog = ps[0] as string;
    into.set(showName(n), n);
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
        this.visit(c, { write: false, ctes: ctx.ctes }, depth + 1);
        continue;
      }
      const q = cte.ctequery as Obj | undefined;
      if (q !== undefined && (q.InsertStmt || q.UpdateStmt || q.DeleteStmt || q.MergeStmt))
        this.modifyingCte = true;
      // A recursive WITH sees all its names; otherwise each CTE sees only the ones before it.
      this.visit(cte, { write: false, ctes: w.recursive === true ? all : visible }, depth + 1);
      if (typeof cte.ctename === 'string') visible.add(cte.ctename);
    }
    return all;
  }

  select(s: Obj, ctx: Ctx, depth: number): void {
    const ctes = this.withClause(s.withClause, ctx, depth);
    const inner: Ctx = { write: false, ctes };
    for (const [k, v] of Object.entries(s)) {
      if (k === 'withClause') continue;
      if (k === 'intoClause') {
        this.selectInto = true;
        this.kinds.add('create');
        // The INTO target is a new table, never a CTE.
        this.visit(v, { write: true, ctes: new Set() }, depth + 1);
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
        this.table(v as Obj, { write: true, ctes: new Set() });
      else this.visit(v, { write: false, ctes }, depth + 1);
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
          this.table(rel as Obj, { write: body.is_from === true, ctes: ctx.ctes });
        const { relation: _r, ...rest } = body;
        this.fields(rest, { write: false, ctes: ctx.ctes }, depth);
        return;
      }
      case 'FuncCall': {
        this.nameFromList(body.funcname, this.functions);
        this.fields(body, ctx, depth);
        return;
      }
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
    // Unwrapped structs: a RangeVar (`relation`, `rel`, `view`) or a FuncCall (`CallStmt.funccall`).
    if (typeof o.relname === 'string') {
      this.table(o, ctx);
      return;
    }
    if (Array.isArray(o.funcname) && 'funcformat' in o) {
      this.node('FuncCall', o, ctx, depth);
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
}

const parsedNames = new WeakMap<SqlFacts, ParsedSql>();

/** Parses SQL text with the PostgreSQL parser and extracts facts. Never throws. */
export function parseSql(raw: string): FactResult<SqlFacts> {
  // INVARIANT: fail closed — before the parser is loaded every value is an error, never an allow.
  if (!ready) return { ok: false, error: 'sql parser not initialised' };
  if (raw.trim() === '') return { ok: false, error: 'sql is empty' };
  if (raw.length > SQL_MAX) return { ok: false, error: `sql is longer than ${SQL_MAX} characters` };
  if (raw.includes('\u0000')) return { ok: false, error: 'sql contains a NUL character' };
  let tree: { stmts?: unknown[] };
  try {
    tree = parseSync(raw) as { stmts?: unknown[] };
  } catch (e) {
    const details = (e as { sqlDetails?: { cursorPosition?: number } }).sqlDetails;
    const at = typeof details?.cursorPosition === 'number' ? ` at position ${details.cursorPosition}` : '';
    const msg = e instanceof Error ? e.message : 'unknown error';
    return { ok: false, error: `sql ${quote(raw)} does not parse: ${msg}${at}` };
  }
  const stmts = Array.isArray(tree.stmts) ? tree.stmts : [];
  if (stmts.length === 0) return { ok: false, error: `sql ${quote(raw)} holds no statement` };
  const w = new Walk();
  try {
    for (const s of stmts) {
      const stmt = (s as Obj)?.stmt as Obj | undefined;
      if (stmt === undefined) return { ok: false, error: `sql ${quote(raw)} has an empty statement` };
      if (stmt.SelectStmt !== undefined) w.kinds.add('select');
      w.visit(stmt, { write: true, ctes: new Set() }, 0);
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
  };
  parsedNames.set(facts, {
    facts,
    reads: [...w.reads.values()],
    writes: [...w.writes.values()],
    functions: [...w.functions.values()],
  });
  return { ok: true, value: facts };
}

/** Structured names behind a facts value (re-parsed from the rendered names if it was rebuilt). */
function namesOf(f: SqlFacts): ParsedSql {
  const cached = parsedNames.get(f);
  if (cached !== undefined) return cached;
  const parse = (xs: string[]) =>
    xs.map((x) => {
      const r = parseName(x);
      // A rendered name always re-parses; a non-name can never match, so keep it as an impossible name.
      return r.ok ? r.value : { name: `\u0000${x}` };
    });
  return { facts: f, reads: parse(f.reads), writes: parse(f.writes), functions: parse(f.functions) };
}

const STATEMENT_KIND = /^[a-z_]+$/;

/** The fields of a `sql` condition (the one definition: schema, loader and docs test read it). */
const FIELDS: ConditionFields = {
  statements: stringList('Allowed statement kinds: select, insert, update, delete, …', { allowList: true }),
  tables: stringList('Every table read or written must be one of these.', { allowList: true }),
  reads: stringList('Every table read must be one of these.', { allowList: true }),
  writes: stringList('Every table written must be one of these (`[]`: read-only).', { allowList: true }),
  functions: stringList('Every function called must be one of these.', { allowList: true }),
  max_statements: integer('Most statements in one value (default 1).', 1, 1000),
};

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
  const functions = r.strings('functions', parseName);
  const maxStatements = r.int('max_statements', 1, 1000) ?? 1;
  if (r.errors.length > 0) return { ok: false, errors: r.errors };
  const value: SqlCondition = { maxStatements };
  if (statements !== undefined) value.statements = statements;
  if (tables !== undefined) value.tables = tables;
  if (reads !== undefined) value.reads = reads;
  if (writes !== undefined) value.writes = writes;
  if (functions !== undefined) value.functions = functions;
  return { ok: true, value };
}

function facts(raw: Json): FactResult<SqlFacts> {
  if (typeof raw !== 'string') return { ok: false, error: `sql must be a string, got ${describeType(raw)}` };
  return parseSql(raw);
}

const TABLE_SCHEMAS = ['public'];
const FUNCTION_SCHEMAS = ['public', 'pg_catalog'];

function outside(refs: QualifiedName[], allowed: QualifiedName[], schemas: readonly string[]): string[] {
  return refs.filter((r) => !allowed.some((a) => nameMatches(a, r, schemas))).map(showName);
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
    if (bad.length > 0) {
      return {
        ok: false,
        why: `sql statement kind ${listForWhy(bad)} not allowed; allowed: ${listForWhy(allowed)}`,
      };
    }
  }
  const n = namesOf(f);
  const checks: [string, QualifiedName[], QualifiedName[] | undefined, readonly string[]][] = [
    ['table', [...n.reads, ...n.writes], c.tables, TABLE_SCHEMAS],
    ['read of table', n.reads, c.reads, TABLE_SCHEMAS],
    ['write to table', n.writes, c.writes, TABLE_SCHEMAS],
    ['function', n.functions, c.functions, FUNCTION_SCHEMAS],
  ];
  for (const [what, refs, allowed, schemas] of checks) {
    if (allowed === undefined) continue;
    const bad = [...new Set(outside(refs, allowed, schemas))];
    if (bad.length > 0) {
      return {
        ok: false,
        why: `sql ${what} ${listForWhy(bad)} not allowed; allowed: ${listForWhy(allowed.map(showName))}`,
      };
    }
  }
  return { ok: true };
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
  toJson: (f) => ({
    statements: [...f.statements],
    reads: [...f.reads],
    writes: [...f.writes],
    tables: [...f.tables],
    count: f.count,
    selectInto: f.selectInto,
    modifyingCte: f.modifyingCte,
    functions: [...f.functions],
  }),
};
