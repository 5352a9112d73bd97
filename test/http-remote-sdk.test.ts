/**
 * Remote SDK mode against the real decision API server: same authorize/guard surface, every call asks the
 * server, and every failure (unreachable, timeout, non-2xx, bad answer) is a deny — authorize never throws.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { jsonDigest } from '../src/canonical-json.js';
import { MemoryLimitStore } from '../src/limits/memory.js';
import { ApprovalRequiredError, DeniedError } from '../src/runtime/errors.js';
import { createRemoteExecLayer } from '../src/sdk/remote.js';
import { REPORT_POLICY, type RunningApi, startApi } from './http-fixtures.js';

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('remote sdk', () => {
  let api: RunningApi;
  before(async () => {
    api = await startApi(REPORT_POLICY, {
      'k-report': { agent: 'report-bot' },
      'k-other': { agent: 'other-bot' },
      'k-pep': { agent: 'backend', roles: ['pdp-client'] },
    });
  });
  after(async () => {
    await api?.close();
  });

  test('authorize returns the server decision, and each call is a fresh server decision', async () => {
    const sdk = createRemoteExecLayer({ url: api.url, apiKey: 'k-report', timeoutMs: 2000 });
    const n = api.recorder.decisions().length;
    const a = await sdk.authorize({ agent: 'report-bot', tool: 'reports.export', args: { rows: 10 } });
    const b = await sdk.authorize({ agent: 'report-bot', tool: 'reports.export', args: { rows: 10 } });
    const c = await sdk.authorize({ agent: 'report-bot', tool: 'reports.export', args: { rows: 1000 } });
    assert.equal(a.effect, 'allow');
    assert.equal(a.rule, 'small-exports');
    assert.equal(a.policy, api.layer.policyHash);
    assert.notEqual(a.id, b.id);
    assert.equal(c.effect, 'deny');
    // Nothing cached: three calls, three decisions recorded on the server, with the ids the client saw.
    const recorded = api.recorder.decisions().slice(n);
    assert.deepEqual(
      recorded.map((e) => e.decision.id),
      [a.id, b.id, c.id],
    );
  });

  test('guard runs fn only when allowed; deny and ask throw typed errors and fn never runs', async () => {
    const sdk = createRemoteExecLayer({ url: api.url, apiKey: 'k-report' });
    const ran: string[] = [];
    const exportRows = sdk.guard(
      async (args: { rows: number }) => {
        ran.push(`export ${args.rows}`);
        return args.rows;
      },
      { agent: 'report-bot', tool: 'reports.export' },
    );
    assert.equal(await exportRows({ rows: 5 }), 5);
    await assert.rejects(
      exportRows({ rows: 500 }),
      (e: unknown) => e instanceof DeniedError && e.decision.effect === 'deny',
    );
    const share = sdk.guard(
      async () => {
        ran.push('share');
      },
      { agent: 'report-bot', tool: 'reports.share' },
    );
    await assert.rejects(share({}), (e: unknown) => e instanceof ApprovalRequiredError);
    assert.deepEqual(ran, ['export 5']);
  });

  test('guard reports each outcome to the server: recorded, linked to its decision, with the result digest', async () => {
    const sdk = createRemoteExecLayer({ url: api.url, apiKey: 'k-report' });
    const exportRows = sdk.guard(
      async (args: { rows: number }) => {
        if (args.rows === 13) throw new Error('disk full');
        return { exported: args.rows };
      },
      { agent: 'report-bot', tool: 'reports.export' },
    );
    assert.deepEqual(await exportRows({ rows: 7 }), { exported: 7 });
    await assert.rejects(exportRows({ rows: 13 }), /disk full/);
    const [okDecision, failedDecision] = api.recorder.decisions().slice(-2);
    const outcomes = api.recorder.events.filter((e) => e.type === 'outcome');
    const of = (id: string | undefined) => outcomes.find((e) => e.decisionId === id);
    assert.deepEqual(
      { ...of(okDecision?.decision.id), durationMs: 0 },
      {
        type: 'outcome',
        decisionId: okDecision?.decision.id,
        agent: 'report-bot',
        tool: 'reports.export',
        ok: true,
        resultDigest: jsonDigest({ exported: 7 }),
        durationMs: 0,
      },
    );
    assert.equal(of(failedDecision?.decision.id)?.ok, false);
    assert.equal(of(failedDecision?.decision.id)?.error, 'disk full');
  });

  test('/v1/outcome accepts an outcome once, from the deciding agent or a pdp-client, and names what is wrong', async () => {
    const sdk = createRemoteExecLayer({ url: api.url, apiKey: 'k-report' });
    const other = createRemoteExecLayer({ url: api.url, apiKey: 'k-other' });
    const pep = createRemoteExecLayer({ url: api.url, apiKey: 'k-pep' });
    const d = await sdk.authorize({ agent: 'report-bot', tool: 'reports.read', args: {} });
    assert.equal(d.effect, 'allow');
    const before = api.recorder.events.length;
    await assert.rejects(
      other.outcome(d, { ok: true, durationMs: 1 }),
      /HTTP 403: caller `other-bot` may not ask about subject `report-bot`/,
    );
    await sdk.outcome(d, { ok: true, durationMs: 1 });
    await assert.rejects(
      sdk.outcome(d, { ok: true, durationMs: 1 }),
      /HTTP 404: decision `[^`]+` is not an allowed decision/,
    );
    const denied = await sdk.authorize({ agent: 'report-bot', tool: 'reports.export', args: { rows: 1000 } });
    await assert.rejects(sdk.outcome(denied, { ok: true, durationMs: 1 }), /HTTP 404/);
    // A decision the same runtime gave another enforcement point (the gateway, the SDK) is reported there.
    const viaGateway = await api.layer.authorize(
      { agent: 'report-bot', tool: 'reports.read', args: {} },
      { point: 'mcp' },
    );
    assert.equal(viaGateway.effect, 'allow');
    await assert.rejects(sdk.outcome(viaGateway, { ok: false, durationMs: 1 }), /HTTP 404/);
    assert.ok(
      api.layer.awaitingOutcome(viaGateway.id),
      'the refused report must leave the decision awaiting',
    );
    const forPep = await sdk.authorize({ agent: 'report-bot', tool: 'reports.read', args: {} });
    await pep.outcome(forPep, { ok: false, error: 'timeout', durationMs: 2 });
    // Two outcomes recorded (and the refused report), nothing for the refused or repeated ones.
    const outcomes = api.recorder.events.slice(before).filter((e) => e.type === 'outcome');
    assert.deepEqual(
      outcomes.map((e) => [e.decisionId, e.ok]),
      [
        [d.id, true],
        [forPep.id, false],
      ],
    );
    assert.equal(api.recorder.events.slice(before).filter((e) => e.type === 'auth').length, 1);

    const post = (body: unknown) =>
      fetch(`${api.url}/v1/outcome`, {
        method: 'POST',
        headers: { authorization: 'Bearer k-report', 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }).then(async (r) => ({
        status: r.status,
        body: (await r.json()) as { code: string; pointer?: string },
      }));
    const fresh = await sdk.authorize({ agent: 'report-bot', tool: 'reports.read', args: {} });
    for (const [body, pointer] of [
      [{ decision: fresh.id, ok: 'yes', durationMs: 1 }, '/ok'],
      [{ decision: fresh.id, ok: true }, '/durationMs'],
      [{ decision: fresh.id, ok: true, durationMs: -1 }, '/durationMs'],
      [{ decision: fresh.id, ok: true, durationMs: 1, resultDigest: 'abc' }, '/resultDigest'],
      [{ decision: fresh.id, ok: true, durationMs: 1, error: 5 }, '/error'],
      [{ ok: true, durationMs: 1 }, '/decision'],
      // Oversized and hostile fields.
      [{ decision: 'd'.repeat(201), ok: true, durationMs: 1 }, '/decision'],
      [{ decision: fresh.id, ok: true, durationMs: 1, error: 'e'.repeat(2001) }, '/error'],
      [{ decision: fresh.id, ok: true, durationMs: Number.MAX_VALUE * 10 }, '/durationMs'],
      [{ decision: fresh.id, ok: true, durationMs: 1, resultDigest: 'A'.repeat(64) }, '/resultDigest'],
    ] as const) {
      const r = await post(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.code, 'invalid_request');
      assert.equal(r.body.pointer, pointer);
    }
    const huge = await post({ decision: fresh.id, ok: false, durationMs: 1, error: 'x'.repeat(1_100_000) });
    assert.equal(huge.status, 413);
    assert.equal(huge.body.code, 'payload_too_large');
    // None of the malformed reports consumed the decision: a well-formed one is still accepted.
    const ok = await post({ decision: fresh.id, ok: true, durationMs: 1, resultDigest: jsonDigest([]) });
    assert.equal(ok.status, 200);
  });

  test('a wrong api key is a deny with the HTTP status, not an exception', async () => {
    const sdk = createRemoteExecLayer({ url: api.url, apiKey: 'wrong' });
    const d = await sdk.authorize({ agent: 'report-bot', tool: 'reports.read', args: {} });
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, 'internal_error');
    assert.match(d.reason, /HTTP 401/);
  });

  test('asking about another agent is refused by the server and denied by the client', async () => {
    const sdk = createRemoteExecLayer({ url: api.url, apiKey: 'k-report' });
    const d = await sdk.authorize({ agent: 'someone-else', tool: 'reports.read', args: {} });
    assert.equal(d.effect, 'deny');
    assert.match(d.reason, /HTTP 403/);
  });

  test('an unreachable server is a deny', async () => {
    const closed = createServer();
    const url = await listen(closed);
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const sdk = createRemoteExecLayer({ url, apiKey: 'k-report', timeoutMs: 2000 });
    const d = await sdk.authorize({ agent: 'report-bot', tool: 'reports.read', args: {} });
    assert.equal(d.effect, 'deny');
    assert.equal(d.code, 'internal_error');
    assert.match(d.reason, /unreachable/);
  });

  test('a server that does not answer in time is a deny at the deadline', async () => {
    const silent = createServer(() => {
      // Accepts the request and never answers.
    });
    const url = await listen(silent);
    try {
      const sdk = createRemoteExecLayer({ url, apiKey: 'k-report', timeoutMs: 150 });
      const t0 = Date.now();
      const d = await sdk.authorize({ agent: 'report-bot', tool: 'reports.read', args: {} });
      const took = Date.now() - t0;
      assert.equal(d.effect, 'deny');
      assert.match(d.reason, /did not answer within 150 ms/);
      assert.ok(took >= 140 && took < 2000, `took ${took} ms`);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  test('a 2xx answer that is not a Decision is a deny', async () => {
    const liar = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"effect":"allow"}');
    });
    const url = await listen(liar);
    try {
      const sdk = createRemoteExecLayer({ url, apiKey: 'k-report' });
      const d = await sdk.authorize({ agent: 'report-bot', tool: 'reports.read', args: {} });
      assert.equal(d.effect, 'deny');
      assert.match(d.reason, /not a decision/);
    } finally {
      liar.closeAllConnections();
      await new Promise<void>((resolve) => liar.close(() => resolve()));
    }
  });
});

test('a concurrency limit is held while a remote guard runs and freed by its reported outcome, once', async () => {
  const policy = {
    version: 1,
    agents: { 'job-bot': { owner: 'ops@acme.com', roles: ['runner'] } },
    roles: { runner: [{ id: 'one-at-a-time', allow: 'jobs.run', limit: { concurrent: 1 } }] },
  };
  // The in-memory store, with a release that takes as long as a networked store's round trip.
  const memory = new MemoryLimitStore();
  const limits: Pick<MemoryLimitStore, 'consume' | 'release'> = {
    consume: (...a) => memory.consume(...a),
    release: async (...a) => {
      await new Promise((r) => setTimeout(r, 30));
      return memory.release(...a);
    },
  };
  const api = await startApi(policy, { 'k-job': { agent: 'job-bot' } }, {}, { limits });
  try {
    const sdk = createRemoteExecLayer({ url: api.url, apiKey: 'k-job' });
    let finish: () => void = () => {};
    const running = new Promise<void>((r) => {
      finish = r;
    });
    const runs: string[] = [];
    const run = sdk.guard(
      async (args: { job: string }) => {
        runs.push(args.job);
        if (args.job === 'long') await running;
        return args.job;
      },
      { agent: 'job-bot', tool: 'jobs.run' },
    );
    const long = run({ job: 'long' });
    while (runs.length === 0) await new Promise((r) => setTimeout(r, 5));
    await assert.rejects(
      run({ job: 'second' }),
      (e: unknown) => e instanceof DeniedError && e.decision.code === 'limit_exceeded',
    );
    finish();
    assert.equal(await long, 'long');
    // Without the outcome the slot would stay taken until its lease ran out (15 minutes).
    for (const job of ['a', 'b', 'c']) assert.equal(await run({ job }), job);
    assert.deepEqual(runs, ['long', 'a', 'b', 'c']);

    // Two reports of one outcome at once: one is recorded and releases the slot, the other is refused.
    const d = await sdk.authorize({ agent: 'job-bot', tool: 'jobs.run', args: { job: 'manual' } });
    assert.equal(d.effect, 'allow');
    const raced = await Promise.allSettled([
      sdk.outcome(d, { ok: true, durationMs: 1 }),
      sdk.outcome(d, { ok: false, durationMs: 1 }),
    ]);
    assert.deepEqual(raced.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    const reports = api.recorder.events.filter((e) => e.type === 'outcome' && e.decisionId === d.id);
    assert.equal(reports.length, 1);
  } finally {
    await api.close();
  }
});
