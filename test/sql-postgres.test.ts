// The `sql` constraint against a real PostgreSQL: every SQL case the corpus allows runs on a scratch
// database inside a rolled-back transaction and is shown to write nothing (no transaction id assigned,
// pg_stat_xact_* counters zero, no lock beyond AccessShareLock, settings unchanged, rows and sequence
// unchanged), with standard_conforming_strings on and off; the denied attacks are shown to be real
// attacks when run directly; and the vetted built-in lists are checked against the server's catalog.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import pg from 'pg';
import { exclusion, readCatalog } from '../scripts/sql-catalog.js';
import { compile } from '../src/engine/compile.js';
import { initFacts } from '../src/facts/index.js';
import { CATALOG_SERVER, SAFE_FUNCTIONS, SAFE_OPERATORS, SAFE_TYPES } from '../src/facts/sql-catalog.js';
import { loadPolicyObject } from '../src/policy/load.js';
import { caseArgs, groupPolicy, readCorpus } from '../src/testing/corpus.js';
import { tempPostgresDatabase } from '../src/testing/services.js';
import type { Json } from '../src/types.js';

const SCHEMA = `
  CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text, region text,
                          created_at timestamptz NOT NULL DEFAULT '2026-01-01');
  CREATE TABLE tickets (id int PRIMARY KEY, customer_id int REFERENCES customers (id), subject text,
                        status text, created_at timestamptz NOT NULL DEFAULT '2026-01-02');
  INSERT INTO customers (id, name, email, region) VALUES (1, 'ada', 'ada@acme.com', 'eu'),
    (2, 'bob', 'bob@acme.com', NULL), (3, 'cy', 'cy@acme.com', 'us');
  INSERT INTO tickets (id, customer_id, subject, status) VALUES (1, 1, 'login', 'open'),
    (2, 2, 'refund', 'closed');
  CREATE TABLE secrets (x int);
  INSERT INTO secrets VALUES (42);
  CREATE SCHEMA crm;
  CREATE TABLE crm.customers (id int, name text);
  INSERT INTO crm.customers VALUES (1, 'crm');
  CREATE SCHEMA secret;
  CREATE TABLE secret.data (data text);
  CREATE TABLE secret.customers (id int, name text);
  INSERT INTO secret.customers VALUES (1, 'from the secret schema');
  CREATE SEQUENCE ticket_ids;
  CREATE FUNCTION touch_customer(i int) RETURNS int LANGUAGE sql VOLATILE
    AS $$ UPDATE customers SET name = 'touched' WHERE id = i RETURNING id $$;
  CREATE FUNCTION touch(c customers) RETURNS int LANGUAGE sql VOLATILE AS $$ SELECT touch_customer(c.id) $$;
  CREATE FUNCTION touch_op(a int, b int) RETURNS boolean LANGUAGE sql VOLATILE
    AS $$ SELECT touch_customer(a) IS NOT NULL $$;
  CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = touch_op);
  CREATE DOMAIN guarded_int AS int CHECK (touch_customer(VALUE) IS NULL OR VALUE IS NOT NULL);
  CREATE SCHEMA app;
  CREATE FUNCTION app.safe_fn(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$;
`;

/** What the data looks like: compared before and after every case. */
const STATE = `
  SELECT (SELECT string_agg(format('%s|%s|%s|%s', id, name, email, region), ';' ORDER BY id) FROM public.customers)
      || (SELECT string_agg(format('%s|%s|%s', id, subject, status), ';' ORDER BY id) FROM public.tickets)
      || (SELECT string_agg(name, ';') FROM secret.customers)
      || (SELECT last_value::text || is_called::text FROM public.ticket_ids) AS state`;

/** The settings a statement is run under: the default, and standard_conforming_strings off. */
const SETTINGS = [
  { name: 'standard_conforming_strings on', set: 'SET LOCAL standard_conforming_strings = on' },
  {
    name: 'standard_conforming_strings off',
    set: 'SET LOCAL standard_conforming_strings = off; SET LOCAL escape_string_warning = off',
  },
  {
    name: 'standard_conforming_strings off, backslash_quote off',
    set: 'SET LOCAL standard_conforming_strings = off; SET LOCAL backslash_quote = off; SET LOCAL escape_string_warning = off',
  },
] as const;

/** Errors a server with standard_conforming_strings off raises instead of running the text. */
const REFUSED_WHEN_OFF = /unsafe use of string constant with Unicode escapes|unsafe use of \\'/;

interface AllowedCase {
  where: string;
  sql: string;
}

