/**
 * What the `sql` constraint treats as built-in and side-effect free: the vetted pg_catalog functions,
 * operators and types of src/facts/sql-catalog.ts (generated from a real server by
 * scripts/sql-catalog.ts), and how names written in a statement resolve to them.
 *
 * PostgreSQL searches `pg_catalog` first for functions, operators and types unless `search_path`
 * names it later, and an allowed statement can never change `search_path`; so an unqualified `lower`
 * and `pg_catalog.lower` are both the built-in. Any other qualification (`public.lower`) is not.
 */
import { OTHER_CATALOG_FUNCTIONS, SAFE_FUNCTIONS, SAFE_OPERATORS, SAFE_TYPES } from './sql-catalog.js';

const SAFE_FUNCTION_SET: ReadonlySet<string> = new Set(SAFE_FUNCTIONS);
const OTHER_FUNCTION_SET: ReadonlySet<string> = new Set(OTHER_CATALOG_FUNCTIONS);
const SAFE_OPERATOR_SET: ReadonlySet<string> = new Set(SAFE_OPERATORS);
const SAFE_TYPE_SET: ReadonlySet<string> = new Set(SAFE_TYPES);

/** TABLESAMPLE methods built into PostgreSQL; any other method is an extension's handler function. */
export const BUILTIN_SAMPLE_METHODS: ReadonlySet<string> = new Set(['system', 'bernoulli']);

/** A name as written: unqualified, or `pg_catalog.` only, resolves to the built-in of that name. */
function builtinName(n: { catalog?: string; schema?: string; name: string }): string | undefined {
  if (n.catalog !== undefined) return undefined;
  if (n.schema !== undefined && n.schema !== 'pg_catalog') return undefined;
  return n.name;
}

/** Is this call one of the vetted side-effect-free built-in functions? */
export function isSafeFunction(n: { catalog?: string; schema?: string; name: string }): boolean {
  const b = builtinName(n);
  return b !== undefined && SAFE_FUNCTION_SET.has(b);
}

/** Is this operator one of the vetted built-in operator symbols? */
export function isSafeOperator(n: { catalog?: string; schema?: string; name: string }): boolean {
  const b = builtinName(n);
  return b !== undefined && SAFE_OPERATOR_SET.has(b);
}

/** Is this type a built-in base, range or multirange type? */
export function isSafeType(n: { catalog?: string; schema?: string; name: string }): boolean {
  const b = builtinName(n);
  return b !== undefined && SAFE_TYPE_SET.has(b);
}

/**
 * Could `x.name` call a built-in that is not vetted? PostgreSQL reads `x.name` as `name(x)` when the
 * row `x` has no column `name` (attribute notation), so a field named like such a function counts as
 * a call of it.
 */
export function isUnvettedCatalogFunction(name: string): boolean {
  return OTHER_FUNCTION_SET.has(name);
}
