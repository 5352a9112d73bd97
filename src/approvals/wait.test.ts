import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { jsonDigest } from '../canonical-json.js';
import { memoryApprovalStore } from './memory.js';
import { sqliteApprovalStore } from './sqlite.js';
import { waitForDecision } from './wait.js';

const req = {
  agent: 'bot',
  tool: 'db.query',
  argsDigest: jsonDigest({ sql: 'DELETE FROM t' }),
  policy: 'e'.repeat(64),
  rule: 'r',
  reason: 'writes need approval',
  args: { sql: 'DELETE FROM t' },
  ttlMs: 60_000,
  uses: 1,
};

describe('waitForDecision', () => {
  it('waits, reports progress, and returns granted once an approver approves', async () => {
    const store = memoryApprovalStore();
    const a = await store.request(req, Date.now());
    const progress: number[] = [];
    setTimeout(() => void store.decide(a.id, { approve: true, approver: 'ops' }, Date.now()), 120);
    const r = await waitForDecision(store, a.id, {
      timeoutMs: 5000,
      pollMs: 20,
      onProgress: (p) => progress.push(p.elapsedMs),
    });
    assert.equal(r.outcome, 'granted');
    assert.equal(r.approval?.approver, 'ops');
    assert.ok(progress.length >= 2, 'progress was sent while waiting');
  });

  it('returns denied, expired, timeout, aborted and not_found as such', async () => {
    const store = memoryApprovalStore();
    const d = await store.request({ ...req, session: 'd' }, Date.now());
    setTimeout(() => void store.decide(d.id, { approve: false, approver: 'ops' }, Date.now()), 30);
    assert.equal((await waitForDecision(store, d.id, { timeoutMs: 2000, pollMs: 10 })).outcome, 'denied');

    const e = await store.request({ ...req, session: 'e', ttlMs: 80 }, Date.now());
    assert.equal((await waitForDecision(store, e.id, { timeoutMs: 2000, pollMs: 10 })).outcome, 'expired');

    const p = await store.request({ ...req, session: 'p' }, Date.now());
    const started = Date.now();
    const tr = await waitForDecision(store, p.id, { timeoutMs: 100, pollMs: 30 });
    assert.equal(tr.outcome, 'timeout');
    assert.ok(Date.now() - started < 500);
    assert.equal(tr.approval?.status, 'pending');

    const ac = new AbortController();
    setTimeout(() => ac.abort(), 40);
    assert.equal(
      (await waitForDecision(store, p.id, { timeoutMs: 5000, pollMs: 1000, signal: ac.signal })).outcome,
      'aborted',
    );

    assert.equal((await waitForDecision(store, 'apr_missing', { timeoutMs: 100 })).outcome, 'not_found');
  });

  it('a store that fails keeps the call waiting, reports the error and never grants', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-wait-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const store = sqliteApprovalStore(join(dir, 'a.db'));
    const a = await store.request(req, Date.now());
    await store.decide(a.id, { approve: true, approver: 'ops' }, Date.now());
    await store.close();
    const r = await waitForDecision(store, a.id, { timeoutMs: 60, pollMs: 10 });
    assert.equal(r.outcome, 'timeout');
    assert.equal((r.error as { code?: string } | undefined)?.code, 'store_error');
  });
});
