/**
 * Health, readiness, metrics, decision logs, traces and webhooks on the real `serve` stack (SQLite store in
 * a temp dir, the real authenticator, the decision API over HTTP). Metrics are parsed as Prometheus text and
 * must count exactly the decisions made; an in-memory span exporter must hold one span per decision, child
 * of the caller's `traceparent`; a webhook receiver on loopback checks the HMAC and sees retries, while a
 * dead receiver changes no decision.
 */
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type Context,
  type ContextManager,
  context,
  propagation,
  ROOT_CONTEXT,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { verifyWebhook } from '../src/approvals/webhook.js';
import { type RunningServer, startServe } from '../src/cli/serve.js';
import { loadConfigFile } from '../src/config/load.js';
import { hashApiKey, newApiKey } from '../src/enforce/auth.js';
import { parsePrometheusText, sumOf } from '../src/testing/prom-text.js';

/**
 * The async context manager an OpenTelemetry SDK installs (`@opentelemetry/context-async-hooks`, not a
 * dependency here), reduced to what spans need: the active context follows async calls.
 */
class AlsContextManager implements ContextManager {
  readonly #als = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#als.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#als.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#als.disable();
    return this;
  }
}

const AGENT = newApiKey();
const VIEWER = newApiKey();
const OPS = newApiKey();
const SECRET = 'a-webhook-secret-of-some-length';

const POLICY = `version: 1
agents:
  report-bot:
    owner: data@acme.com
    roles: [reporter]
roles:
  reporter:
    - id: read-reports
      allow: reports.read
    - id: no-deletes
      deny: reports.delete
    - id: share-needs-approval
      ask: reports.share
`;

let dir: string;
let running: RunningServer;
let base: string;
let hook: Server;
const deliveries: Array<{ body: string; ok: boolean; attempt: number }> = [];
let failFirst = 0;
const exporter = new InMemorySpanExporter();
const logLines: string[] = [];

before(async () => {
  context.setGlobalContextManager(new AlsContextManager());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
  let attempt = 0;
  hook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const ok = verifyWebhook(
        SECRET,
        body,
        req.headers['x-execlayer-timestamp'] as string | undefined,
        req.headers['x-execlayer-signature'] as string | undefined,
      );
      attempt++;
      deliveries.push({ body, ok, attempt });
      res.writeHead(failFirst-- > 0 ? 503 : 204).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  dir = mkdtempSync(join(tmpdir(), 'execlayer-observe-'));
  writeFileSync(join(dir, 'policy.yaml'), POLICY);
  const key = (k: string, agent: string, roles?: string[]) =>
    `    - { sha256: ${hashApiKey(k)}, agent: "${agent}"${roles ? `, roles: [${roles.join(', ')}]` : ''} }`;
  writeFileSync(
    join(dir, 'execlayer.yaml'),
    `policy: ./policy.yaml
store: sqlite:./state/execlayer.db
auth:
  apiKeys:
${[key(AGENT, 'report-bot'), key(VIEWER, 'watcher@acme.com', ['viewer']), key(OPS, 'ops@acme.com', ['operator'])].join('\n')}
notifications:
  webhooks:
    - { url: "${hookUrl}", secret: "${SECRET}", retries: 2 }
    - { url: "http://127.0.0.1:1/dead", secret: "${SECRET}", retries: 1, timeoutMs: 200 }
http: { port: 0 }
`,
  );
  running = await startServe(loadConfigFile(join(dir, 'execlayer.yaml')), {
    port: 0,
    logDecisions: true,
    logger: (await import('../src/observe/log.js')).createLogger({
      json: true,
      write: (l) => logLines.push(l),
    }),
  });
  base = running.http.url.replace(/\/mcp$/, '');
});

