import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { makeLabel } from '../flows/label.js';
import { REDIS_URL, redisAvailable, uniqueName } from '../testing/services.js';
import { sessionStoreContract } from './contract.js';
import { MemorySessionStore } from './memory.js';
import { openSessionStore } from './open.js';
import { RedisSessionStore } from './redis.js';
import { SqliteSessionStore } from './sqlite.js';

async function dropKeys(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  const keys = await r.keys(`${prefix}*`);
  if (keys.length > 0) await r.del(...keys);
  r.disconnect();
}

describe('session store contract: memory', () => {
  sessionStoreContract(it, async (_t, o) => new MemorySessionStore(o));
});

describe('session store contract: sqlite', () => {
  sessionStoreContract(it, async (t, o) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-flow-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return new SqliteSessionStore(join(dir, 's.db'), o);
  });
});

describe('session store contract: redis', () => {
  sessionStoreContract(it, async (t, o) => {
    if (!(await redisAvailable(t))) return undefined;
    const prefix = `${uniqueName('test_flow')}:`;
    t.after(() => dropKeys(prefix));
    return RedisSessionStore.open(REDIS_URL, { ...o, prefix });
  });
});

describe('session stores fail closed', () => {
  it('redis: a wrong port rejects fast, never hangs', async () => {
    const store = await openSessionStore('redis://127.0.0.1:1', { commandTimeoutMs: 200 });
    const started = Date.now();
    const d = {
      id: 'x:y',
      decisionId: 'x',
      tool: 't',
      resultDigest: 'y',
      at: 1,
      label: makeLabel({ integrity: 'trusted', level: 0 }),
    };
    await assert.rejects(store.append('s', d));
    await assert.rejects(store.load('s'));
    assert.ok(Date.now() - started < 1500, 'a down store must fail fast');
    await store.close();
  });

  it('sqlite: two processes sharing a file see each other’s deltas', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-flow-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const a = new SqliteSessionStore(join(dir, 's.db'));
    const b = new SqliteSessionStore(join(dir, 's.db'));
    t.after(async () => {
      await a.close();
      await b.close();
    });
    const label = makeLabel({ integrity: 'untrusted', level: 1 });
    await a.append('s', { id: '1:a', decisionId: '1', tool: 't', resultDigest: 'a', at: 1, label });
    assert.deepEqual((await b.load('s')).deltas[0]?.label, label);
  });

  it('openSessionStore rejects an unknown url', async () => {
    await assert.rejects(openSessionStore('mysql://x'), /unsupported session store url `mysql:\/\/x`/);
  });
});
