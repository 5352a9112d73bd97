import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

test('execlayer demo: the README main job decides every step as the policy says and verifies the audit trail', async () => {
  const { stdout } = await run(process.execPath, ['bin/execlayer.js', 'demo', '--json'], {
    timeout: 120_000,
  });
  const r = JSON.parse(stdout) as {
    ok: boolean;
    steps: { step: string; expected: string; got: string; detail: string }[];
    audit: { records: number; verified: boolean };
  };
  assert.equal(r.ok, true, stdout);
  assert.deepEqual(
    r.steps.map((s) => s.got),
    ['allow', 'deny', 'deny', 'deny', 'deny', 'deny'],
  );
  assert.match(r.steps[4]?.detail ?? '', /the file was not written/);
  assert.equal(
    existsSync('/tmp/execlayer-demo/kb/new.md'),
    false,
    'the denied write never reached the filesystem server',
  );
  assert.equal(r.audit.verified, true);
  assert.ok(r.audit.records >= r.steps.length);
});
