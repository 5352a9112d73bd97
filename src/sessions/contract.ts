/**
 * The one contract every SessionStore passes. `stores.test.ts` runs it against memory, SQLite and Redis.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { makeLabel } from '../flows/label.js';
import { type FlowDelta, foldState, MAX_DELTAS, sessionScope } from '../flows/state.js';
import type { SessionStore, SessionStoreOptions } from './types.js';

/** Creates a fresh, empty store; `undefined` means the backend is unavailable and the test skipped. */
export type SessionStoreFactory = (
  t: TestContext,
  options: SessionStoreOptions,
) => Promise<SessionStore | undefined>;

type It = (name: string, fn: (t: TestContext) => Promise<void>) => unknown;

const scope = sessionScope({ agent: 'mail-bot', onBehalfOf: 'alice', session: 's1' });

function delta(n: number, over: Partial<FlowDelta> = {}): FlowDelta {
  const resultDigest = `d${n}`;
  return {
    id: `dec${n}:${resultDigest}`,
    decisionId: `dec${n}`,
    tool: 'mail.read',
    resultDigest,
    at: 1_000 + n,
    label: makeLabel({ integrity: 'trusted', level: 0 }),
    ...over,
  };
}

/** Registers the contract tests for one backend. */
export function sessionStoreContract(it: It, factory: SessionStoreFactory): void {
  const use = async (t: TestContext, options: SessionStoreOptions = {}) => {
    const s = await factory(t, options);
    if (s !== undefined) t.after(() => s.close());
    return s;
  };

  it('an unknown session has nothing stored', async (t) => {
    const s = await use(t);
    if (!s) return;
    assert.deepEqual(await s.load(scope), { deltas: [], endorsements: [] });
  });

  it('round-trips deltas exactly and ignores a repeated delta id', async (t) => {
    const s = await use(t);
    if (!s) return;
    const untrusted = delta(1, {
      label: makeLabel({ integrity: 'untrusted', level: 2, readers: ['acme.com'], tags: ['web'] }),
      seen: { senders: ['bob@acme.com'] },
      steps: [['no-mail-after-web', 1]],
    });
    await s.append(scope, untrusted);
    await s.append(scope, untrusted);
    await s.append(scope, delta(2));
    const r = await s.load(scope);
    assert.equal(r.deltas.length, 2);
    assert.deepEqual(
      r.deltas.find((d) => d.id === untrusted.id),
      untrusted,
    );
  });

  it('sessions are isolated by agent, principal and session id', async (t) => {
    const s = await use(t);
    if (!s) return;
    await s.append(scope, delta(1, { label: makeLabel({ integrity: 'untrusted', level: 0 }) }));
    for (const other of [
      sessionScope({ agent: 'mail-bot', onBehalfOf: 'mallory', session: 's1' }),
      sessionScope({ agent: 'other-bot', onBehalfOf: 'alice', session: 's1' }),
      sessionScope({ agent: 'mail-bot', onBehalfOf: 'alice', session: 's2' }),
      sessionScope({ agent: 'mail-bot', onBehalfOf: 'alice' }),
    ]) {
      assert.deepEqual((await s.load(other)).deltas, [], other);
    }
  });

  it('writes commute: the same deltas in any order fold to the same state', async (t) => {
    const a = await use(t);
    const b = await use(t);
    if (!a || !b) return;
    const ds = [
      delta(1, { label: makeLabel({ integrity: 'untrusted', level: 0 }), steps: [['r', 1]] }),
      delta(2, { label: makeLabel({ integrity: 'trusted', level: 2, readers: ['acme.com'] }) }),
      delta(3, {
        label: makeLabel({ integrity: 'trusted', level: 1, readers: ['bob@acme.com'] }),
        seen: { s: ['X'] },
      }),
    ];
    for (const d of ds) await a.append(scope, d);
    for (const d of [...ds].reverse()) await b.append(scope, d);
    const fa = foldState(await a.load(scope), 4);
    const fb = foldState(await b.load(scope), 4);
    assert.deepEqual(fa, fb);
    assert.deepEqual(fa.label, { integrity: 'untrusted', level: 2, readers: ['bob@acme.com'], tags: [] });
    assert.deepEqual([...(fa.seen.get('s') ?? [])], ['x']);
  });

  it('an endorsement bound to one result digest lifts only that result', async (t) => {
    const s = await use(t);
    if (!s) return;
    await s.append(scope, delta(1, { label: makeLabel({ integrity: 'untrusted', level: 0 }) }));
    await s.append(scope, delta(2, { label: makeLabel({ integrity: 'untrusted', level: 0 }) }));
    await s.endorse(scope, { resultDigest: 'd1', approvalId: 'ap1', at: 5000, integrity: 'trusted' });
    await s.endorse(scope, { resultDigest: 'd1', approvalId: 'ap1', at: 5000, integrity: 'trusted' });
    assert.equal((await s.load(scope)).endorsements.length, 1);
    assert.equal(foldState(await s.load(scope), 4).label.integrity, 'untrusted', 'd2 still taints');
    await s.endorse(scope, { resultDigest: 'd2', approvalId: 'ap2', at: 5001, integrity: 'trusted' });
    assert.equal(foldState(await s.load(scope), 4).label.integrity, 'trusted');
  });

  it('an idle session is forgotten', async (t) => {
    const s = await use(t, { idleMs: 50 });
    if (!s) return;
    await s.append(scope, delta(1));
    assert.equal((await s.load(scope)).deltas.length, 1);
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual((await s.load(scope)).deltas, []);
  });

  it('past the cap a session stays saturated: the fold is the most restrictive label', async (t) => {
    const s = await use(t);
    if (!s) return;
    for (let i = 0; i <= MAX_DELTAS + 3; i++) await s.append(scope, delta(i));
    const r = await s.load(scope);
    assert.equal(r.deltas.length, MAX_DELTAS + 1, 'one past the cap is kept, no more');
    const f = foldState(r, 4);
    assert.equal(f.saturated, true);
    assert.deepEqual(f.label, { integrity: 'untrusted', level: 3, readers: [], tags: [] });
  });

  it('a closed store rejects instead of answering', async (t) => {
    const s = await factory(t, {});
    if (!s) return;
    await s.close();
    await assert.rejects(s.load(scope));
    await assert.rejects(s.append(scope, delta(1)));
  });
}
