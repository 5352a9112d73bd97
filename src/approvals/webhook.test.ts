import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { jsonDigest } from '../canonical-json.js';
import { memoryApprovalStore } from './memory.js';
import type { Approval } from './types.js';
import {
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  verifyWebhook,
  type WebhookPayload,
  webhookNotifier,
} from './webhook.js';

const SECRET = 'a-shared-secret-of-some-length';

interface Hit {
  body: string;
  headers: IncomingMessage['headers'];
}

async function server(t: TestContext, respond: (hit: Hit, res: import('node:http').ServerResponse) => void) {
  const hits: Hit[] = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const hit = { body, headers: req.headers };
      hits.push(hit);
      respond(hit, res);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => {
    srv.closeAllConnections();
    srv.close();
  });
  return { hits, url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hook` };
}

const req = {
  agent: 'mail-bot',
  tool: 'email.send',
  argsDigest: jsonDigest({ to: 'x@partner.com' }),
  policy: 'f'.repeat(64),
  session: 's1',
  rule: 'r1',
  reason: 'external mail',
  args: { to: 'x@partner.com' },
  ttlMs: 60_000,
  uses: 1,
  approvers: ['security-lead'],
};

describe('webhook notifier', () => {
  it('POSTs each new pending approval once, signed with HMAC-SHA256', async (t) => {
    const { hits, url } = await server(t, (_h, res) => res.end('ok'));
    const errors: Error[] = [];
    const hook = webhookNotifier({
      url,
      secret: SECRET,
      linkBase: 'https://x/approvals/',
      onError: (e) => errors.push(e),
    });
    const store = memoryApprovalStore({ notifier: hook });
    const a = await store.request(req, Date.now());
    await store.request(req, Date.now()); // grouped: no second notification
    await hook.flush();
    assert.deepEqual(errors, []);
    assert.equal(hits.length, 1);
    const hit = hits[0] as Hit;
    assert.equal(hit.headers['content-type'], 'application/json');
    const ts = hit.headers[TIMESTAMP_HEADER] as string;
    const sig = hit.headers[SIGNATURE_HEADER] as string;
    assert.match(sig, /^sha256=[0-9a-f]{64}$/);
    assert.equal(verifyWebhook(SECRET, hit.body, ts, sig), true);
    assert.equal(verifyWebhook(SECRET, hit.body.replace('partner', 'evil'), ts, sig), false, 'tampered body');
    assert.equal(verifyWebhook('another-secret-xxxxxxxx', hit.body, ts, sig), false, 'wrong secret');
    assert.equal(
      verifyWebhook(SECRET, hit.body, ts, sig, { nowMs: Number(ts) + 600_000 }),
      false,
      'replayed late',
    );
    const p = JSON.parse(hit.body) as WebhookPayload;
    assert.equal(p.type, 'approval.requested');
    assert.equal(p.approval.id, a.id);
    assert.deepEqual(p.approval.args, { to: 'x@partner.com' });
    assert.deepEqual(p.approval.approvers, ['security-lead']);
    assert.equal(p.approval.link, `https://x/approvals/${a.id}`);
  });

  it('a receiver that hangs never delays the request; the delivery times out and is reported', async (t) => {
    const { hits, url } = await server(t, () => {}); // never answers
    const errors: { err: Error; a: Approval }[] = [];
    const hook = webhookNotifier({
      url,
      secret: SECRET,
      timeoutMs: 200,
      onError: (err, a) => errors.push({ err, a }),
    });
    const store = memoryApprovalStore({ notifier: hook });
    const started = performance.now();
    const a = await store.request(req, Date.now());
    assert.ok(performance.now() - started < 100, 'request returned without waiting for the webhook');
    await hook.flush();
    assert.equal(hits.length, 1);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.a.id, a.id);
    assert.match(
      errors[0]?.err.message ?? '',
      new RegExp(`webhook delivery for approval \`${a.id}\` failed`),
    );
  });

  it('a non-2xx answer and a closed port are reported, never thrown', async (t) => {
    const { url } = await server(t, (_h, res) => {
      res.statusCode = 500;
      res.end();
    });
    const errors: Error[] = [];
    const hook = webhookNotifier({ url, secret: SECRET, onError: (e) => errors.push(e) });
    const down = webhookNotifier({
      url: 'http://127.0.0.1:1/x',
      secret: SECRET,
      onError: (e) => errors.push(e),
    });
    const store = memoryApprovalStore({
      notifier: {
        notify: (a) => {
          hook.notify(a);
          down.notify(a);
        },
      },
    });
    await store.request(req, Date.now());
    await Promise.all([hook.flush(), down.flush()]);
    assert.equal(errors.length, 2);
    assert.ok(errors.some((e) => /http 500/.test(e.message)));
  });

  it('refuses a weak secret or a non-http url at construction', () => {
    assert.throws(() => webhookNotifier({ url: 'http://x', secret: 'short' }), /at least 16/);
    assert.throws(
      () => webhookNotifier({ url: 'file:///etc/passwd', secret: SECRET }),
      /must be http or https/,
    );
  });
});
