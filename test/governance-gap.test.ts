// The gap report over a scenario recorded through the real gateway: every row and status exactly as the
// agents behaved, the text, JSON and HTML outputs, and `--suggest`, whose candidate replayed over the same
// traffic denies nothing the agents did within their declarations.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { gapCommand } from '../src/cli/gap.js';
import { recordScenario, type Scenario } from './governance-fixture.js';

let s: Scenario;
before(async () => {
  s = await recordScenario();
});
after(() => {
  if (s) rmSync(s.dir, { recursive: true, force: true });
});

async function gap(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d) => {
    stdout += d;
  });
  err.on('data', (d) => {
    stderr += d;
  });
  const code = await gapCommand(
    [
      '--policy',
      s.policyFile,
      '--declarations',
      s.declFile,
      '--store',
      s.store,
      '--since',
      new Date(s.from).toISOString(),
      '--until',
      new Date(s.to).toISOString(),
      ...args,
    ],
    { stdout: out, stderr: err },
  );
  return { code, stdout, stderr };
}

interface Row {
  agent: string;
  status: string;
  tool: string;
  rule: { id: string } | null;
  capability: { id: string } | null;
  detail: string[];
  attempts: { total: number; allowed: number; denied: number; asked: number };
  examples: number[];
}

test('rows and statuses are exactly what the agents were declared, permitted and did', async () => {
  const r = await gap(['--json']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as {
    rows: Row[];
    totals: Record<string, number>;
    agents: { id: string; notes: string[] }[];
  };
  const rows = report.rows.map((x) => [
    x.agent,
    x.status,
    x.tool,
    x.rule?.id ?? null,
    x.capability?.id ?? null,
    `${x.attempts.allowed}/${x.attempts.denied}/${x.attempts.asked}`,
  ]);
  assert.deepEqual(rows, [
    ['calc-bot', 'over_permitted', 'everything.get-sum', 'sums', 'small-sums', '2/0/0'],
    ['calc-bot', 'undeclared_attempt', 'everything.get-sum', null, null, '1/0/0'],
    ['idle-bot', 'declared_not_permitted', 'memory.search_nodes', null, 'search-memory', '0/0/0'],
    ['idle-bot', 'unused_permission', 'files.read_text_file', 'idle-files', 'browse-kb', '0/0/0'],
    ['idle-bot', 'aligned', 'files.list_directory', 'idle-files', 'browse-kb', '1/0/0'],
    ['kb-reader', 'aligned', 'files.read_text_file', 'kb-read', 'read-kb', '2/0/0'],
    ['mem-bot', 'undeclared_attempt', 'memory.create_entities', null, null, '0/1/0'],
    ['mem-bot', 'undeclared_attempt', 'memory.delete_entities', null, null, '0/1/0'],
    ['mem-bot', 'aligned', 'memory.read_graph', 'mem-read', 'read-graph', '1/0/0'],
    ['ops-bot', 'aligned', 'everything.echo', 'echo-approval', 'echo', '1/0/1'],
  ]);
  const over = report.rows[0] as Row;
  assert.deepEqual(over.detail, [
    'a: permitted >= 0, <= 1000; declared >= 0, <= 200',
    'b: permitted >= 0, <= 1000; declared >= 0, <= 200',
  ]);
  // Each row links to its records: the undeclared 700 is one of the over-permitted rule's two calls.
  const undeclared = report.rows[1] as Row;
  assert.equal(undeclared.examples.length, 1);
  assert.ok(over.examples.includes(undeclared.examples[0] as number));
  assert.deepEqual(report.agents.find((a) => a.id === 'mem-bot')?.notes, [
    'the policy still holds free-text `documented:` strings; move them with `execlayer declare migrate`',
  ]);
  assert.equal(report.totals.aligned, 4);

  // The text form says the same, with the excess in words.
  const text = await gap([]);
  assert.equal(text.code, 0);
  assert.match(
    text.stdout,
    /over-permitted\s+everything\.get-sum\s+rule sums \(line 8\), declared small-sums; attempts 2 \(2 allowed/,
  );
  assert.match(text.stdout, /a: permitted >= 0, <= 1000; declared >= 0, <= 200/);
  assert.equal((await gap(['--fail-on', 'over-permitted'])).code, 1);
  assert.equal((await gap(['--fail-on', 'unverifiable'])).code, 0);
  assert.equal((await gap(['--fail-on', 'nonsense'])).code, 2);
});

test('an agent filter and a window leave the rest out', async () => {
  const r = await gap(['--json', '--agent', 'kb-reader']);
  const report = JSON.parse(r.stdout) as { rows: Row[] };
  assert.deepEqual(
    report.rows.map((x) => x.status),
    ['aligned'],
  );
  const early = await gapCommand(
    [
      '--policy',
      s.policyFile,
      '--declarations',
      s.declFile,
      '--store',
      s.store,
      '--since',
      '2001-01-01',
      '--until',
      '2001-01-02',
      '--json',
    ],
    { stdout: sink(), stderr: sink() },
  );
  assert.equal(early, 0);
});

test('--suggest narrows and removes, and its replay denies nothing declared', async () => {
  const out = join(s.dir, 'suggested.yaml');
  const r = await gap(['--json', '--suggest', out]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as {
    suggestion: {
      changes: { agent: string; action: string; tool: string }[];
      diff: string;
      replay: {
        newlyDeniedDeclared: number;
        newlyDeniedUndeclared: number;
        replay: { newlyDenied: number; newlyAllowed: number };
      };
    };
  };
  const sug = report.suggestion;
  assert.deepEqual(
    sug.changes.map((c) => `${c.agent} ${c.action} ${c.tool}`),
    ['calc-bot narrow everything.get-sum', 'idle-bot remove files.read_text_file'],
  );
  const candidate = parse(readFileSync(out, 'utf8')) as {
    agents: Record<
      string,
      { rules?: { allow?: unknown; when?: { args?: Record<string, { max?: number }> } }[] }
    >;
  };
  assert.equal(candidate.agents['calc-bot']?.rules?.[0]?.when?.args?.a?.max, 200);
  assert.equal(candidate.agents['idle-bot']?.rules?.[0]?.allow, 'files.list_directory');
  assert.match(
    readFileSync(out, 'utf8'),
    /# reading only; writes are refused by default/,
    'comments are kept',
  );
  assert.match(sug.diff, /^-.*max: 1000/m);
  assert.match(sug.diff, /^\+.*max: 200/m);
  // Replayed: the one call outside the declaration (700) is now denied; nothing declared is.
  assert.equal(sug.replay.replay.newlyDenied, 1);
  assert.equal(sug.replay.newlyDeniedUndeclared, 1);
  assert.equal(sug.replay.newlyDeniedDeclared, 0);
  assert.equal(sug.replay.replay.newlyAllowed, 0);
});

test('bad declarations and policies are named by file:line:column, and nothing is reported', async () => {
  const bad = join(s.dir, 'bad.yaml');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(
    bad,
    'version: 1\nagents:\n  x:\n    owner: a\n    purpose: b\n    capabilities:\n      - { id: c, tools: t, when: { path: { undr: [/x] } } }\n',
  );
  const err = sink();
  let text = '';
  err.on('data', (d) => {
    text += d;
  });
  const code = await gapCommand(['--policy', s.policyFile, '--declarations', bad, '--store', s.store], {
    stdout: sink(),
    stderr: err,
  });
  assert.equal(code, 1);
  assert.match(text, /bad\.yaml:7:\d+: error\[unknown_key\]: unknown key `undr`/);
});

function sink(): PassThrough {
  const p = new PassThrough();
  p.resume();
  return p;
}

test('the export: declared + permitted + attempted as schema-valid JSON and as CycloneDX that imports back', async () => {
  const { Ajv } = await import('ajv');
  const { governanceExportSchema } = await import('../src/governance/export.js');
  const { fromCycloneDx } = await import('../src/governance/import.js');
  const { loadDeclarationTexts } = await import('../src/governance/declaration.js');
  const { stringify } = await import('yaml');
  const json = join(s.dir, 'export.json');
  const bom = join(s.dir, 'export.cdx.json');
  const r = await gap(['--export', json, '--cyclonedx', bom]);
  assert.equal(r.code, 0, r.stderr);
  const exp = JSON.parse(readFileSync(json, 'utf8')) as {
    agents: {
      id: string;
      declared: { id: string }[];
      permitted: { rule: string; when?: { args?: { a?: { max?: number } } } }[];
      attempted: { tool: string; total: number; allowed: number }[];
      gap: { status: string }[];
    }[];
  };
  const validate = new Ajv({ strict: false, formats: { 'date-time': true } }).compile(governanceExportSchema);
  const valid: boolean = validate(structuredClone(exp));
  assert.ok(valid, JSON.stringify(validate.errors));
  const calc = exp.agents.find((a) => a.id === 'calc-bot');
  assert.deepEqual(
    calc?.declared.map((d) => d.id),
    ['small-sums'],
  );
  assert.equal(calc?.permitted[0]?.when?.args?.a?.max, 1000, 'what is enforced, not what was declared');
  assert.deepEqual(calc?.attempted, [
    { tool: 'everything.get-sum', total: 2, allowed: 2, denied: 0, asked: 0 },
  ]);
  assert.deepEqual(
    calc?.gap.map((g) => g.status),
    ['over_permitted', 'undeclared_attempt'],
  );
  // A schema violation is caught: the schema is not vacuous.
  assert.equal(validate({ ...exp, version: 2 }), false);

  const cdx = JSON.parse(readFileSync(bom, 'utf8')) as {
    specVersion: string;
    serialNumber: string;
    components: { name: string; properties: { name: string; value: string }[] }[];
    services: { name: string; 'bom-ref': string; properties: { name: string; value: string }[] }[];
  };
  assert.equal(cdx.specVersion, '1.6');
  assert.match(
    cdx.serialNumber,
    /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  );
  assert.deepEqual(
    cdx.components.map((c) => c.name),
    ['calc-bot', 'idle-bot', 'kb-reader', 'mem-bot', 'ops-bot'],
  );
  const sum = cdx.services.find((x) => x['bom-ref'] === 'tool:calc-bot:everything.get-sum');
  assert.ok(
    sum?.properties.some((p) => p.name === 'execlayer:enforced:sums:when' && p.value.includes('"max":1000')),
  );
  assert.ok(sum?.properties.some((p) => p.name === 'execlayer:gap:status' && p.value === 'over_permitted'));
  // What is enforced imports back as declarations (tools typed, free of the importer's guesses).
  const back = fromCycloneDx(cdx);
  assert.deepEqual(Object.keys(back.file.agents).sort(), [
    'calc-bot',
    'idle-bot',
    'kb-reader',
    'mem-bot',
    'ops-bot',
  ]);
  const loaded = loadDeclarationTexts([{ text: stringify(back.file), file: 'back.yaml' }]);
  assert.ok(loaded.ok);
  assert.deepEqual(
    loaded.declarations.agents.get('mem-bot')?.capabilities.map((c) => c.tools),
    [['memory.create_entities'], ['memory.delete_entities'], ['memory.read_graph']],
  );
  // Same inputs, same bytes.
  const again = join(s.dir, 'export-2.cdx.json');
  await gap(['--cyclonedx', again]);
  assert.equal(readFileSync(again, 'utf8'), readFileSync(bom, 'utf8'));
});
