/**
 * The one contract every ApprovalStore passes. `stores.test.ts` runs it against memory, SQLite and
 * PostgreSQL.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { jsonDigest } from '../canonical-json.js';
import type { ApprovalEvent, AuditEvent } from '../types.js';
import {
  type Approval,
  ApprovalError,
  type ApprovalRequest,
  type ApprovalStore,
  type ApprovalStoreOptions,
} from './types.js';

/** Creates a fresh, empty store; `undefined` means the backend is unavailable and the test skipped. */
export type ApprovalStoreFactory = (
  t: TestContext,
  options: ApprovalStoreOptions,
) => Promise<ApprovalStore | undefined>;

type It = (name: string, fn: (t: TestContext) => Promise<void>) => unknown;

const T0 = Date.UTC(2025, 0, 15, 10, 0, 0);
const MIN = 60_000;
const POLICY = 'a'.repeat(64);

function req(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  const args = { to: 'cfo@partner.com', subject: 'Q3 numbers' };
  return {
    agent: 'mail-bot',
    tool: 'email.send',
    argsDigest: jsonDigest(args),
    policy: POLICY,
    session: 's1',
    onBehalfOf: 'alice',
    rule: 'support/ask-external-mail',
    reason: 'external recipients need approval',
    args,
    ttlMs: 15 * MIN,
    uses: 1,
    ...over,
  };
}

const bindingOf = (r: ApprovalRequest) => ({
  agent: r.agent,
  tool: r.tool,
  argsDigest: r.argsDigest,
  policy: r.policy,
  ...(r.session === undefined ? {} : { session: r.session }),
});