function strings(v: Json): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (v !== null && typeof v === 'object') return Object.values(v).flatMap(strings);
  return [];
}

/** Every SQL text the corpus allows (groups with `target:` excepted), each confirmed by the engine. */
function allowedCases(): AllowedCase[] {
  const out: AllowedCase[] = [];
  for (const file of readCorpus()) {
    if (file.canonicaliser !== 'sql') continue;
    for (const group of file.groups) {
      if (group.target !== undefined) continue;
      // Groups of a file about SQL that constrain something else (paths, declared tools) send no SQL.
      if (!JSON.stringify([group.when, group.unless, group.rules]).includes('"sql"')) continue;
      const loaded = loadPolicyObject(groupPolicy(group), `${file.file}#${group.name}`);
      assert.ok(loaded.ok, JSON.stringify(loaded));
      const engine = compile(loaded.policy);
      for (const c of group.cases) {
        if (c.expect !== 'allow') continue;
        const args = caseArgs(file, c);
        const d = engine.decide({ agent: 'corpus', tool: c.tool ?? group.tool ?? 't.call', args });
        assert.equal(d.effect, 'allow', `${file.file}#${group.name}: ${JSON.stringify(args)}: ${d.reason}`);
        for (const sql of strings(args)) out.push({ where: `${file.file}#${group.name}`, sql });
      }
    }
  }
  return out;
}

async function one<T>(c: pg.Client, sql: string): Promise<T> {
  const r = await c.query(sql);
  return r.rows[0] as T;
}

/** Everything a statement could have changed, read inside its transaction. */
async function footprint(c: pg.Client) {
  const xact = await one<{ ins: string; upd: string; del: string }>(
    c,
    `SELECT coalesce(sum(n_tup_ins), 0) AS ins, coalesce(sum(n_tup_upd), 0) AS upd,
            coalesce(sum(n_tup_del), 0) AS del FROM pg_stat_xact_all_tables`,
  );
  const xid = await one<{ xid: string | null }>(c, 'SELECT pg_current_xact_id_if_assigned()::text AS xid');
  const locks = await c.query<{ lock: string }>(
    `SELECT locktype || ' ' || mode || coalesce(' ' || relation::regclass::text, '') AS lock
       FROM pg_locks
      WHERE pid = pg_backend_pid() AND locktype <> 'virtualxid'
        AND NOT (locktype = 'relation' AND mode = 'AccessShareLock')`,
  );
  const settings = await one<{ s: string }>(
    c,
    `SELECT current_setting('search_path') || ' ' || current_user || ' ' || session_user
            || ' ' || current_setting('standard_conforming_strings') AS s`,
  );
  return { xact, xid: xid.xid, locks: locks.rows.map((r) => r.lock), settings: settings.s };
}

before(async () => {
  await initFacts();
});

/** A scratch database with the corpus schema, dropped when the test ends; undefined when skipped. */
async function scratch(t: Parameters<typeof tempPostgresDatabase>[0]): Promise<pg.Client | undefined> {
  const url = await tempPostgresDatabase(t);
  if (url === undefined) return undefined;
  const client = new pg.Client({ connectionString: url });
  // The database is dropped WITH (FORCE) when the test ends, which may end this connection first.
  client.on('error', () => {});
  await client.connect();
  t.after(() => client.end());
  await client.query(SCHEMA);
  return client;
}

