// `execlayer declare`: validate, import and migrate through the command, in process; what it writes loads,
// bad input is named with its place, and the retention floor follows the declarations.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { declareCommand } from '../src/cli/declare.js';
import {
  HIGH_RISK_RETENTION_MS,
  loadDeclarationFiles,
  retentionFloorMs,
} from '../src/governance/declaration.js';

const dir = mkdtempSync(join(tmpdir(), 'execlayer-declare-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
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
  const code = await declareCommand(args, { stdout: out, stderr: err });
  return { code, stdout, stderr };
}

test('migrate moves the documented strings into a declaration that validates', async () => {
  const out = join(dir, 'support.yaml');
  const r = await run(['migrate', '--policy', 'examples/support/policy.yaml', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /note: support-bot\/small-refunds: free text `small refunds`/);
  const v = await run(['validate', out]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^ok: 1 agent\(s\) declared in 1 file\(s\)/);
  const loaded = await loadDeclarationFiles([out]);
  assert.ok(loaded.ok);
  assert.equal(loaded.declarations.agents.get('support-bot')?.owner, 'support-platform@acme.com');
});

test('import reads a register through a field map; bad input is named', async () => {
  const csv = join(dir, 'register.csv');
  const map = join(dir, 'map.json');
  writeFileSync(
    csv,
    'id,owner,use,high,role,keep\nrisky-bot,risk@acme.com,credit scoring,yes,deployer,365\n',
  );
  writeFileSync(
    map,
    JSON.stringify({
      agent: 'id',
      owner: 'owner',
      purpose: 'use',
      high_risk: 'high',
      eu_ai_act_role: 'role',
      retention: 'keep',
    }),
  );
  const out = join(dir, 'register.yaml');
  const r = await run(['import', '--from', 'csv', csv, '--map', map, '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const loaded = await loadDeclarationFiles([out]);
  assert.ok(loaded.ok);
  assert.deepEqual(loaded.declarations.agents.get('risky-bot')?.risk, {
    euAiAct: { role: 'deployer', highRisk: true },
  });
  assert.equal(retentionFloorMs(loaded.declarations), 365 * 24 * 60 * 60 * 1000);

  // A high-risk agent with a short retention does not load, so it is never written.
  writeFileSync(csv, 'id,owner,use,high,role,keep\nrisky-bot,risk@acme.com,credit scoring,yes,deployer,30\n');
  const short = await run(['import', '--from', 'csv', csv, '--map', map, '--out', join(dir, 'short.yaml')]);
  assert.equal(short.code, 1);
  assert.match(short.stderr, /retention_too_short/);

  const bad = await run(['import', '--from', 'a2a', map]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /agent card `name`: `` is not a valid agent id/);
  assert.equal((await run(['import', '--from', 'xml', map])).code, 2);
  assert.equal((await run(['validate', join(dir, 'missing.yaml')])).code, 1);
});

test('the retention floor is six months once any agent is high-risk', async () => {
  const f = join(dir, 'hr.yaml');
  writeFileSync(
    f,
    'version: 1\nagents:\n  a: { owner: o, purpose: p, risk: { eu_ai_act: { role: deployer, high_risk: true } } }\n  b: { owner: o, purpose: p }\n',
  );
  const r = await loadDeclarationFiles([f]);
  assert.ok(r.ok);
  assert.equal(retentionFloorMs(r.declarations), HIGH_RISK_RETENTION_MS);
  writeFileSync(f, 'version: 1\nagents:\n  b: { owner: o, purpose: p }\n');
  const none = await loadDeclarationFiles([f]);
  assert.ok(none.ok);
  assert.equal(retentionFloorMs(none.declarations), 0);
});
