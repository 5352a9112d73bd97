import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { REDIS_URL, redisAvailable, uniqueName } from '../testing/services.js';
import type { LimitSpec } from '../types.js';
import { limitStoreContract } from './contract.js';
import { MemoryLimitStore } from './memory.js';
import { openLimitStore } from './open.js';
import { RedisLimitStore } from './redis.js';
import { SqliteLimitStore } from './sqlite.js';

const spec: LimitSpec = { id: 'r', kind: 'calls', max: 100, windowMs: 60_000, scope: ['agent'] };
const action = { agent: 'a', tool: 't', args: {} };

async function dropKeys(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  const keys = await r.keys(`${prefix}*`);
  if (keys.length > 0) await r.del(...keys);
  r.disconnect();
}

describe('limit store contract: memory', () => {
  limitStoreContract(it, async (_t, o) => new MemoryLimitStore(o));
});

describe('limit store contract: sqlite', () => {
  limitStoreContract(it, async (t, o) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-lim-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return new SqliteLimitStore(join(dir, 'l.db'), o);
  });
});

describe('limit store contract: redis', () => {
  limitStoreContract(it, async (t, o) => {
    if (!(await redisAvailable(t))) return undefined;
    const prefix = `${uniqueName('test_lim')}:`;
    t.after(() => dropKeys(prefix));
    return RedisLimitStore.open(REDIS_URL, { ...o, prefix });
  });
});

describe('limit stores fail closed', () => {
  it('sqlite: an unopenable file denies with store_error and recovers once the directory exists', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-lim-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const store = new SqliteLimitStore(join(dir, 'missing', 'l.db'), { reopenMs: 0 });
    t.after(() => store.close());
    const r = await store.consume([spec], action, [], Date.now());
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, 'store_error');
    assert.match(!r.ok ? r.reason : '', /limit store unavailable .*denying to fail closed/);
    mkdirSync(join(dir, 'missing'));
    assert.equal((await store.consume([spec], action, [], Date.now())).ok, true);
  });

  it('sqlite: a file locked by another writer denies with store_error, then recovers', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-lim-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'l.db');
    const store = new SqliteLimitStore(path, { busyTimeoutMs: 20 });
    t.after(() => store.close());
    const other = new Database(path);
    other.exec('BEGIN EXCLUSIVE');
    const r = await store.consume([spec], action, [], Date.now());
    assert.equal(!r.ok && r.code, 'store_error');
    assert.match(!r.ok ? r.reason : '', /locked/);
    other.exec('COMMIT');
    other.close();
    assert.equal((await store.consume([spec], action, [], Date.now())).ok, true);
  });

  it('redis: a wrong port denies fast with store_error and never throws', async () => {
    const store = await openLimitStore('redis://127.0.0.1:1', { commandTimeoutMs: 200 });
    const started = Date.now();
    const r = await store.consume([spec], action, [], Date.now());
    assert.equal(!r.ok && r.code, 'store_error');
    assert.ok(Date.now() - started < 1000, 'a down store must fail fast, not hang');
    await store.close();
  });

  it('redis: denies while the connection is cut, allows again when it returns', async (t) => {
    if (!(await redisAvailable(t))) return;
    const target = new URL(REDIS_URL);
    // A real TCP hop between the store and Redis that the test can cut and restore.
    const sockets = new Set<Socket>();
    const listen = (port: number) =>
      new Promise<Server>((resolve) => {
        const srv = createServer((c) => {
          const up = connect(Number(target.port || 6379), target.hostname);
          sockets.add(c).add(up);
          c.pipe(up).pipe(c);
          const drop = () => {
            c.destroy();
            up.destroy();
          };
          c.on('error', drop).on('close', drop);
          up.on('error', drop).on('close', drop);
        });
        srv.listen(port, '127.0.0.1', () => resolve(srv));
      });
    let proxy = await listen(0);
    const port = (proxy.address() as { port: number }).port;
    const prefix = `${uniqueName('test_lim')}:`;
    t.after(() => dropKeys(prefix));
    const store = await RedisLimitStore.open(`redis://127.0.0.1:${port}`, { prefix, commandTimeoutMs: 200 });
    t.after(() => store.close());
    assert.equal((await store.consume([spec], action, [], Date.now())).ok, true);

    await new Promise<void>((resolve) => {
      proxy.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
    const down = await store.consume([spec], action, [], Date.now());
    assert.equal(!down.ok && down.code, 'store_error');

    proxy = await listen(port);
    t.after(() => {
      proxy.close();
      for (const s of sockets) s.destroy();
    });
    let back = false;
    for (let i = 0; i < 60 && !back; i++) {
      back = (await store.consume([spec], action, [], Date.now())).ok;
      if (!back) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(back, 'the store must allow again once Redis is reachable');
  });

  it('openLimitStore rejects an unknown url', async () => {
    await assert.rejects(openLimitStore('mysql://x'), /unsupported limit store url `mysql:\/\/x`/);
  });
});
