import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { compile } from '../engine/compile.js';
import { initFacts } from '../facts/index.js';
import { loadPolicyText } from '../policy/load.js';
import { formatProblem } from '../policy/problems.js';
import { declarationSchema, loadDeclarationTexts } from './declaration.js';
import { governanceExportSchema } from './export.js';
import {
  fromA2aCard,
  fromCycloneDx,
  fromPolicyDocumented,
  fromRegister,
  parseFieldMap,
  registerRows,
} from './import.js';

const DECL = `version: 1
agents:
  support-bot:
    owner: support-platform@acme.com
    purpose: answer customer support tickets
    prohibited: [changing customer records]
    data: [customer contact data]
    risk: { level: medium, eu_ai_act: { role: deployer, high_risk: false } }
    capabilities:
      - id: read-customers
        tools: db.query
        when: { sql: { statements: [select], tables: [customers] } }
      - id: big-refunds
        tools: payments.refund
        oversight: approval
        when: { args: { amount: { gt: 100 } } }
      - id: answer-questions
        description: answer questions about orders
`;

test('a declaration loads, and its capabilities decide recorded calls as a policy would', async () => {
  await initFacts();
  const r = loadDeclarationTexts([{ text: DECL, file: 'decl.yaml' }]);
  assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'));
  const a = r.declarations.agents.get('support-bot');
  assert.equal(a?.owner, 'support-platform@acme.com');
  assert.deepEqual(a?.risk, { level: 'medium', euAiAct: { role: 'deployer', highRisk: false } });
  assert.deepEqual(
    a?.capabilities.map((c) => [c.id, c.effect, c.rule !== undefined, c.line]),
    [
      ['read-customers', 'allow', true, 10],
      ['big-refunds', 'ask', true, 13],
      ['answer-questions', 'allow', false, 17],
    ],
  );
  const engine = compile(r.declarations.policy);
  const d = (tool: string, args: Record<string, unknown>) =>
    engine.decide({ agent: 'support-bot', tool, args: args as never }).effect;
  assert.equal(d('db.query', { sql: 'select * from customers' }), 'allow');
  assert.equal(d('db.query', { sql: 'update customers set x = 1' }), 'deny');
  assert.equal(d('payments.refund', { amount: 500 }), 'ask');
  assert.equal(d('payments.refund', { amount: 50 }), 'deny', 'small refunds were never declared');
});

test('problems point at file:line:column of the declaration, also inside conditions', () => {
  const bad = DECL.replace('statements: [select]', 'statments: [select]').replace('gt: 100', 'gt: "x"');
  const r = loadDeclarationTexts([{ text: bad, file: 'decl.yaml' }]);
  assert.equal(r.ok, false);
  const lines = r.ok ? [] : r.problems.map(formatProblem);
  assert.ok(
    lines.some((l) => /^decl\.yaml:12:24: error\[unknown_key\]: unknown key `statments`/.test(l)),
    lines.join('\n'),
  );
  assert.ok(
    lines.some((l) => /^decl\.yaml:16:39: error\[wrong_type\]/.test(l)),
    lines.join('\n'),
  );

  // A condition the schema accepts but the canonicaliser refuses: placed in the declaration, not the policy.
  const path = DECL.replace(
    'sql: { statements: [select], tables: [customers] }',
    'path: { under: [/srv/../etc] }',
  );
  const p = loadDeclarationTexts([{ text: path, file: 'decl.yaml' }]);
  assert.equal(p.ok, false);
  const msg = p.ok ? '' : p.problems.map(formatProblem).join('\n');
  assert.match(msg, /^decl\.yaml:12:\d+: error\[bad_condition\]: path: write the normalised path/);
  assert.match(msg, /\/agents\/support-bot\/capabilities\/0|path/);

  const dup = loadDeclarationTexts([
    { text: DECL, file: 'a.yaml' },
    { text: DECL, file: 'b.yaml' },
  ]);
  assert.equal(dup.ok, false);
  assert.match(
    dup.ok ? '' : formatProblem(dup.problems[0]!),
    /^b\.yaml:3:3: error\[duplicate_agent\]: agent `support-bot` is already declared in a\.yaml:3/,
  );
});

test('a high-risk agent cannot declare less than six months of log retention', () => {
  const text = DECL.replace('high_risk: false', 'high_risk: true').replace(
    '    capabilities:',
    '    retention: 90d\n    capabilities:',
  );
  const r = loadDeclarationTexts([{ text, file: 'd.yaml' }]);
  assert.equal(r.ok, false);
  assert.match(
    r.ok ? '' : formatProblem(r.problems[0]!),
    /d\.yaml:9:\d+: error\[retention_too_short\].*183 days.*not 90/,
  );
});