after(async () => {
  await running?.close();
  await new Promise<void>((r) => hook?.close(() => r()));
  trace.disable();
  context.disable();
  propagation.disable();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function decide(tool: string, headers: Record<string, string> = {}, args: object = { id: 7 }) {
  const r = await fetch(`${base}/v1/decide`, {
    method: 'POST',
    headers: { authorization: `Bearer ${AGENT}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ tool, args }),
  });
  assert.equal(r.status, 200);
  return (await r.json()) as { id: string; effect: string; rule: string | null; approvalId?: string };
}

async function scrape(key = VIEWER) {
  return fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${key}` } });
}

describe('health and readiness', () => {
  test('/healthz answers without a credential; /readyz names each check', async () => {
    const h = await fetch(`${base}/healthz`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'ok' });
    const r = await fetch(`${base}/readyz`);
    const body = (await r.json()) as { status: string; checks: Array<{ name: string; ok: boolean }> };
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.equal(body.status, 'ready');
    assert.deepEqual(
      body.checks.map((c) => c.name),
      ['policy', 'audit', 'approvals', 'state', 'pins'],
    );
  });
});

describe('metrics', () => {
  test('/metrics needs a credential with a reading role', async () => {
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    assert.equal((await scrape(AGENT)).status, 403);
    assert.equal((await scrape(OPS)).status, 200);
  });

  test('decision counts parsed from the exposition equal the decisions made', async () => {
    const before = parsePrometheusText(await (await scrape()).text());
    const count = (labels: Record<string, string>, f = before) =>
      sumOf(f, 'execlayer_decisions_total', { agent: 'report-bot', ...labels });
    const made = { allow: 0, deny: 0, ask: 0 };
    for (const tool of [
      'reports.read',
      'reports.read',
      'reports.delete',
      'reports.unknown',
      'reports.share',
    ]) {
      const d = await decide(tool);
      made[d.effect as keyof typeof made]++;
    }
    assert.deepEqual(made, { allow: 2, deny: 2, ask: 1 });
    const after = parsePrometheusText(await (await scrape()).text());
    assert.equal(after.get('execlayer_decisions_total')?.type, 'counter');
    assert.equal(
      count({ effect: 'allow', rule: 'read-reports' }, after) -
        count({ effect: 'allow', rule: 'read-reports' }),
      2,
    );
    assert.equal(
      count({ effect: 'deny', rule: 'no-deletes' }, after) - count({ effect: 'deny', rule: 'no-deletes' }),
      1,
    );
    assert.equal(count({ effect: 'deny', rule: 'none' }, after) - count({ effect: 'deny', rule: 'none' }), 1);
    assert.equal(count({ effect: 'ask' }, after) - count({ effect: 'ask' }), 1);
    const hist = 'execlayer_decision_duration_seconds';
    assert.equal(after.get(hist)?.type, 'histogram');
    assert.equal(
      sumOf(after, hist, { point: 'http' }, `${hist}_count`) -
        sumOf(before, hist, { point: 'http' }, `${hist}_count`),
      5,
    );
    assert.ok(sumOf(after, 'execlayer_approvals_pending') >= 1);
    assert.ok(sumOf(after, 'execlayer_approval_oldest_pending_age_seconds') >= 0);
    assert.ok(after.has('execlayer_audit_last_checkpoint_age_seconds'));
    assert.ok(after.has('execlayer_audit_append_lag_records'));
  });
});

describe('decision logs', () => {
  test('one JSON line per decision, with the rule and no arguments', async () => {
    const d = await decide('reports.delete');
    const line = logLines.map((l) => JSON.parse(l)).find((o) => o.id === d.id);
    assert.ok(line, 'a log line for the decision');
    assert.equal(line.level, 'warn');
    assert.equal(line.msg, 'decision');
    assert.equal(line.agent, 'report-bot');
    assert.equal(line.rule, 'no-deletes');
    assert.equal(line.args, undefined);
    assert.match(line.time, /^\d{4}-\d\d-\d\dT/);
  });
});

describe('traces', () => {
  test('one span per decision, child of the caller traceparent, with agent, tool, effect and rule', async () => {
    exporter.reset();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    const d = await decide('reports.read', { traceparent: `00-${traceId}-${parent}-01` });
    const spans = exporter.getFinishedSpans().filter((s) => s.name === 'execlayer.decide');
    assert.equal(spans.length, 1);
    const s = spans[0]!;
    assert.equal(s.spanContext().traceId, traceId);
    assert.equal(s.parentSpanContext?.spanId, parent);
    assert.deepEqual(
      {
        agent: s.attributes['execlayer.agent'],
        tool: s.attributes['execlayer.tool'],
        effect: s.attributes['execlayer.effect'],
        rule: s.attributes['execlayer.rule'],
        id: s.attributes['execlayer.decision_id'],
      },
      { agent: 'report-bot', tool: 'reports.read', effect: 'allow', rule: 'read-reports', id: d.id },
    );
    exporter.reset();
    await decide('reports.delete');
    const root = exporter.getFinishedSpans().filter((s) => s.name === 'execlayer.decide');
    assert.equal(root.length, 1);
    assert.equal(root[0]!.parentSpanContext, undefined, 'no traceparent: a root span');
  });
});

describe('webhooks', () => {
  test('a suspension is delivered signed, retried after a 503; a dead receiver changes nothing', async () => {
    deliveries.length = 0;
    failFirst = 1;
    const r = await fetch(`${base}/v1/agents/report-bot/suspend`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'runaway <b>loop</b>' }),
    });
    assert.equal(r.status, 200);
    const refused = await decide('reports.read');
    assert.equal(refused.effect, 'deny', 'the stop switch still works while webhooks fail');
    await running.notifier?.flush();
    const mine = deliveries.filter((d) => JSON.parse(d.body).type === 'agent.suspended');
    assert.equal(mine.length, 2, 'first attempt got 503, the retry got 204');
    assert.ok(
      mine.every((d) => d.ok),
      'every attempt carries a valid HMAC signature',
    );
    const payload = JSON.parse(mine[1]!.body);
    assert.deepEqual(payload.data, {
      agent: 'report-bot',
      by: 'ops@acme.com',
      reason: 'runaway <b>loop</b>',
    });
    const resumed = await fetch(`${base}/v1/agents/report-bot/resume`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS}` },
    });
    assert.equal(resumed.status, 200);
    assert.equal((await decide('reports.read')).effect, 'allow');
  });

  test('an approval request is delivered with the call it is about', async () => {
    deliveries.length = 0;
    // Other arguments than the earlier ask: a repeat of a pending call is grouped, not notified again.
    const d = await decide('reports.share', {}, { id: 8 });
    assert.equal(d.effect, 'ask');
    await running.notifier?.flush();
    const got = deliveries.map((x) => JSON.parse(x.body)).filter((p) => p.type === 'approval.requested');
    assert.equal(got.length, 1);
    assert.equal(got[0].data.tool, 'reports.share');
    assert.equal(got[0].data.id, d.approvalId);
    assert.deepEqual(got[0].data.args, { id: 8 });
  });
});