test('every SQL case the corpus allows writes nothing, under every string setting', async (t) => {
  const c = await scratch(t);
  if (c === undefined) return;
  const cases = allowedCases();
  assert.ok(cases.length >= 60, `only ${cases.length} allowed cases`);
  const initial = (await one<{ state: string }>(c, STATE)).state;
  const problems: string[] = [];
  let ran = 0;
  for (const k of cases) {
    const shapes: string[] = [];
    for (const setting of SETTINGS) {
      await c.query('BEGIN');
      await c.query(setting.set);
      // pg_stat_xact_* may still hold counts of earlier, unflushed transactions: compare the difference.
      const before = await footprint(c);
      let shape: string;
      try {
        const r = (await c.query(k.sql)) as pg.QueryResult | pg.QueryResult[];
        const results = Array.isArray(r) ? r : [r];
        shape = results.map((x) => `${x.command} ${x.rowCount} ${x.fields.map((f) => f.name)}`).join('; ');
      } catch (e) {
        await c.query('ROLLBACK');
        const msg = e instanceof Error ? e.message : String(e);
        // Refusing the text outright is safe; running it differently would not be.
        if (setting.name !== SETTINGS[0].name && REFUSED_WHEN_OFF.test(msg)) continue;
        problems.push(`${k.where}: ${JSON.stringify(k.sql)} failed with ${setting.name}: ${msg}`);
        continue;
      }
      const after = await footprint(c);
      await c.query('ROLLBACK');
      ran++;
      const ins = Number(after.xact.ins) - Number(before.xact.ins);
      const upd = Number(after.xact.upd) - Number(before.xact.upd);
      const del = Number(after.xact.del) - Number(before.xact.del);
      if (ins !== 0 || upd !== 0 || del !== 0)
        problems.push(`${k.sql} (${setting.name}): tuples inserted ${ins}, updated ${upd}, deleted ${del}`);
      if (after.xid !== null) problems.push(`${k.sql} (${setting.name}): a transaction id was assigned`);
      if (after.locks.length > 0)
        problems.push(`${k.sql} (${setting.name}): holds ${after.locks.join(', ')}`);
      if (after.settings !== before.settings)
        problems.push(`${k.sql} (${setting.name}): settings ${before.settings} became ${after.settings}`);
      const state = (await one<{ state: string }>(c, STATE)).state;
      if (state !== initial) problems.push(`${k.sql} (${setting.name}): data changed to ${state}`);
      shapes.push(shape);
    }
    // Both string settings split and read the text alike: same statements, same columns, same rows.
    if (new Set(shapes).size > 1)
      problems.push(`${k.sql}: results differ between settings: ${shapes.join(' | ')}`);
  }
  assert.deepEqual(problems, []);
  assert.ok(ran >= cases.length * 2, `${ran} runs for ${cases.length} cases`);
});

/** Runs `sql` directly in a rolled-back transaction; returns the data state it left behind. */
async function directly(c: pg.Client, sql: string, setup = ''): Promise<{ state: string; rows: unknown[] }> {
  await c.query('BEGIN');
  try {
    if (setup !== '') await c.query(setup);
    const r = (await c.query(sql)) as pg.QueryResult | pg.QueryResult[];
    const rows = (Array.isArray(r) ? r : [r]).flatMap((x) => x.rows);
    return { state: (await one<{ state: string }>(c, STATE)).state, rows };
  } finally {
    await c.query('ROLLBACK');
  }
}

async function decide(when: unknown, sql: string) {
  const loaded = loadPolicyObject({ version: 1, agents: { a: { rules: [{ allow: 'db.query', when }] } } });
  assert.ok(loaded.ok, JSON.stringify(loaded));
  return compile(loaded.policy).decide({ agent: 'a', tool: 'db.query', args: { sql } });
}

const README_RULE = { sql: { statements: ['select'], tables: ['customers', 'tickets'] } };

test('the denied attacks are real: run directly, each one writes or escapes', async (t) => {
  const c = await scratch(t);
  if (c === undefined) return;
  const initial = (await one<{ state: string }>(c, STATE)).state;
  const attacks: [string, string][] = [
    ['SELECT touch_customer(1)', 'a volatile function'],
    ["SELECT '1'::guarded_int", "a domain's CHECK"],
    ['SELECT 1 === 1', 'a user operator'],
    ['SELECT * FROM customers WHERE touch_customer(id) > 0', 'a call in WHERE'],
    ['SELECT * FROM json_to_record(\'{"a": 1}\') AS x(a guarded_int)', 'a column definition list'],
  ];
  for (const [sql, what] of attacks) {
    const d = await decide(README_RULE, sql);
    assert.equal(d.effect, 'deny', sql);
    const r = await directly(c, sql);
    assert.notEqual(r.state, initial, `${what}: ${sql} did not change the row when run directly`);
    assert.match(r.state, /touched/, what);
  }
  // Row locks: FOR UPDATE takes a RowShareLock and marks rows (a transaction id is assigned).
  await c.query('BEGIN');
  await c.query('SELECT * FROM customers FOR UPDATE');
  const locked = await footprint(c);
  await c.query('ROLLBACK');
  assert.ok(locked.locks.includes('relation RowShareLock customers'), locked.locks.join(', '));
  assert.notEqual(locked.xid, null);
  assert.equal((await decide(README_RULE, 'SELECT * FROM customers FOR UPDATE')).effect, 'deny');
});

