/**
 * Derives the `sql` constraint's built-in lists (src/facts/sql-catalog.ts) from a real PostgreSQL
 * server's catalog, applying the hand-vetted rules below, and writes the file:
 *
 *   npx tsx scripts/sql-catalog.ts            # server from EXECLAYER_TEST_PG or 127.0.0.1:5432
 *
 * A function name is listed when every overload of it in `pg_catalog` is immutable or stable (or the
 * name is in JUSTIFIED_VOLATILE), at least one overload is callable from SQL (no `internal`,
 * `cstring` or handler types), and no EXCLUDED rule names it. test/sql-postgres.test.ts re-checks
 * every listed name against the server under CI.
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import pg from 'pg';

/** Volatile functions listed anyway: volatile only because each call gives a new value. */
export const JUSTIFIED_VOLATILE: Readonly<Record<string, string>> = {
  random: 'a new pseudo-random number per call; no state outside the session',
  clock_timestamp: 'the current time; changes during a statement',
  timeofday: 'the current time as text',
  gen_random_uuid: 'a new random UUID per call',
};

/** `pg_` functions that are listed although the `pg_` prefix is excluded. */
export const PG_PREFIX_ALLOWED: readonly string[] = [
  'pg_typeof',
  'pg_column_size',
  'pg_size_pretty',
  'pg_size_bytes',
  'pg_collation_for',
  'pg_client_encoding',
];

/** Hand-vetted exclusions of immutable/stable functions: a rule (prefix, suffix or name) and why. */
export const EXCLUDED: readonly { match: (name: string) => boolean; rule: string; why: string }[] = [
  {
    match: (n) => n.startsWith('pg_') && !PG_PREFIX_ALLOWED.includes(n),
    rule: 'pg_*',
    why: 'administration, statistics, other sessions’ queries, catalog introspection, WAL, replication, files',
  },
  {
    match: (n) => /_to_xml(schema|_and_xmlschema)?$/.test(n),
    rule: '*_to_xml*',
    why: 'table_to_xml, schema_to_xml, database_to_xml read whole tables by name, bypassing `tables:`',
  },
  {
    match: (n) => n === 'txid_current' || n === 'txid_current_if_assigned',
    rule: 'txid_current',
    why: 'assigns a transaction id: the transaction becomes read-write',
  },
  {
    match: (n) => n === 'binary_upgrade' || n.startsWith('binary_upgrade_'),
    rule: 'binary_upgrade_*',
    why: 'pg_upgrade internals',
  },
];

const UNCALLABLE_TYPES = [
  'internal',
  'cstring',
  'language_handler',
  'fdw_handler',
  'table_am_handler',
  'index_am_handler',
  'tsm_handler',
  'trigger',
  'event_trigger',
];

/** One row per pg_catalog function name: whether any overload is volatile, whether one is callable. */
export const FUNCTION_QUERY = `
  SELECT p.proname AS name,
         bool_or(p.provolatile = 'v') AS volatile,
         bool_or(NOT (p.prorettype::regtype::text = ANY ($1)
                      OR EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) a(t)
                                 WHERE a.t::regtype::text = ANY ($1)))) AS callable
    FROM pg_proc p
   WHERE p.pronamespace = 'pg_catalog'::regnamespace
   GROUP BY p.proname
   ORDER BY p.proname`;

export interface CatalogLists {
  server: string;
  safeFunctions: string[];
  otherFunctions: string[];
  operators: string[];
  types: string[];
}

/** Why a function name is not listed, or null when it is. */
export function exclusion(row: { name: string; volatile: boolean; callable: boolean }): string | null {
  if (!row.callable) return 'not callable from SQL (internal, cstring or handler types)';
  if (row.volatile && JUSTIFIED_VOLATILE[row.name] === undefined) return 'volatile';
  const rule = EXCLUDED.find((e) => e.match(row.name));
  return rule === undefined ? null : `${rule.rule}: ${rule.why}`;
}

/** Reads the lists from a server. */
export async function readCatalog(client: pg.Client): Promise<CatalogLists> {
  const server =
    (await client.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v.split(' on ')[0] ?? '?';
  const fns = await client.query<{ name: string; volatile: boolean; callable: boolean }>(FUNCTION_QUERY, [
    UNCALLABLE_TYPES,
  ]);
  const safe = fns.rows.filter((r) => exclusion(r) === null).map((r) => r.name);
  const safeSet = new Set(safe);
  // Operator symbols every built-in implementation of which is a non-volatile pg_catalog function.
  const ops = await client.query<{ name: string; ok: boolean }>(
    `SELECT o.oprname AS name,
            p.pronamespace = 'pg_catalog'::regnamespace AND p.provolatile <> 'v' AS ok
       FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode
      WHERE o.oprnamespace = 'pg_catalog'::regnamespace`,
  );
  const badOps = new Set(ops.rows.filter((r) => !r.ok).map((r) => r.name));
  const operators = [...new Set(ops.rows.map((r) => r.name))].filter((o) => !badOps.has(o)).sort();
  const types = await client.query<{ name: string }>(
    `SELECT typname AS name FROM pg_type
      WHERE typnamespace = 'pg_catalog'::regnamespace AND typtype IN ('b', 'r', 'm')
      ORDER BY typname`,
  );
  return {
    server,
    safeFunctions: safe,
    otherFunctions: fns.rows.map((r) => r.name).filter((n) => !safeSet.has(n)),
    operators,
    types: types.rows.map((r) => r.name),
  };
}

function list(name: string, doc: string, xs: string[]): string {
  return `/** ${doc} */\nexport const ${name}: readonly string[] = ${JSON.stringify(xs, null, 2)};\n`;
}

/** The source text of src/facts/sql-catalog.ts. */
export function render(c: CatalogLists): string {
  return [
    `// Generated by scripts/sql-catalog.ts from ${c.server}; do not edit by hand.\n`,
    `// Regenerate: npx tsx scripts/sql-catalog.ts; then npx biome format --write src/facts/sql-catalog.ts\n\n`,
    `/** The server version the lists were read from. */\nexport const CATALOG_SERVER = ${JSON.stringify(c.server)};\n\n`,
    list(
      'SAFE_FUNCTIONS',
      'pg_catalog functions without side effects (see docs/constraints.md, "Built-in functions").',
      c.safeFunctions,
    ),
    '\n',
    list(
      'OTHER_CATALOG_FUNCTIONS',
      'Every other pg_catalog function name (volatile, excluded or uncallable): `t.name` may call one.',
      c.otherFunctions,
    ),
    '\n',
    list(
      'SAFE_OPERATORS',
      'pg_catalog operator symbols whose every built-in implementation is immutable or stable.',
      c.operators,
    ),
    '\n',
    list(
      'SAFE_TYPES',
      'pg_catalog base, range and multirange types (casts to them run built-in code).',
      c.types,
    ),
  ].join('');
}

async function main(): Promise<void> {
  const client = new pg.Client({
    connectionString: process.env.EXECLAYER_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test',
  });
  await client.connect();
  try {
    const c = await readCatalog(client);
    writeFileSync(new URL('../src/facts/sql-catalog.ts', import.meta.url), render(c));
    console.log(
      `src/facts/sql-catalog.ts: ${c.safeFunctions.length} functions, ${c.operators.length} operators, ${c.types.length} types (PostgreSQL ${c.server})`,
    );
  } finally {
    await client.end();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
