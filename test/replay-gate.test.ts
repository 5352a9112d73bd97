// `execlayer replay` can gate CI: replaying the unchanged policy over a real log with suspensions,
// approvals, limits and shadow decisions reports zero changes, and a real change is still reported.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { memoryApprovalStore } from '../src/approvals/memory.js';
import { openAuditLog } from '../src/audit/log.js';
import { MemoryLimitStore } from '../src/limits/memory.js';
import { createExecLayer } from '../src/runtime/exec-layer.js';
import { MemoryAgentStateStore } from '../src/state/agent-state.js';

const exec = promisify(execFile);
const bin = new URL('../bin/execlayer.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'execlayer-replay-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const POLICY = `version: 1
agents:
  bot:
    limits: { calls: 3, per: hour }
    rules:
      - { id: read, allow: db.read }
      - { id: pay, ask: pay.refund }
  trial:
    mode: shadow
    rules:
      - { id: trial-read, allow: db.read, limit: { calls: 1, per: hour } }
`;

async function replayCli(policy: string): Promise<{ code: number; report: Record<string, number> }> {
  const args = [bin, 'replay', '--policy', policy, '--store', `sqlite:${join(dir, 'audit.db')}`];
  try {
    const r = await exec(process.execPath, [...args, '--json', '--fail-on', 'any-change']);
    return { code: 0, report: JSON.parse(r.stdout) };
  } catch (e) {
    const x = e as { code: number; stdout: string };
    return { code: x.code, report: JSON.parse(x.stdout) };
  }
}

test('replaying the unchanged policy over suspensions, approvals, limits and shadow decisions changes nothing', async () => {
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, POLICY);
  const recorder = await openAuditLog(`sqlite:${join(dir, 'audit.db')}`);
  const approvals = memoryApprovalStore();
  const state = new MemoryAgentStateStore();
  const layer = await createExecLayer({ policy, recorder, approvals, state, limits: new MemoryLimitStore() });
  const codes: string[] = [];
  const call = async (agent: string, tool: string, args = {}) => {
    const d = await layer.authorize({ agent, tool, args });
    codes.push(d.code);
    return d;
  };
  await call('bot', 'db.read', { q: 1 });
  await call('bot', 'db.read', { q: 2 });
  const asked = await call('bot', 'pay.refund', { amount: 5 });
  await approvals.decide(
    asked.approvalId as string,
    { approve: true, approver: 'lead@acme.com' },
    Date.now(),
  );
  await call('bot', 'pay.refund', { amount: 5 }); // runs on the grant: counts against the agent limit
  await call('bot', 'db.read', { q: 3 }); // the agent limit of 3 refuses it
  await state.suspend('bot', 'ops@acme.com', 'incident');
  await call('bot', 'db.read', { q: 4 });
  await state.resume('bot', 'ops@acme.com');
  await call('trial', 'db.read', { q: 5 });
  await call('trial', 'db.read', { q: 6 }); // shadow: the limit would refuse it
  await call('trial', 'db.write', { q: 7 }); // shadow: default deny would refuse it
  await layer.close();
  await recorder.close();
  assert.deepEqual(codes, [
    'allowed',
    'allowed',
    'asked',
    'approval_granted',
    'limit_exceeded',
    'suspended',
    'allowed',
    'limit_exceeded',
    'no_matching_rule',
  ]);

  const same = await replayCli(policy);
  assert.equal(same.code, 0, JSON.stringify(same.report));
  assert.equal(same.report.newlyAllowed, 0);
  assert.equal(same.report.newlyDenied, 0);
  assert.equal(same.report.newlyAsked, 0);
  assert.equal(same.report.runtimeRefusals, 1, 'the suspension is not a policy verdict');
  assert.equal(same.report.limited, 2, 'limit refusals are reported apart from rule changes');

  // A real change is still reported: the candidate asks for every read.
  const stricter = join(dir, 'stricter.yaml');
  writeFileSync(stricter, POLICY.replace('{ id: read, allow: db.read }', '{ id: read, ask: db.read }'));
  const changed = await replayCli(stricter);
  assert.equal(changed.code, 1);
  assert.equal(changed.report.newlyAsked, 3);
});