test('set_config really redirects a later unqualified read; it is denied', async (t) => {
  const c = await scratch(t);
  if (c === undefined) return;
  const sql = "SELECT set_config('search_path', 'secret, public', true)";
  assert.equal((await decide(README_RULE, sql)).effect, 'deny');
  const r = await directly(c, 'SELECT name FROM customers WHERE id = 1', sql);
  assert.deepEqual(r.rows, [{ name: 'from the secret schema' }]);
});

test('with standard_conforming_strings off the backslash literal hides a DELETE; it is denied', async (t) => {
  const c = await scratch(t);
  if (c === undefined) return;
  const sql = "SELECT 'a\\' -- '; DELETE FROM customers WHERE id = 3";
  const d = await decide(README_RULE, sql);
  assert.equal(d.effect, 'deny');
  assert.match(d.reason, /backslash/);
  const count = (x: { rows: unknown[] }) => x.rows.length;
  // With the setting on the text is one SELECT; with it off the server also runs the DELETE.
  const on = await directly(
    c,
    `${sql}\n; SELECT id FROM customers`,
    'SET LOCAL standard_conforming_strings = on',
  );
  assert.equal(count(on), 4, JSON.stringify(on.rows));
  const off = await directly(
    c,
    `${sql}\n; SELECT id FROM customers`,
    'SET LOCAL standard_conforming_strings = off; SET LOCAL escape_string_warning = off',
  );
  assert.deepEqual(off.rows.slice(1), [{ id: 1 }, { id: 2 }]);
});

test('an external XML entity is never loaded: xmlparse returns the text, not the file', async (t) => {
  const c = await scratch(t);
  if (c === undefined) return;
  const sql =
    'SELECT xmlparse(document \'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>\')::text AS x';
  assert.equal((await decide(README_RULE, sql)).effect, 'allow');
  const r = await directly(c, sql);
  assert.doesNotMatch(JSON.stringify(r.rows), /root:/);
});

test('an unqualified name is the temp table when one exists (why create stays out of read rules)', async (t) => {
  const c = await scratch(t);
  if (c === undefined) return;
  const r = await directly(
    c,
    'SELECT name FROM customers WHERE id = 1',
    "CREATE TEMP TABLE customers (LIKE public.customers INCLUDING DEFAULTS); INSERT INTO customers (id, name) VALUES (1, 'temp')",
  );
  assert.deepEqual(r.rows, [{ name: 'temp' }]);
  assert.equal((await decide(README_RULE, 'CREATE TEMP TABLE customers (id int)')).effect, 'deny');
  assert.equal((await decide(README_RULE, 'SELECT * FROM pg_temp.customers')).effect, 'deny');
});

test('the vetted lists match the server catalog: every function exists and is not volatile', async (t) => {
  const c = await scratch(t);
  if (c === undefined) return;
  const fns = await c.query<{ name: string; volatile: boolean; callable: boolean }>(
    `SELECT p.proname AS name, bool_or(p.provolatile = 'v') AS volatile, true AS callable
       FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace GROUP BY p.proname`,
  );
  const byName = new Map(fns.rows.map((r) => [r.name, r]));
  const wrong: string[] = [];
  for (const f of SAFE_FUNCTIONS) {
    const row = byName.get(f);
    if (row === undefined) wrong.push(`${f}: not in pg_catalog`);
    else if (exclusion(row) !== null) wrong.push(`${f}: ${exclusion(row)}`);
  }
  assert.deepEqual(wrong, []);
  const ops = await c.query<{ name: string }>(
    `SELECT DISTINCT o.oprname AS name FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode
      WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND p.provolatile <> 'v'`,
  );
  const opNames = new Set(ops.rows.map((r) => r.name));
  assert.deepEqual(
    SAFE_OPERATORS.filter((o) => !opNames.has(o)),
    [],
  );
  const types = await c.query<{ name: string }>(
    "SELECT typname AS name FROM pg_type WHERE typnamespace = 'pg_catalog'::regnamespace",
  );
  const typeNames = new Set(types.rows.map((r) => r.name));
  assert.deepEqual(
    SAFE_TYPES.filter((x) => !typeNames.has(x)),
    [],
  );
  // On the server version the file was generated from, regenerating it changes nothing.
  const fresh = await readCatalog(c);
  if (fresh.server !== CATALOG_SERVER) {
    t.diagnostic(`lists from ${CATALOG_SERVER}; this server is ${fresh.server}: regeneration not compared`);
    return;
  }
  assert.deepEqual(fresh.safeFunctions, SAFE_FUNCTIONS);
  assert.deepEqual(fresh.operators, SAFE_OPERATORS);
  assert.deepEqual(fresh.types, SAFE_TYPES);
});
