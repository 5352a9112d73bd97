import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import type { WebhookConfig } from '../config/load.js';
import { slackBody, WebhookNotifier } from './webhooks.js';

test('the Slack body keeps values from agents as text: no links, no mentions', () => {
  const b = slackBody({
    type: 'agent.suspended',
    time: 0,
    data: { agent: 'bot', by: 'ops', reason: '<https://evil.example|click> <!channel> & more' },
  });
  assert.doesNotMatch(b.text, /<https:|<!channel>/);
  assert.match(b.text, /&lt;https:\/\/evil\.example\|click&gt; &lt;!channel&gt; &amp; more/);
});

test('a 4xx other than 408/429 is not retried; a 5xx is, then given up and reported', async () => {
  let hits = 0;
  let status = 400;
  const server = createServer((req, res) => {
    hits++;
    req.resume();
    res.writeHead(status).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const errors: string[] = [];
  const hook: WebhookConfig = {
    url,
    secret: 's'.repeat(16),
    events: ['agent.resumed'],
    format: 'execlayer',
    timeoutMs: 500,
    retries: 2,
  };
  const n = new WebhookNotifier({ webhooks: [hook], backoffMs: 5, onError: (e) => errors.push(e) });
  try {
    n.observe({ type: 'agent', status: 'resumed', agent: 'bot', by: 'ops' }, Date.now());
    await n.flush();
    assert.equal(hits, 1);
    status = 503;
    n.observe({ type: 'agent', status: 'resumed', agent: 'bot', by: 'ops' }, Date.now());
    await n.flush();
    assert.equal(hits, 4, 'one try and two retries');
    assert.equal(errors.length, 2);
    assert.match(errors[1] ?? '', /http 503/);
    // Events the webhook did not ask for send nothing.
    n.observe({ type: 'agent', status: 'suspended', agent: 'bot', by: 'ops' }, Date.now());
    await n.flush();
    assert.equal(hits, 4);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