test('the published schema files are the schemas the code uses', () => {
  const read = (name: string) =>
    JSON.parse(readFileSync(new URL(`../../schema/${name}`, import.meta.url), 'utf8'));
  assert.deepEqual(read('declaration.schema.json'), JSON.parse(JSON.stringify(declarationSchema)));
  assert.deepEqual(read('governance-export.schema.json'), JSON.parse(JSON.stringify(governanceExportSchema)));
});

test('importers: A2A card, CycloneDX 1.6, CSV register and the policy documented strings all load', () => {
  const card = fromA2aCard({
    name: 'support-bot',
    description: 'Answers support tickets',
    provider: { organization: 'Acme Support', url: 'https://acme.com' },
    skills: [
      { id: 'lookup', name: 'Look up customers', description: 'finds a customer record' },
      { id: 'lookup', name: 'Refunds' },
    ],
  });
  assert.deepEqual(
    card.file.agents['support-bot']?.capabilities?.map((c) => c.id),
    ['lookup', 'refunds'],
  );

  const bom = fromCycloneDx({
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    components: [
      {
        type: 'machine-learning-model',
        'bom-ref': 'model-1',
        name: 'support-model',
        authors: [{ name: 'ML team', email: 'ml@acme.com' }],
        modelCard: { considerations: { useCases: ['support tickets'] } },
        properties: [
          { name: 'execlayer:agent', value: 'support-bot' },
          { name: 'execlayer:prohibited', value: 'credit decisions' },
          { name: 'execlayer:eu-ai-act-role', value: 'deployer' },
          { name: 'execlayer:high-risk', value: 'false' },
        ],
      },
    ],
    services: [
      {
        'bom-ref': 'svc-crm',
        name: 'CRM API',
        endpoints: ['https://API.acme.com/v1/customers'],
        data: [{ flow: 'bi-directional', classification: 'PII' }],
        properties: [{ name: 'execlayer:tools', value: 'http.fetch' }],
      },
      { 'bom-ref': 'svc-mail', name: 'Mail' },
      { 'bom-ref': 'svc-other', name: 'Unrelated', properties: [{ name: 'execlayer:tools', value: 'x.y' }] },
    ],
    dependencies: [{ ref: 'model-1', dependsOn: ['svc-crm', 'svc-mail'] }],
  });
  const sb = bom.file.agents['support-bot'];
  assert.equal(sb?.owner, 'ml@acme.com');
  assert.deepEqual(sb?.data, ['PII']);
  assert.deepEqual(sb?.capabilities, [
    {
      id: 'crm-api',
      description: 'CRM API',
      tools: 'http.fetch',
      when: { url: { hosts: ['api.acme.com'] } },
    },
    { id: 'mail', description: 'Mail' },
  ]);
  assert.throws(() => fromCycloneDx({ bomFormat: 'CycloneDX', specVersion: '1.2' }), /1\.2 is not supported/);

  const csv =
    'System,Owner,"Intended use",Caps,AI Act role,High risk\r\nbilling-bot,fin@acme.com,"invoices, refunds",read invoices; small refunds,deployer,yes\r\n';
  const map = parseFieldMap({
    agent: 'System',
    owner: 'Owner',
    purpose: 'Intended use',
    capabilities: 'Caps',
    eu_ai_act_role: 'AI Act role',
    high_risk: 'High risk',
  });
  const reg = fromRegister(registerRows(csv, 'csv'), map);
  assert.deepEqual(reg.file.agents['billing-bot'], {
    owner: 'fin@acme.com',
    purpose: 'invoices, refunds',
    capabilities: [
      { id: 'read-invoices', description: 'read invoices' },
      { id: 'small-refunds', description: 'small refunds' },
    ],
    risk: { eu_ai_act: { role: 'deployer', high_risk: true } },
  });
  assert.throws(() => parseFieldMap({ agent: 'a', owner: 'b' }), /`purpose` is required/);
  assert.throws(() => fromRegister(registerRows('System\nx', 'csv'), map), /column `Owner`/);

  const policy = loadPolicyText(
    readFileSync(new URL('../../examples/support/policy.yaml', import.meta.url), 'utf8'),
  );
  assert.ok(policy.ok);
  const migrated = fromPolicyDocumented(policy.policy.doc);
  assert.deepEqual(
    migrated.file.agents['support-bot']?.capabilities?.map((c) => c.description),
    ['read customer records', 'read knowledge base', 'small refunds', 'email customers'],
  );

  for (const imported of [card, bom, reg, migrated]) {
    const r = loadDeclarationTexts([{ text: stringify(imported.file), file: 'imported.yaml' }]);
    assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'));
  }
});
