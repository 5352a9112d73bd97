import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import type { DecisionEvent } from '../../types.js';
import { LiveHub } from './live.js';

function event(agent: string, effect: 'allow' | 'deny'): DecisionEvent {
  return {
    type: 'decision',
    decision: {
      id: `${agent}-${effect}`,
      effect,
      rule: null,
      reason: 'r',
      policy: 'p',
      mode: 'enforce',
      code: 'allowed',
    },
    action: { agent, tool: 't.x', args: {}, argsDigest: 'd' },
    point: 'mcp',
    latencyUs: 1,
  };
}

test('each viewer gets the decisions its filter selects; a viewer whose session ended is cut off', async () => {
  const hub = new LiveHub({ flushMs: 5, pingMs: 60_000 });
  let alive = true;
  const server = createServer((req, res) => {
    const filter = req.url === '/deny' ? { effect: 'deny' } : {};
    hub.attach(res, filter, () => alive);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const read = (path: string) =>
    new Promise<{ text: () => string; ended: Promise<void> }>((resolve) => {
      let buf = '';
      request({ port, path, host: '127.0.0.1' }, (res) => {
        res.on('data', (c: Buffer) => {
          buf += c.toString();
        });
        const ended = new Promise<void>((r) => res.on('end', () => r()));
        resolve({ text: () => buf, ended });
      }).end();
    });
  try {
    const all = await read('/all');
    const denies = await read('/deny');
    while (hub.viewers < 2) await new Promise((r) => setTimeout(r, 5));
    hub.observe(event('a', 'allow'), 1);
    hub.observe(event('b', 'deny'), 2);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(all.text().match(/id: \S+/g), ['id: a-allow', 'id: b-deny']);
    assert.deepEqual(denies.text().match(/id: \S+/g), ['id: b-deny']);
    alive = false;
    hub.sweep();
    await Promise.all([all.ended, denies.ended]);
    assert.equal(hub.viewers, 0);
  } finally {
    hub.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
