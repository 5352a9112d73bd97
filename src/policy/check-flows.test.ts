import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initFacts } from '../facts/index.js';
import { loadPolicyText } from './load.js';
import { formatProblem } from './problems.js';

await initFacts();

const base = `version: 1
agents:
  bot: { rules: [{ allow: "t.*" }] }
`;

function problems(flows: string): string[] {
  const r = loadPolicyText(`${base}flows:\n${flows}`, 'p.yaml');
  return r.ok ? [] : r.problems.filter((p) => p.severity === 'error').map(formatProblem);
}

describe('flows: policy syntax', () => {
  it('loads a full flows section and compiles every part', () => {
    const r = loadPolicyText(
      `${base}flows:
  produces:
    web.fetch:
      label: { integrity: untrusted, level: public }
      overrides:
        - when: { url: { arg: url, hosts: [docs.acme.com] } }
          label: { integrity: trusted }
    crm.*:
      label: { integrity: trusted, level: confidential, readers: [acme.com] }
      extract: { senders: "$.structuredContent.contacts[*].email" }
      withhold:
        - { path: "$.content[*]", unless: { _meta.association: { in: [MEMBER] } }, action: drop }
  sinks:
    email.send: { trusted: true, recipients: { email: [to], text: [body] }, seen: { to: senders }, effect: ask }
  guards:
    - { id: big-refunds, ask: payments.refund, when: { args: { amount: { gt: 50 } } }, context: { integrity: untrusted } }
  sequences:
    - { id: no-mail-after-web, after: [web.fetch], then: email.send, within: 10m }
  presets:
    lethal_trifecta: { egress: [email.send, http.post], effect: deny }
`,
      'p.yaml',
    );
    assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'));
    const f = r.policy.flows;
    assert.ok(f);
    assert.deepEqual(f.levels, ['public', 'internal', 'confidential', 'secret']);
    assert.equal(f.produces.exact.get('web.fetch')?.[0]?.overrides.length, 1);
    assert.deepEqual(f.produces.globs[0]?.value.label, {
      integrity: 'trusted',
      level: 2,
      readers: ['acme.com'],
      tags: [],
    });
    assert.equal(f.sinks.exact.get('email.send')?.[0]?.effect, 'ask');
    assert.deepEqual(
      f.guards.exact.get('email.send')?.map((g) => g.kind),
      ['sequence', 'lethal_trifecta'],
    );
    assert.equal(f.steppers.exact.get('web.fetch')?.[0]?.withinMs, 600_000);
    assert.equal(f.rules, 3);
  });

  it('a declaration without integrity or level gets untrusted and the most confidential level', () => {
    const r = loadPolicyText(`${base}flows:\n  produces:\n    t.x: { label: { tags: [a] } }\n`, 'p.yaml');
    assert.ok(r.ok);
    assert.deepEqual(r.policy.flows?.produces.exact.get('t.x')?.[0]?.label, {
      integrity: 'untrusted',
      level: 3,
      tags: ['a'],
    });
  });

  it('names an unknown level at its line and column, with a guess', () => {
    const p = problems('  produces:\n    t.x: { label: { level: confidental } }\n');
    assert.equal(p.length, 1);
    assert.match(
      p[0] ?? '',
      /^p\.yaml:6:28: error\[unknown_level\]: unknown confidentiality level `confidental`/,
    );
    assert.match(p[0] ?? '', /did you mean `confidential`/);
  });

  it('refuses a JSONPath outside the subset, naming it', () => {
    const p = problems('  produces:\n    t.x:\n      extract: { a: "$..email" }\n');
    assert.match(
      p[0] ?? '',
      /p\.yaml:7:21: error\[bad_jsonpath\]: JSONPath `\$\.\.email`: recursive descent/,
    );
    const q = problems('  produces:\n    t.x:\n      items: [{ path: "$.a[?(@.x)]", label: {} }]\n');
    assert.match(q[0] ?? '', /bad_jsonpath.*filters are written as `where:`/);
  });

  it('a sink that reads a set nobody extracts is an error', () => {
    const p = problems('  sinks:\n    email.send: { seen: { to: senders } }\n');
    assert.match(
      p[0] ?? '',
      /p\.yaml:6:31: error\[unknown_seen_set\]: no `produces` entry extracts a set named `senders`/,
    );
  });

  it('unknown keys in flows are refused by the schema with a guess', () => {
    const p = problems('  sinks:\n    email.send: { trustd: true }\n');
    assert.match(
      p[0] ?? '',
      /p\.yaml:6:19: error\[unknown_key\]: unknown key `trustd`.*\n\s+hint: did you mean `trusted`\?/,
    );
    const q = problems('  guards:\n    - { allow: email.send }\n');
    assert.match(q[0] ?? '', /unknown key `allow`/);
  });

  it('a guard needs exactly one of deny or ask; a bad duration is named', () => {
    assert.match(problems('  guards:\n    - { id: g }\n')[0] ?? '', /rule_effect/);
    assert.match(
      problems('  sequences:\n    - { after: [a.b], then: c.d, within: soon }\n')[0] ?? '',
      /bad_duration.*`soon` is not a duration/,
    );
  });

  it('typed conditions of an override are compiled by the same checker as rules', () => {
    const p = problems(
      '  produces:\n    web.fetch:\n      overrides:\n        - { when: { url: { hostz: [x] } }, label: {} }\n',
    );
    assert.match(p[0] ?? '', /unknown_key|bad_condition/);
  });
});
