/**
 * Remote SDK mode against the real decision API server: same authorize/guard surface, every call asks the
 * server, and every failure (unreachable, timeout, non-2xx, bad answer) is a deny — authorize never throws.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ApprovalRequiredError, DeniedError } from '../src/runtime/errors.js';
import { createRemoteExecLayer } from '../src/sdk/remote.js';
import { type RunningApi, startApi } from './http-fixtures.js';

const POLICY = {
  version: 1,
  agents: { 'report-bot': { owner: 'data@acme.com', roles: ['reporter'] } },
  roles: {
    reporter: [
      { id: 'read-reports', allow: 'reports.read' },
      { id: 'small-exports', allow: 'reports.export', when: { cel: 'args.rows <= 100' } },
      { id: 'share-needs-approval', ask: 'reports.share' },
    ],
  },
};

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('remote sdk', () => {
  let api: RunningApi;
  before(async () => {
    api = await startApi(POLICY, { 'k-report': { agent: 'report-bot' } });
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
