import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { REDIS_URL, redisAvailable, uniqueName } from '../testing/services.js';
import type { AuditEvent, Recorder } from '../types.js';
import { AgentStateError, type AgentStateStore, type AgentStateStoreOptions } from './agent-state.js';
import { openAgentStateStore } from './open.js';

type Factory = (t: TestContext, o: AgentStateStoreOptions) => Promise<AgentStateStore | undefined>;

function recorder(): Recorder & { events: AuditEvent[] } {
  const events: AuditEvent[] = [];
  return { events, record: async (e) => void events.push(e) };
}

function contract(factory: Factory): void {
  const use = async (t: TestContext, o: AgentStateStoreOptions = {}) => {
    const s = await factory(t, o);
    if (s) t.after(() => s.close());
    return s;
  };

  it('suspend stops one agent, resume lifts it, events are recorded', async (t) => {
    const rec = recorder();
    const s = await use(t, { recorder: rec, now: () => 1000 });
    if (!s) return;
    assert.deepEqual(await s.isSuspended('bot'), { suspended: false });
    await s.suspend('bot', 'alice', 'refund loop');
    const st = await s.isSuspended('bot');
    assert.equal(st.suspended, true);
    assert.equal(st.by, 'alice');
    assert.equal(st.reason, 'refund loop');
    assert.equal((await s.isSuspended('other')).suspended, false);
    assert.deepEqual(await s.list(), [{ agent: 'bot', by: 'alice', reason: 'refund loop', at: 1000 }]);
    assert.equal(await s.resume('bot', 'bob'), true);
    assert.equal(await s.resume('bot', 'bob'), false);
    assert.equal((await s.isSuspended('bot')).suspended, false);
    assert.deepEqual(rec.events, [
      { type: 'agent', status: 'suspended', agent: 'bot', by: 'alice', reason: 'refund loop' },
      { type: 'agent', status: 'resumed', agent: 'bot', by: 'bob' },
    ]);
  });

  it('the global stop `*` suspends every agent until resumed', async (t) => {
    const s = await use(t);
    if (!s) return;
    await s.suspend('*', 'oncall', 'incident');
    for (const a of ['bot', 'x', '*']) {
      const st = await s.isSuspended(a);
      assert.equal(st.suspended, true);
      assert.equal(st.agent, '*');
    }
    assert.match((await s.isSuspended('bot')).reason ?? '', /^all agents are stopped: incident$/);
    await s.suspend('bot', 'alice');
    await s.resume('*', 'oncall');
    assert.equal((await s.isSuspended('x')).suspended, false);
    assert.equal((await s.isSuspended('bot')).suspended, true, 'an own suspension outlives resume-all');
  });

  it('rejects an empty agent id and reports a failed recording', async (t) => {
    const s = await use(t, { recorder: { record: async () => Promise.reject(new Error('disk full')) } });
    if (!s) return;
    await assert.rejects(
      s.suspend('', 'a'),
      (e: unknown) => e instanceof AgentStateError && e.code === 'invalid_agent',
    );
    await assert.rejects(
      s.suspend('bot', 'a'),
      (e: unknown) => e instanceof AgentStateError && e.code === 'record_failed',
    );
    assert.equal((await s.isSuspended('bot')).suspended, true, 'the suspension itself still applies');
  });
}

describe('agent state contract: memory', () => contract(async (_t, o) => openAgentStateStore('memory:', o)));

describe('agent state contract: sqlite', () =>
  contract(async (t, o) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-state-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return openAgentStateStore(`sqlite:${join(dir, 's.db')}`, o);
  }));

describe('agent state contract: redis', () =>
  contract(async (t, o) => {
    if (!(await redisAvailable(t))) return undefined;
    const prefix = `${uniqueName('test_state')}:`;
    t.after(async () => {
      const r = new Redis(REDIS_URL);
      await r.del(`${prefix}suspended`);
      r.disconnect();
    });
    return openAgentStateStore(REDIS_URL, { ...o, prefix });
  }));

describe('agent state fails closed', () => {
  it('redis down: every agent reads as suspended, quickly', async () => {
    const s = await openAgentStateStore('redis://127.0.0.1:1', { commandTimeoutMs: 200 });
    const st = await s.isSuspended('bot');
    assert.equal(st.suspended, true);
    assert.match(st.reason ?? '', /agent state store unavailable .*fail closed/);
    await assert.rejects(
      s.suspend('bot', 'a'),
      (e: unknown) => e instanceof AgentStateError && e.code === 'store_error',
    );
    await s.close();
  });

  it('sqlite locked by another writer: a read still works (WAL), a write fails with store_error', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-state-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 's.db');
    const s = await openAgentStateStore(`sqlite:${path}`, { busyTimeoutMs: 20 });
    t.after(() => s.close());
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    other.prepare("INSERT INTO agent_state VALUES ('bot', 'x', NULL, 1)").run();
    assert.equal((await s.isSuspended('bot')).suspended, false, 'uncommitted suspension is not yet visible');
    await assert.rejects(
      s.suspend('bot', 'a'),
      (e: unknown) => e instanceof AgentStateError && e.code === 'store_error',
    );
    other.exec('COMMIT');
    other.close();
    assert.equal((await s.isSuspended('bot')).suspended, true);
  });

  it('sqlite: a process sees another one suspend and resume on its very next read', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-state-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 's.db');
    const a = await openAgentStateStore(`sqlite:${path}`);
    const b = await openAgentStateStore(`sqlite:${path}`);
    t.after(() => Promise.all([a.close(), b.close()]));
    // Answers between commits are cached; each commit by another connection must end that.
    for (let round = 0; round < 3; round++) {
      assert.equal((await a.isSuspended('bot')).suspended, false);
      assert.equal((await a.isSuspended('bot')).suspended, false);
      await b.suspend('bot', 'ops', `round ${round}`);
      assert.deepEqual(await a.isSuspended('bot'), {
        suspended: true,
        by: 'ops',
        agent: 'bot',
        at: (await b.list())[0]!.at,
        reason: `round ${round}`,
      });
      assert.equal(await b.resume('bot', 'ops'), true);
    }
    await a.suspend('*', 'ops');
    assert.equal((await a.isSuspended('bot')).suspended, true, 'its own write is seen at once');
    assert.equal((await b.isSuspended('bot')).suspended, true);
  });

  it('sqlite unreadable (dropped table): reads as suspended', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'execlayer-state-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 's.db');
    const s = await openAgentStateStore(`sqlite:${path}`);
    t.after(() => s.close());
    assert.equal((await s.isSuspended('bot')).suspended, false, 'answer cached before the drop');
    const other = new Database(path);
    other.exec('DROP TABLE agent_state');
    other.close();
    assert.equal((await s.isSuspended('bot')).suspended, true);
  });
});
