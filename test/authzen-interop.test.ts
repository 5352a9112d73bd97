/**
 * AuthZEN interop "Todo" scenario: every case of every decision file, sent over HTTP to the real handler
 * backed by a real ExecLayer with examples/authzen-todo/policy.yaml. Responses must equal the expected
 * result exactly, byte for byte in JSON meaning (the interop runner compares whole bodies).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type RunningApi, startApi } from './http-fixtures.js';

const INTEROP_DIR = process.env.EXECLAYER_AUTHZEN_INTEROP_DIR ?? '/work/shared/authzen';
const FILES = ['00', '01', '02'].map((n) => `decisions-authorization-api-1_0-${n}.json`);
const POLICY = fileURLToPath(new URL('../examples/authzen-todo/policy.yaml', import.meta.url));
const PEP_KEY = 'todo-backend-key';

interface Case<E> {
  request: Record<string, unknown>;
  expected: E;
}
interface DecisionFile {
  evaluation: Case<boolean>[];
  evaluations?: Case<{ decision: boolean }[]>[];
}

describe('authzen interop: todo scenario', {
  skip: !existsSync(INTEROP_DIR) && `no interop files at ${INTEROP_DIR}`,
}, () => {
  let api: RunningApi;
  before(async () => {
    api = await startApi(POLICY, { [PEP_KEY]: { agent: 'todo-backend', roles: ['pdp-client'] } });
  });
  after(async () => {
    await api?.close();
  });

  async function post(path: string, body: unknown): Promise<{ status: number; text: string }> {
    const res = await fetch(`${api.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${PEP_KEY}` },
      body: JSON.stringify(body),
    });
    return { status: res.status, text: await res.text() };
  }

  for (const file of FILES) {
    test(`${file}: every case matches exactly`, async () => {
      const data = JSON.parse(readFileSync(join(INTEROP_DIR, file), 'utf8')) as DecisionFile;
      assert.ok(data.evaluation.length > 0, 'the decision file has cases');
      const before = api.recorder.decisions().length;
      let sent = 0;
      const failures: string[] = [];
      for (const [i, c] of data.evaluation.entries()) {
        const r = await post('/access/v1/evaluation', c.request);
        sent += 1;
        assert.equal(r.status, 200, `evaluation[${i}] status (${r.text})`);
        const got = JSON.parse(r.text);
        try {
          assert.deepStrictEqual(got, { decision: c.expected });
        } catch {
          failures.push(`evaluation[${i}] ${JSON.stringify(c.request)} => ${r.text}, expected ${c.expected}`);
        }
      }
      for (const [i, c] of (data.evaluations ?? []).entries()) {
        const r = await post('/access/v1/evaluations', c.request);
        sent += c.expected.length;
        assert.equal(r.status, 200, `evaluations[${i}] status (${r.text})`);
        try {
          assert.deepStrictEqual(JSON.parse(r.text), { evaluations: c.expected });
        } catch {
          failures.push(`evaluations[${i}] => ${r.text}, expected ${JSON.stringify(c.expected)}`);
        }
      }
      assert.deepEqual(failures, []);
      // Every evaluation was decided by the engine and recorded as an AuthZEN decision.
      const recorded = api.recorder.decisions().slice(before);
      assert.equal(recorded.length, sent);
      assert.ok(recorded.every((e) => e.point === 'authzen'));
    });
  }

  test('the policy decides by role and ownership, not by accident: a flipped owner flips the answer', async () => {
    const morty = 'CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs';
    const req = (owner: string) => ({
      subject: { type: 'user', id: morty },
      action: { name: 'can_delete_todo' },
      resource: { type: 'todo', id: 't1', properties: { ownerID: owner } },
    });
    assert.equal(
      (await post('/access/v1/evaluation', req('morty@the-citadel.com'))).text,
      '{"decision":true}',
    );
    assert.equal(
      (await post('/access/v1/evaluation', req('rick@the-citadel.com'))).text,
      '{"decision":false}',
    );
    // An unknown user is denied (default deny), not an error.
    const unknown = await post('/access/v1/evaluation', {
      ...req('x'),
      subject: { type: 'user', id: 'nobody' },
    });
    assert.equal(unknown.text, '{"decision":false}');
  });
});
