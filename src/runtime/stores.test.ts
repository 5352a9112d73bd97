import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { openAuditLog } from '../audit/log.js';
import { REDIS_URL, redisAvailable, tempPostgresDatabase, uniqueName } from '../testing/services.js';
import type { AuditEvent } from '../types.js';
import { createExecLayer } from './exec-layer.js';
import { MemoryRecorder } from './stores.js';

test('scale-out: audit trail and approvals on PostgreSQL, limits and the stop switch on Redis', async (t) => {
  const pgUrl = await tempPostgresDatabase(t);
  if (!pgUrl || !(await redisAvailable(t))) return;
  // A unique agent id keeps this test's Redis counters and flags apart from any other run.
  const agent = uniqueName('scaleout');
  t.after(async () => {
    const r = new Redis(REDIS_URL);
    const keys = await r.keys(`*${agent}*`);
    if (keys.length > 0) await r.del(...keys);
    r.disconnect();
  });
  const policy = {
    version: 1,
    agents: {
      [agent]: {
        rules: [
          { id: 'pay', allow: 'pay.refund', limit: { calls: 2, per: 'hour' } },
          { id: 'mail', ask: 'mail.send' },
        ],
      },
    },
  };
  const auditKey = join(mkdtempSync(join(tmpdir(), 'execlayer-stores-')), 'audit.key');
  const store = { audit: pgUrl, approvals: pgUrl, limits: REDIS_URL, state: REDIS_URL, auditKey };
  const a = await createExecLayer({ policy, store });
  const b = await createExecLayer({ policy, store }); // a second replica sharing the same stores
  try {
    const refund = { agent, tool: 'pay.refund', args: {} };
    assert.equal((await a.authorize(refund)).effect, 'allow');
    assert.equal((await b.authorize(refund)).effect, 'allow');
    const third = await a.authorize(refund);
    assert.equal(third.code, 'limit_exceeded', 'two replicas share one counter');
    const ask = await b.authorize({ agent, tool: 'mail.send', args: { to: 'x@example.org' } });
    assert.equal(ask.effect, 'ask');
    assert.ok(ask.approvalId, 'the approval request is stored in PostgreSQL');
  } finally {
    await a.close();
    await b.close();
  }
  const log = await openAuditLog(pgUrl, { keyPath: auditKey });
  const decisions = (await log.tail(50)).filter((r) => r.event?.type === 'decision');
  assert.equal(decisions.length, 4);
  assert.equal((await log.verify()).ok, true);
  await log.close();
});

test('memory recorder: stays bounded and keeps the newest events in order', async () => {
  const rec = new MemoryRecorder({ limit: 3 });
  const ev = (i: number): AuditEvent => ({ type: 'agent', status: 'suspended', agent: `a${i}`, by: 'ops' });
  for (let i = 0; i < 20; i++) {
    await rec.record(ev(i));
    assert.ok(rec.events.length < 6, `at most twice the limit (after ${i + 1}: ${rec.events.length})`);
  }
  const kept = rec.events.map((e) => (e.type === 'agent' ? e.agent : ''));
  assert.deepEqual(kept.slice(-3), ['a17', 'a18', 'a19']);
  assert.equal(rec.dropped + rec.events.length, 20);
  assert.equal(kept[0], `a${rec.dropped}`, 'what is dropped is the oldest');
});
