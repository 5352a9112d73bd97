/**
 * The `approvals` and `agents` commands as an operator runs them: a separate process, real SQLite files,
 * real exit codes and output, and the decision recorded in a real audit log.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { sqliteApprovalStore } from '../src/approvals/sqlite.js';
import type { Approval } from '../src/approvals/types.js';
import { openStore } from '../src/audit/log.js';
import { jsonDigest } from '../src/canonical-json.js';
import { SqliteAgentStateStore } from '../src/state/agent-state.js';

const ROOT = join(import.meta.dirname, '..');

function run(cmd: 'approvals' | 'agents', args: string[], env: Record<string, string> = {}) {
  const fn = cmd === 'approvals' ? 'approvalsCommand' : 'agentsCommand';
  const code = `import { ${fn} } from ${JSON.stringify(join(ROOT, 'src/cli', `${cmd}.ts`))}; process.exitCode = await ${fn}(process.argv.slice(1));`;
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', code, '--', ...args],
    {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, USER: 'op-user', EXECLAYER_STORE: '', EXECLAYER_AUDIT: '', ...env },
    },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'execlayer-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function pending(path: string, over: { ttlMs?: number; approvers?: string[] } = {}): Promise<Approval> {
  const s = sqliteApprovalStore(path);
  const args = { to: 'cfo@partner.com' };
  const a = await s.request(
    {
      agent: 'mail-bot',
      tool: 'email.send',
      argsDigest: jsonDigest(args),
      policy: 'a'.repeat(64),
      rule: 'ask-external',
      reason: 'external recipients need approval',
      args,
      ttlMs: over.ttlMs ?? 900_000,
      uses: 1,
      ...(over.approvers ? { approvers: over.approvers } : {}),
    },
    Date.now(),
  );
  await s.close();
  return a;
}

describe('execlayer approvals', () => {
  it('list, show, approve (recorded in the audit log), then a second decision is refused', async (t) => {
    const dir = tmp(t);
    const db = join(dir, 'a.db');
    const store = `sqlite:${db}`;
    const audit = `sqlite:${join(dir, 'audit.db')}`;
    const a = await pending(db);

    const list = run('approvals', ['list', '--store', store, '--json']);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as Approval[]).map((x) => [x.id, x.status]),
      [[a.id, 'pending']],
    );
    const human = run('approvals', ['list', '--store', store]);
    assert.match(human.stdout, new RegExp(`${a.id}\\s+pending\\s+mail-bot\\s+email.send\\s+in 1[45]m`));

    const show = run('approvals', ['show', a.id, '--store', store]);
    assert.equal(show.code, 0);
    assert.match(show.stdout, /"to": "cfo@partner.com"/);

    const ok = run('approvals', [
      'approve',
      a.id,
      '--note',
      'checked with finance',
      '--store',
      store,
      '--audit',
      audit,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      new RegExp(
        `granted ${a.id} as op-user: mail-bot may call email.send with exactly these arguments once`,
      ),
    );

    const s = sqliteApprovalStore(db);
    const got = await s.get(a.id);
    await s.close();
    assert.equal(got?.status, 'granted');
    assert.equal(got?.approver, 'op-user');
    assert.equal(got?.note, 'checked with finance');

    const log = await openStore(audit);
    const events = (await log.read(0, 10)).map((r) => JSON.parse(r.event ?? 'null'));
    await log.close();
    const granted = events.find((e) => e?.type === 'approval' || e?.event?.type === 'approval');
    assert.ok(granted, `the decision is in the audit log: ${JSON.stringify(events)}`);
    assert.match(JSON.stringify(granted), /"granted"/);
    assert.match(JSON.stringify(granted), /op-user/);

    const again = run('approvals', ['deny', a.id, '--as', 'carol', '--store', store, '--no-audit']);
    assert.equal(again.code, 4);
    assert.match(again.stderr, new RegExp(`approval \`${a.id}\` is already granted`));
  });

  it('exit codes: 4 for unknown, expired or a non-listed approver; 2 for usage; 3 for a broken store', async (t) => {
    const dir = tmp(t);
    const db = join(dir, 'a.db');
    const store = `sqlite:${db}`;
    const missing = run('approvals', ['show', 'apr_00000000000000000000', '--store', store]);
    assert.equal(missing.code, 4);
    const restricted = await pending(db, { approvers: ['security-lead'] });
    const notAllowed = run('approvals', [
      'approve',
      restricted.id,
      '--as',
      'intern',
      '--store',
      store,
      '--no-audit',
    ]);
    assert.equal(notAllowed.code, 4);
    assert.match(notAllowed.stderr, /`intern` may not decide/);
    const short = await pending(join(dir, 'b.db'), { ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    const expired = run('approvals', [
      'approve',
      short.id,
      '--store',
      `sqlite:${join(dir, 'b.db')}`,
      '--no-audit',
    ]);
    assert.equal(expired.code, 4);
    assert.match(expired.stderr, /expired/);
    assert.equal(run('approvals', ['approve', '--store', store]).code, 2);
    assert.equal(run('approvals', ['frobnicate']).code, 2);
    assert.equal(run('approvals', ['list', '--bogus']).code, 2);
    assert.equal(run('approvals', ['list', '--store', 'redis://127.0.0.1:6379']).code, 2);
    const broken = run('approvals', ['list', '--store', `sqlite:${join(dir, 'no', 'such', 'dir.db')}`]);
    assert.equal(broken.code, 3);
    assert.doesNotMatch(broken.stderr, /\n\s+at /, 'no stack trace');
    const help = run('approvals', ['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /exit codes/);
  });
});

describe('execlayer agents', () => {
  it('suspend, list, stop-all, resume-all, resume — visible to the store and recorded', async (t) => {
    const dir = tmp(t);
    const db = join(dir, 's.db');
    const store = `sqlite:${db}`;
    const audit = `sqlite:${join(dir, 'audit.db')}`;
    const sus = run('agents', [
      'suspend',
      'refund-bot',
      '--reason',
      'refund loop',
      '--store',
      store,
      '--audit',
      audit,
    ]);
    assert.equal(sus.code, 0, sus.stderr);
    const state = new SqliteAgentStateStore(db);
    t.after(() => state.close());
    assert.deepEqual(
      { ...(await state.isSuspended('refund-bot')), at: 0 },
      { suspended: true, by: 'op-user', agent: 'refund-bot', at: 0, reason: 'refund loop' },
    );
    assert.equal((await state.isSuspended('other')).suspended, false);

    assert.equal(run('agents', ['stop-all', '--as', 'oncall', '--store', store, '--no-audit']).code, 0);
    assert.equal((await state.isSuspended('other')).suspended, true);
    const list = run('agents', ['list', '--json', '--store', store]);
    assert.deepEqual(
      (JSON.parse(list.stdout) as { agent: string }[]).map((s) => s.agent),
      ['*', 'refund-bot'],
    );
    assert.equal(run('agents', ['resume-all', '--store', store, '--no-audit']).code, 0);
    assert.equal((await state.isSuspended('other')).suspended, false);
    assert.equal(run('agents', ['resume', 'refund-bot', '--store', store, '--audit', audit]).code, 0);
    assert.equal((await state.isSuspended('refund-bot')).suspended, false);
    assert.equal(run('agents', ['resume', 'refund-bot', '--store', store, '--no-audit']).code, 4);

    const log = await openStore(audit);
    const text = (await log.read(0, 10)).map((r) => r.event ?? '').join('\n');
    await log.close();
    assert.match(text, /"suspended"/);
    assert.match(text, /"resumed"/);
    assert.match(text, /refund loop/);
  });

  it('usage errors exit 2; an unreachable redis exits 3 for list', () => {
    assert.equal(run('agents', ['suspend']).code, 2);
    assert.equal(run('agents', ['suspend', '*']).code, 2);
    assert.equal(run('agents', ['list', '--store', 'postgres://x']).code, 2);
    const down = run('agents', ['list', '--store', 'redis://127.0.0.1:1']);
    assert.equal(down.code, 3);
    assert.match(down.stderr, /unavailable/);
  });
});
