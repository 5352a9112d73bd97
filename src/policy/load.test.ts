import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { initFacts } from '../facts/index.js';
import { type LoadResult, loadPolicyFile, loadPolicyObject, loadPolicyText } from './load.js';
import type { Problem } from './problems.js';
import { policySchema } from './schema.js';

before(async () => {
  await initFacts();
});

const BASE = `version: 1
agents:
  bot:
    roles: [r]
roles:
  r:
    - id: a
      allow: files.read_file
`;

function problems(r: LoadResult): Problem[] {
  assert.equal(r.ok, false, 'expected the policy to be refused');
  return r.ok ? [] : r.problems;
}

function one(r: LoadResult, code: string): Problem {
  const p = problems(r).find((x) => x.code === code);
  assert.ok(p, `expected a \`${code}\` problem, got ${JSON.stringify(problems(r))}`);
  return p;
}

describe('policy loading', () => {
  test('a valid policy loads with a content hash', () => {
    const r = loadPolicyText(BASE, 'p.yaml');
    assert.ok(r.ok);
    assert.match(r.policy.hash, /^[0-9a-f]{64}$/);
    // Formatting does not change the hash; content does.
    const r2 = loadPolicyText(BASE.replace('roles: [r]', 'roles:\n      - r'), 'p.yaml');
    assert.ok(r2.ok);
    assert.equal(r2.policy.hash, r.policy.hash);
    const r3 = loadPolicyText(BASE.replace('read_file', 'read_text_file'), 'p.yaml');
    assert.ok(r3.ok);
    assert.notEqual(r3.policy.hash, r.policy.hash);
  });

  test('JSON is accepted', () => {
    const r = loadPolicyText(
      JSON.stringify({ version: 1, agents: { bot: { rules: [{ allow: 'x.y' }] } } }),
      'p.json',
    );
    assert.ok(r.ok);
  });

  test('malformed YAML reports line and column', () => {
    const p = one(loadPolicyText('version: 1\nagents: [unclosed\n', 'bad.yaml'), 'syntax');
    assert.equal(p.file, 'bad.yaml');
    assert.ok(p.line >= 2, `line ${p.line}`);
  });

  test('malformed JSON is refused with a position', () => {
    const p = one(loadPolicyText('{"version": 1, "agents": {', 'bad.json'), 'syntax');
    assert.equal(p.line, 1);
  });

  test('unknown key: position of the key and a did-you-mean hint', () => {
    const p = one(
      loadPolicyText(BASE.replace('allow: files.read_file', 'alow: files.read_file'), 'p.yaml'),
      'unknown_key',
    );
    assert.equal(p.line, 8);
    assert.equal(p.column, 7);
    assert.match(p.message, /`alow`/);
    assert.match(p.hint ?? '', /`allow`/);
  });

  test('wrong type names the path and the place', () => {
    const p = one(loadPolicyText(BASE.replace('roles: [r]', 'roles: r'), 'p.yaml'), 'wrong_type');
    assert.equal(p.line, 4);
    assert.match(p.message, /\/agents\/bot\/roles/);
    assert.match(p.message, /array/);
  });

  test('duplicate keys are refused', () => {
    const p = one(loadPolicyText(`${BASE}      allow: files.write_file\n`, 'p.yaml'), 'duplicate_key');
    assert.equal(p.line, 9);
  });

  test('__proto__ and constructor keys are refused', () => {
    one(loadPolicyText(`${BASE}__proto__: { polluted: true }\n`, 'p.yaml'), 'forbidden_key');
    one(loadPolicyText(BASE.replace('  bot:', '  constructor:'), 'p.yaml'), 'forbidden_key');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const viaJson = JSON.parse('{"version":1,"agents":{},"__proto__":{"polluted":true}}') as unknown;
    one(loadPolicyObject(viaJson), 'forbidden_key');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('oversized and deeply nested documents are refused', () => {
    const big = one(loadPolicyText(`${BASE}# ${'x'.repeat(5 * 1024 * 1024)}\n`, 'big.yaml'), 'too_large');
    assert.deepEqual([big.line, big.column], [1, 1], 'a position an editor can open');
    const deep = `version: 1\nagents: {}\nx: ${'['.repeat(100)}${']'.repeat(100)}\n`;
    one(loadPolicyText(deep, 'deep.yaml'), 'too_deep');
  });

  test('YAML aliases are refused (no billion laughs)', () => {
    one(loadPolicyText('version: 1\nagents: {}\na: &a [x, x]\nb: [*a, *a]\n', 'p.yaml'), 'alias');
  });

  test('NUL bytes are refused', () => {
    one(loadPolicyText(`${BASE}\u0000\n`, 'p.yaml'), 'nul_byte');
  });

  test('unknown role, with a hint', () => {
    const p = one(loadPolicyText(BASE.replace('roles: [r]', 'roles: [rr]'), 'p.yaml'), 'unknown_role');
    assert.equal(p.line, 4);
    assert.match(p.hint ?? '', /`r`/);
  });

  test('duplicate rule ids', () => {
    const p = one(loadPolicyText(`${BASE}    - id: a\n      deny: x.y\n`, 'p.yaml'), 'duplicate_id');
    assert.equal(p.line, 9);
    assert.match(p.message, /line 7/);
  });

  test('a rule with two effects or none', () => {
    one(loadPolicyText(`${BASE}      deny: x.y\n`, 'p.yaml'), 'rule_effect');
    one(
      loadPolicyText(BASE.replace('      allow: files.read_file\n', '      reason: nothing\n'), 'p.yaml'),
      'rule_effect',
    );
  });

  test('non-string tool names and bad patterns', () => {
    const t = one(
      loadPolicyText(BASE.replace('allow: files.read_file', 'allow: 42'), 'p.yaml'),
      'wrong_type',
    );
    assert.equal(t.message, '`/roles/r/0/allow` must be a string or an array');
    const p = one(
      loadPolicyText(BASE.replace('allow: files.read_file', 'allow: "files.read file"'), 'p.yaml'),
      'bad_tool_pattern',
    );
    assert.equal(p.line, 8);
    one(
      loadPolicyText(BASE.replace('allow: files.read_file', 'allow: "files.reаd_file"'), 'p.yaml'),
      'bad_tool_pattern',
    );
  });

  test('unknown canonicaliser', () => {
    const p = one(
      loadPolicyText(`${BASE}      when: { regex: { pattern: ".*" } }\n`, 'p.yaml'),
      'unknown_key',
    );
    assert.match(p.message, /`regex`/);
  });

  test('CEL syntax error points into the expression', () => {
    const p = one(loadPolicyText(`${BASE}      when: { cel: "args.amount > " }\n`, 'p.yaml'), 'cel_syntax');
    assert.equal(p.line, 9);
    assert.ok(p.column > 20, `column ${p.column}`);
  });

  test('CEL type errors and unknown names', () => {
    one(
      loadPolicyText(`${BASE}      when: { cel: "args.amount > 'ten' && 1 > 'a'" }\n`, 'p.yaml'),
      'cel_type',
    );
    one(loadPolicyText(`${BASE}      when: { cel: "1 + 2" }\n`, 'p.yaml'), 'cel_type');
    one(loadPolicyText(`${BASE}      when: { cel: "user.admin == true" }\n`, 'p.yaml'), 'cel_unknown');
    one(
      loadPolicyText(`${BASE}      when: { cel: "args.x.lowerAsciii() == 'a'" }\n`, 'p.yaml'),
      'cel_unknown',
    );
  });

  test('bad canonicaliser condition fields', () => {
    one(
      loadPolicyText(`${BASE}      when: { path: { under: [relative/dir] } }\n`, 'p.yaml'),
      'bad_condition',
    );
  });

  test('bad limits and durations', () => {
    one(loadPolicyText(`${BASE}      limit: { calls: 10 }\n`, 'p.yaml'), 'bad_limit');
    one(loadPolicyText(`${BASE}      limit: { calls: 10, per: fortnight }\n`, 'p.yaml'), 'bad_duration');
    one(loadPolicyText(`${BASE}      limit: { sum: amount, max: 5, per: day }\n`, 'p.yaml'), 'bad_limit');
  });

  test('every problem is reported, not just the first', () => {
    const text = BASE.replace('roles: [r]', 'roles: [nope]').replace(
      'allow: files.read_file',
      'allow: "bad name"',
    );
    const ps = problems(loadPolicyText(text, 'p.yaml'));
    assert.ok(ps.some((p) => p.code === 'unknown_role'));
    assert.ok(ps.some((p) => p.code === 'bad_tool_pattern'));
  });

  test('missing and unreadable files are problems, not exceptions', async () => {
    const r = await loadPolicyFile('/nonexistent/policy.yaml');
    assert.equal(one(r, 'not_found').file, '/nonexistent/policy.yaml');
  });
});

describe('policy warnings', () => {
  const warnings = (text: string) => {
    const r = loadPolicyText(text, 'p.yaml');
    assert.ok(r.ok, JSON.stringify(r.ok ? [] : r.problems));
    return r.warnings;
  };

  test('allow on a bare `*`', () => {
    assert.ok(
      warnings(BASE.replace('allow: files.read_file', 'allow: "*"')).some(
        (w) => w.code === 'allow_everything',
      ),
    );
  });

  test('a rule made dead by a broader deny', () => {
    const ws = warnings(`${BASE}    - id: no-files\n      deny: "files.*"\n`);
    const w = ws.find((x) => x.code === 'dead_rule');
    assert.ok(w);
    assert.equal(w.line, 7);
    assert.match(w.message, /`no-files`/);
  });

  test('a rule that can never match', () => {
    const ws = warnings(`${BASE}      when: { args: { n: { min: 10, max: 1 } } }\n`);
    assert.ok(ws.some((w) => w.code === 'never_matches'));
  });

  test('CEL reading an argument the tool does not have', () => {
    const ws = warnings(
      `${BASE}      when: { cel: "args.pth.startsWith('/srv')" }\ntools:\n  files.read_file: { args: { path: { type: string } } }\n`,
    );
    const w = ws.find((x) => x.code === 'unknown_argument');
    assert.ok(w);
    assert.match(w.message, /`pth`/);
  });

  test('a limit on an ask rule is kept and not warned about; on a deny rule it is', () => {
    const ask = `${BASE}    - id: mail\n      ask: mail.send\n      limit: { calls: 5, per: hour }\n`;
    const r = loadPolicyText(ask, 'p.yaml');
    assert.ok(r.ok);
    assert.deepEqual(r.warnings, [], 'the approved call consumes it, so there is nothing to warn about');
    const rule = [...r.policy.agents.values()][0]?.rules.find((x) => x.id === 'mail');
    assert.equal(rule?.limits[0]?.kind, 'calls');
    const deny = warnings(ask.replace('ask: mail.send', 'deny: mail.send'));
    assert.ok(deny.some((w) => w.code === 'limit_on_deny'));
  });

  test('a role given to no agent', () => {
    assert.ok(warnings(`${BASE}  unused:\n    - allow: x.y\n`).some((w) => w.code === 'unused_role'));
  });
});

test('the published schema file matches the schema the loader uses', () => {
  const file = JSON.parse(
    readFileSync(new URL('../../schema/policy.schema.json', import.meta.url), 'utf8'),
  ) as unknown;
  assert.deepEqual(file, JSON.parse(JSON.stringify(policySchema)));
});

test('allow rules get the path, url and email warnings for dangerous defaults, with a location', () => {
  const r = loadPolicyText(
    [
      'version: 1',
      'agents:',
      '  a:',
      '    rules:',
      '      - { allow: web.fetch, when: { url: { schemes: [https, file] } } }',
      '      - { allow: files.read, when: { path: { not_under: [/etc] } } }',
      "      - { allow: mail.send, when: { email: { to_domains: ['*.com'] } } }",
      '      - { allow: files.move, when: { path: { under: [/srv/kb], allow_traversal: true } } }',
      '      - { allow: api.get, when: { url: { hosts: [api.acme.com] } } }',
      '      - { deny: web.post, unless: { url: {} } }',
    ].join('\n'),
    'p.yaml',
  );
  assert.ok(r.ok, JSON.stringify(r));
  const got = r.warnings.map((w) => `${w.code}@${w.line}`);
  assert.deepEqual(got, [
    'url_any_host@5',
    'url_scheme@5',
    'path_anywhere@6',
    'email_broad_wildcard@7',
    'path_traversal@8',
  ]);
});

test('a policy with mistakes of every kind reports all of them in one run', () => {
  const r = loadPolicyText(
    [
      'version: 1',
      'agents:',
      '  a:',
      '    roles: [nope]',
      '    rules:',
      '      - { allow: x, when: { sql: { statment: [select] } } }',
      '      - { allow: y, when: { cel: "args.x >" } }',
      '      - { deny: z, unlesss: {} }',
      '      - { allow: w, limit: { calls: 0 } }',
      '      - { allow: v, when: { path: { under: [relative] } } }',
    ].join('\n'),
    'p.yaml',
  );
  assert.equal(r.ok, false);
  if (r.ok) return;
  const found = r.problems.map((p) => `${p.line}:${p.code}`).sort();
  assert.deepEqual(found, [
    '10:bad_condition',
    '4:unknown_role',
    '6:unknown_key',
    '7:cel_syntax',
    '8:unknown_key',
    '9:schema',
  ]);
});

test('a rule can acknowledge a warning it was given; other rules still get it', () => {
  const rule = (ack: boolean) => ({
    deny: 'db.query',
    when: { sql: { tables: ['customers'] } },
    ...(ack ? { acknowledge: ['deny_with_allow_list'] } : {}),
  });
  const r = loadPolicyObject({ version: 1, agents: { a: { rules: [rule(true), rule(false)] } } });
  assert.ok(r.ok);
  assert.deepEqual(
    r.warnings.map((w) => `${w.code} ${w.path}`),
    ['deny_with_allow_list /agents/a/rules/1/when/sql'],
  );
});