function code(c: ApprovalError['code']) {
  return (e: unknown) => {
    assert.ok(e instanceof ApprovalError, `expected ApprovalError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

/** Registers the contract tests for one backend. */
export function approvalStoreContract(it: It, factory: ApprovalStoreFactory): void {
  const use = async (t: TestContext, options: ApprovalStoreOptions = {}) => {
    const s = await factory(t, options);
    if (s !== undefined) t.after(() => s.close());
    return s;
  };
  const recorder = () => {
    const events: ApprovalEvent[] = [];
    return { events, record: async (e: AuditEvent) => void events.push(e as ApprovalEvent) };
  };

  it('request creates one pending approval bound to the call, groups identical requests, notifies once', async (t) => {
    const rec = recorder();
    const notified: Approval[] = [];
    const s = await use(t, { recorder: rec, notifier: { notify: (a) => notified.push(a) } });
    if (!s) return;
    const a = await s.request({ ...req(), decisionId: 'dec-1' }, T0);
    assert.match(a.id, /^apr_[0-9a-f]{20}$/);
    assert.equal(a.status, 'pending');
    assert.equal(a.expiresAt, T0 + 15 * MIN);
    assert.deepEqual(a.args, { to: 'cfo@partner.com', subject: 'Q3 numbers' });
    const again = await s.request({ ...req(), decisionId: 'dec-2' }, T0 + 1000);
    assert.equal(again.id, a.id, 'the same binding while pending returns the same approval');
    const other = await s.request(req({ session: 's2' }), T0);
    assert.notEqual(other.id, a.id);
    const otherArgs = await s.request(req({ argsDigest: jsonDigest({ to: 'x@y.z' }) }), T0);
    assert.notEqual(otherArgs.id, a.id);
    assert.deepEqual(
      notified.map((n) => n.id),
      [a.id, other.id, otherArgs.id],
    );
    assert.deepEqual(rec.events[0], {
      type: 'approval',
      status: 'requested',
      approvalId: a.id,
      decisionId: 'dec-1',
      agent: 'mail-bot',
      tool: 'email.send',
      argsDigest: a.argsDigest,
    });
    assert.equal(rec.events.length, 3);
    const got = await s.get(a.id, T0);
    assert.deepEqual(got, a);
  });

  it('a grant is used once by exactly the same call, and records approver and use', async (t) => {
    const rec = recorder();
    const s = await use(t, { recorder: rec });
    if (!s) return;
    const r = req();
    const a = await s.request(r, T0);
    assert.equal(await s.consumeGrant(bindingOf(r), T0), undefined, 'pending is not granted');
    const g = await s.decide(a.id, { approve: true, approver: 'bob', note: 'ok for Q3' }, T0 + MIN);
    assert.equal(g.status, 'granted');
    assert.equal(g.approver, 'bob');
    assert.equal(g.expiresAt, T0 + MIN + 15 * MIN, 'a grant lives ttl from the decision');
    const used = await s.consumeGrant({ ...bindingOf(r), decisionId: 'dec-9' }, T0 + 2 * MIN);
    assert.equal(used?.id, a.id);
    assert.equal(used?.status, 'used');
    assert.equal(await s.consumeGrant(bindingOf(r), T0 + 2 * MIN), undefined, 'single use');
    assert.equal((await s.get(a.id, T0 + 2 * MIN))?.status, 'used');
    assert.deepEqual(
      rec.events.map((e) => [e.status, e.approver, e.note, e.decisionId]),
      [
        ['requested', undefined, undefined, undefined],
        ['granted', 'bob', 'ok for Q3', undefined],
        ['used', undefined, undefined, 'dec-9'],
      ],
    );
  });

  it('a grant never covers other arguments, another policy, agent, tool or session', async (t) => {
    const s = await use(t);
    if (!s) return;
    const r = req();
    const a = await s.request(r, T0);
    await s.decide(a.id, { approve: true, approver: 'bob' }, T0);
    const b = bindingOf(r);
    const { session: _s, ...noSession } = b;
    for (const wrong of [
      { ...b, argsDigest: jsonDigest({ to: 'cfo@partner.com', subject: 'Q3 numbers', bcc: 'x@evil.com' }) },
      { ...b, policy: 'b'.repeat(64) },
      { ...b, agent: 'other-bot' },
      { ...b, tool: 'email.send_bulk' },
      { ...b, session: 's2' },
      noSession,
    ]) {
      assert.equal(await s.consumeGrant(wrong, T0), undefined, JSON.stringify(wrong));
    }
    assert.equal((await s.consumeGrant(b, T0))?.id, a.id, 'the right call still gets its grant');
  });

  it('uses > 1 allows exactly that many calls', async (t) => {
    const s = await use(t);
    if (!s) return;
    const r = req({ uses: 3 });
    const a = await s.request(r, T0);
    await s.decide(a.id, { approve: true, approver: 'bob' }, T0);
    const got = [];
    for (let i = 0; i < 5; i++) got.push((await s.consumeGrant(bindingOf(r), T0))?.used);
    assert.deepEqual(got, [1, 2, 3, undefined, undefined]);
  });

  it('expiry: a pending request and a grant both expire; deciding an expired request is refused', async (t) => {
    const rec = recorder();
    const s = await use(t, { recorder: rec });
    if (!s) return;
    const r = req();
    const a = await s.request(r, T0);
    const late = T0 + 15 * MIN;
    assert.equal((await s.get(a.id, late))?.status, 'expired');
    await assert.rejects(s.decide(a.id, { approve: true, approver: 'bob' }, late), code('expired'));
    assert.equal(rec.events.at(-1)?.status, 'expired');
    // A new request for the same call after expiry is a new approval.
    const b = await s.request(r, late);
    assert.notEqual(b.id, a.id);
    await s.decide(b.id, { approve: true, approver: 'bob' }, late + MIN);
    assert.equal(
      await s.consumeGrant(bindingOf(r), late + MIN + 15 * MIN),
      undefined,
      'an expired grant is useless',
    );
    const listed = await s.list({}, late + MIN + 15 * MIN);
    assert.deepEqual(
      listed.map((x) => [x.id, x.status]),
      [
        [b.id, 'expired'],
        [a.id, 'expired'],
      ],
    );
    assert.deepEqual(
      rec.events.map((e) => e.status),
      ['requested', 'expired', 'requested', 'granted', 'expired'],
    );
    assert.deepEqual(await s.list({ status: 'granted' }, late + 20 * MIN), [], 'the expiry was stored');
  });

  it('a decision is final: denied stays denied and is never consumable', async (t) => {
    const s = await use(t);
    if (!s) return;
    const r = req();
    const a = await s.request(r, T0);
    const d = await s.decide(a.id, { approve: false, approver: 'bob', note: 'no external mail' }, T0);
    assert.equal(d.status, 'denied');
    await assert.rejects(s.decide(a.id, { approve: true, approver: 'carol' }, T0), code('already_decided'));
    assert.equal(await s.consumeGrant(bindingOf(r), T0), undefined);
    await assert.rejects(
      s.decide('apr_00000000000000000000', { approve: true, approver: 'bob' }, T0),
      code('not_found'),
    );
    assert.equal(await s.get('apr_00000000000000000000'), undefined);
  });

  it('only listed approvers may decide, and never the agent itself', async (t) => {
    const s = await use(t);
    if (!s) return;
    const a = await s.request(req({ approvers: ['security-lead', 'cfo'] }), T0);
    await assert.rejects(s.decide(a.id, { approve: true, approver: 'intern' }, T0), code('not_allowed'));
    const b = await s.request(req({ session: 'other' }), T0);
    await assert.rejects(s.decide(b.id, { approve: true, approver: 'mail-bot' }, T0), code('not_allowed'));
    assert.equal((await s.get(a.id, T0))?.status, 'pending', 'a refused decision changes nothing');
    assert.equal((await s.decide(a.id, { approve: true, approver: 'cfo' }, T0)).status, 'granted');
  });

  it('an approver is capped at N decisions per minute (approval fatigue)', async (t) => {
    const s = await use(t, { approverMaxPerMinute: 3 });
    if (!s) return;
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await s.request(req({ session: `s${i}` }), T0)).id);
    for (let i = 0; i < 3; i++)
      await s.decide(ids[i] as string, { approve: i % 2 === 0, approver: 'bob' }, T0 + i);
    await assert.rejects(
      s.decide(ids[3] as string, { approve: true, approver: 'bob' }, T0 + 10),
      code('rate_limited'),
    );
    assert.equal((await s.get(ids[3] as string, T0 + 10))?.status, 'pending');
    await s.decide(ids[3] as string, { approve: true, approver: 'carol' }, T0 + 10);
    await s.decide(ids[4] as string, { approve: true, approver: 'bob' }, T0 + MIN + 1);
  });

  it('concurrent consumers get a single-use grant exactly once; concurrent requests share one approval', async (t) => {
    const s = await use(t);
    if (!s) return;
    const r = req();
    const reqs = await Promise.all(Array.from({ length: 10 }, () => s.request(r, T0)));
    assert.equal(new Set(reqs.map((x) => x.id)).size, 1);
    await s.decide((reqs[0] as Approval).id, { approve: true, approver: 'bob' }, T0);
    const got = await Promise.all(Array.from({ length: 20 }, () => s.consumeGrant(bindingOf(r), T0)));
    assert.equal(got.filter((x) => x !== undefined).length, 1);
  });

  it('invalid requests and verdicts are refused with invalid_request', async (t) => {
    const s = await use(t);
    if (!s) return;
    await assert.rejects(s.request(req({ argsDigest: 'abc' }), T0), code('invalid_request'));
    await assert.rejects(s.request(req({ ttlMs: 0 }), T0), code('invalid_request'));
    await assert.rejects(s.request(req({ uses: 1.5 }), T0), code('invalid_request'));
    await assert.rejects(s.request(req({ agent: '' }), T0), code('invalid_request'));
    const a = await s.request(req(), T0);
    await assert.rejects(s.decide(a.id, { approve: true, approver: '' }, T0), code('invalid_request'));
    assert.deepEqual(await s.list({}, T0), [a], 'nothing else was stored');
  });

  it('list filters by status and agent, newest first', async (t) => {
    const s = await use(t);
    if (!s) return;
    const a = await s.request(req(), T0);
    const b = await s.request(req({ agent: 'ops-bot' }), T0 + 1);
    const c = await s.request(req({ session: 'x' }), T0 + 2);
    await s.decide(c.id, { approve: false, approver: 'bob' }, T0 + 3);
    assert.deepEqual(
      (await s.list({}, T0 + 4)).map((x) => x.id),
      [c.id, b.id, a.id],
    );
    assert.deepEqual(
      (await s.list({ status: 'pending', agent: 'mail-bot' }, T0 + 4)).map((x) => x.id),
      [a.id],
    );
    assert.deepEqual(
      (await s.list({ status: 'denied' }, T0 + 4)).map((x) => x.id),
      [c.id],
    );
  });

  it('a failed recording fails the request and withholds the grant (fail closed)', async (t) => {
    let fail = false;
    const s = await use(t, {
      recorder: {
        record: async () => {
          if (fail) throw new Error('audit store down');
        },
      },
    });
    if (!s) return;
    const r = req();
    const a = await s.request(r, T0);
    await s.decide(a.id, { approve: true, approver: 'bob' }, T0);
    fail = true;
    assert.equal(await s.consumeGrant(bindingOf(r), T0), undefined);
    await assert.rejects(s.request(req({ session: 'n' }), T0), code('record_failed'));
  });
}
