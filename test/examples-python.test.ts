// Runs examples/python/pep.py (standard library only) against the real decision API: the allowed export
// runs and its outcome is recorded with the digest the server would compute, the large one is refused
// with the policy's reason and never runs. Needs python3; skipped with a message without it, except
// under CI=true.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { jsonDigest } from '../src/canonical-json.js';
import { parseConfig } from '../src/config/load.js';
import { type RunningApi, startApi } from './http-fixtures.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function hasPython(): boolean {
  try {
    execFileSync('python3', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const python = hasPython();
if (!python && process.env.CI === 'true') throw new Error('python3 is required under CI=true');
const skip = python ? false : 'python3 is not on PATH: the Python example is not run';

describe('examples/python/pep.py', { skip }, () => {
  let api: RunningApi;
  before(async () => {
    // The example ships with its policy and gateway config; the test runs exactly that policy.
    const policy = parse(readFileSync(`${root}examples/python/policy.yaml`, 'utf8'));
    const configFile = `${root}examples/python/execlayer.yaml`;
    const config = parseConfig(readFileSync(configFile, 'utf8'), configFile);
    assert.equal(config.auth.apiKeys[0]?.agent, 'report-bot');
    api = await startApi(policy, { 'k-python': { agent: 'report-bot' } });
  });
  after(async () => {
    await api?.close();
  });

  it('runs only the allowed action and reports its outcome with the same result digest', async () => {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        'python3',
        ['examples/python/pep.py'],
        {
          cwd: root,
          encoding: 'utf8',
          timeout: 60_000,
          env: { ...process.env, EXECLAYER_URL: api.url, EXECLAYER_KEY: 'k-python' },
        },
        (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
      );
    });
    const lines = stdout.trim().split('\n');
    assert.equal(
      lines[0],
      'allowed reports.export rows=10: {"exported": 10, "format": "csv"} (outcome recorded)',
    );
    assert.match(lines[1] ?? '', /^refused reports\.export rows=1000: .*small-exports/);
    const decisions = api.recorder.decisions();
    assert.deepEqual(
      decisions.map((e) => e.decision.effect),
      ['allow', 'deny'],
    );
    const outcomes = api.recorder.events.filter((e) => e.type === 'outcome');
    assert.equal(outcomes.length, 1, 'one outcome, for the allowed action only');
    assert.equal(outcomes[0]?.decisionId, decisions[0]?.decision.id);
    assert.equal(outcomes[0]?.ok, true);
    assert.equal(outcomes[0]?.resultDigest, jsonDigest({ exported: 10, format: 'csv' }));
  });
});
