/**
 * The walk over a libpg-query parse tree behind the `sql` facts: statement kinds, tables read and
 * written, and every function, type and operator a statement names. A table reference counts as a
 * write unless it sits in a position that can only read, so an unfamiliar construct errs towards
 * "write".
 */
import { BUILTIN_SAMPLE_METHODS, isUnvettedCatalogFunction } from './sql-builtins.js';
import { type QualifiedName, showName, showOperator } from './sql-names.js';

/** Deepest parse tree walked; deeper trees are refused rather than risking the stack. */
const MAX_DEPTH = 1000;

/** A parse-tree node body. */
export type Obj = { [k: string]: unknown };

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

/** No CTE names in scope. */
export const NO_CTES: ReadonlySet<string> = new Set();

function stringsOf(list: unknown): string[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const parts = list.map((x) => ((x as Obj)?.String as Obj | undefined)?.sval);
  return parts.every((p) => typeof p === 'string') ? (parts as string[]) : undefined;
}

/** Collects facts while visiting one parse tree (one Walk per SQL value). */
export class Walk {
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
    if (list === undefined || (Array.isArray(list) && list.length === 0)) return;
    const ps = stringsOf(list);
    if (ps === undefined) {
      // INVARIANT: fail closed — a name the parser gave in an unexpected shape matches nothing.
      into.set('\u0000?', { name: '\u0000?' });
      return;
    }
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
    if (list === undefined || (Array.isArray(list) && list.length === 0)) return;
    const ps = stringsOf(list) ?? [];
    // INVARIANT: fail closed — an operator name in an unexpected shape matches nothing.
    const n: QualifiedName = { name: ps[ps.length - 1] ?? '\u0000?' };
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

/** Thrown when the tree is deeper than MAX_DEPTH. */
export class DepthError extends Error {}

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
