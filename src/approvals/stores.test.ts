import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempPostgresDatabase } from '../testing/services.js';
import { approvalStoreContract } from './contract.js';
import { memoryApprovalStore } from './memory.js';
import { openApprovalStore } from './open.js';
import { postgresApprovalStore } from './postgres.js';
import { sqliteApprovalStore } from './sqlite.js';
import { ApprovalError } from './types.js';

const tempDatabase = tempPostgresDatabase;

describe('approval store contract: memory', () => {
  approvalStoreContract(it, async (_t, o) => memoryApprovalStore(o));
});

describe('approval store contract: sqlite', () => {
  approvalStoreContract(it, async (t, o) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-apr-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return sqliteApprovalStore(join(dir, 'a.db'), o);
  });
});

describe('approval store contract: postgres', () => {
  approvalStoreContract(it, async (t, o) => {
    const url = await tempDatabase(t);
    return url === undefined ? undefined : postgresApprovalStore(url, o);
  });
});

describe('approval stores across connections', () => {
  it('postgres: two stores (two replicas) on one database consume a single-use grant once', async (t) => {
    const url = await tempDatabase(t);
    if (url === undefined) return;
    const [a, b] = await Promise.all([postgresApprovalStore(url), postgresApprovalStore(url)]);
    t.after(async () => {
      await a.close();
      await b.close();
    });
    const binding = { agent: 'bot', tool: 'db.query', argsDigest: 'c'.repeat(64), policy: 'd'.repeat(64) };
    const req = {
      ...binding,
      rule: 'r',
      reason: 'why',
      args: { sql: 'DELETE FROM t' },
      ttlMs: 60_000,
      uses: 1,
    };
    const [x, y] = await Promise.all([a.request(req, 1000), b.request(req, 1000)]);
    assert.equal(x.id, y.id, 'replicas group the same call into one approval');
    await b.decide(x.id, { approve: true, approver: 'ops' }, 1000);
    const got = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).consumeGrant(binding, 2000)),
    );
    assert.equal(got.filter((g) => g !== undefined).length, 1);
  });

  it('sqlite: two connections on one file consume a single-use grant once', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-apr-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const a = await openApprovalStore(`sqlite:${join(dir, 'a.db')}`);
    const b = await openApprovalStore(`sqlite:${join(dir, 'a.db')}`);
    t.after(async () => {
      await a.close();
      await b.close();
    });
    const binding = { agent: 'bot', tool: 'db.query', argsDigest: 'c'.repeat(64), policy: 'd'.repeat(64) };
    const x = await a.request(
      { ...binding, rule: 'r', reason: 'why', args: {}, ttlMs: 60_000, uses: 2 },
      1000,
    );
    await b.decide(x.id, { approve: true, approver: 'ops' }, 1000);
    const got = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).consumeGrant(binding, 2000)),
    );
    assert.equal(got.filter((g) => g !== undefined).length, 2);
  });

  it('postgres unreachable: opening fails with a clear error; a lost connection withholds grants', async (t) => {
    await assert.rejects(openApprovalStore('postgres://postgres@127.0.0.1:1/none', { timeoutMs: 500 }));
    const url = await tempDatabase(t);
    if (url === undefined) return;
    const s = await postgresApprovalStore(url);
    const binding = { agent: 'bot', tool: 'db.query', argsDigest: 'c'.repeat(64), policy: 'd'.repeat(64) };
    const x = await s.request(
      { ...binding, rule: 'r', reason: 'why', args: {}, ttlMs: 60_000, uses: 1 },
      1000,
    );
    await s.decide(x.id, { approve: true, approver: 'ops' }, 1000);
    await s.close();
    assert.equal(await s.consumeGrant(binding, 2000), undefined, 'no store, no grant');
    await assert.rejects(s.get(x.id), (e: unknown) => e instanceof ApprovalError && e.code === 'store_error');
  });
});
