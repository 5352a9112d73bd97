import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

/** Runs the built CLI (bin/execlayer.js → dist), as users do. */
function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/execlayer.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const POLICY = 'examples/support/policy.yaml';
const dir = mkdtempSync(join(tmpdir(), 'execlayer-cli-'));
const action = (a: object) => JSON.stringify(a);

describe('execlayer CLI', () => {
  test('every command has --help and exits 0 with it', () => {
    const top = cli('--help');
    assert.equal(top.code, 0);
    const commands = [...top.stdout.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1] as string);
    assert.ok(commands.length >= 12, `commands: ${commands.join(', ')}`);
    for (const c of commands) {
      const r = cli(c, '--help');
      assert.equal(r.code, 0, `${c} --help exited ${r.code}: ${r.stderr}`);
      assert.match(r.stdout, /usage: execlayer/, `${c} --help prints a usage line`);
      assert.match(r.stdout, /exit codes?/i, `${c} --help documents its exit codes`);
    }
  });

  test('unknown commands and flags are usage errors (exit 2) without a stack trace', () => {
    const r = cli('frobnicate');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command `frobnicate`/);
    const f = cli('check', '--policy', POLICY, '--bogus');
    assert.equal(f.code, 2);
    assert.doesNotMatch(f.stderr, /\n\s+at /, 'no stack trace');
  });

  test('the example policy is valid and its cases pass through `execlayer test`', () => {
    const v = cli('validate', POLICY);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    const t = cli('test', POLICY, 'examples/support/cases.yaml');
    assert.equal(t.code, 0, t.stdout);
    assert.match(t.stdout, /^(\d+) passed, 0 failed$/m);
  });

  test('validate reports file:line:column and exits 1 on an invalid policy', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'version: 1\nagents:\n  bot:\n    roles: [nope]\n    rulez: []\n');
    const r = cli('validate', file);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${file}:5:5: error\\[unknown_key\\]: unknown key \`rulez\``));
    const j = cli('validate', file, '--json');
    const out = JSON.parse(j.stdout) as { ok: boolean; problems: { line: number; code: string }[] };
    assert.equal(out.ok, false);
    assert.ok(out.problems.some((p) => p.code === 'unknown_key' && p.line === 5));
  });

  test('test exits 1 on a mismatch and shows expected, got and reason', () => {
    const cases = join(dir, 'cases.yaml');
    writeFileSync(
      cases,
      `cases:\n  - name: wrong expectation\n    action: { agent: support-bot, tool: db.query, args: { sql: "delete from customers" } }\n    expect: allow\n`,
    );
    const r = cli('test', POLICY, cases);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /FAIL wrong expectation/);
    assert.match(r.stdout, /expected: allow/);
    assert.match(r.stdout, /got: {6}deny/);
    assert.match(r.stdout, /0 passed, 1 failed/);
  });

  test('check: distinct exit codes for allow, deny, ask and error; --json prints the decision', () => {
    const allow = cli(
      'check',
      '--policy',
      POLICY,
      '--action',
      action({ agent: 'support-bot', tool: 'db.query', args: { sql: 'select * from customers' } }),
    );
    assert.equal(allow.code, 0);
    assert.match(allow.stdout, /^ALLOW {2}rule=read-customers/);
    const deny = cli(
      'check',
      '--policy',
      POLICY,
      '--action',
      action({ agent: 'support-bot', tool: 'db.query', args: { sql: 'drop table customers' } }),
    );
    assert.equal(deny.code, 1);
    const ask = cli(
      'check',
      '--policy',
      POLICY,
      '--json',
      '--action',
      action({ agent: 'support-bot', tool: 'email.send', args: { to: 'x@example.org' } }),
    );
    assert.equal(ask.code, 4);
    assert.equal((JSON.parse(ask.stdout) as { effect: string; rule: string }).rule, 'external-email');
    const broken = cli('check', '--policy', join(dir, 'missing.yaml'), '--action', '{}');
    assert.equal(broken.code, 3);
    const badJson = cli('check', '--policy', POLICY, '--action', '{not json');
    assert.equal(badJson.code, 2);
    assert.match(badJson.stderr, /--action is not valid JSON/);
  });
});
