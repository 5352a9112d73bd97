import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { findForbiddenKey, ScreenedTransport } from './screen.js';

test('findForbiddenKey finds __proto__ at any depth and bounds nesting', () => {
  assert.equal(findForbiddenKey(JSON.parse('{"a":{"b":[{"c":1}]}}')), undefined);
  assert.match(findForbiddenKey(JSON.parse('{"a":[{"__proto__":{"x":1}}]}')) ?? '', /`\/a\/0\/__proto__`/);
  assert.match(findForbiddenKey(JSON.parse('{"\\u005f_proto__":1}')) ?? '', /__proto__/);
  let deep: unknown = 1;
  for (let i = 0; i < 100; i++) deep = [deep];
  assert.match(findForbiddenKey(deep) ?? '', /nesting deeper/);
});

test('the screen refuses batches, bad ids, duplicates, double initialize and requests before initialize', () => {
  const [, b] = InMemoryTransport.createLinkedPair();
  const s = new ScreenedTransport(b, { requireInitialize: true });
  assert.match(s.check([{ jsonrpc: '2.0', id: 1, method: 'ping' }])?.message ?? '', /batches/);
  assert.match(s.check({ jsonrpc: '2.0', id: null, method: 'ping' })?.message ?? '', /invalid request id/);
  assert.match(s.check({ jsonrpc: '2.0', id: 1.5, method: 'ping' })?.message ?? '', /invalid request id/);
  assert.match(
    s.check({ jsonrpc: '2.0', id: 2, method: 'tools/list' })?.message ?? '',
    /before `initialize`/,
  );
  assert.equal(s.check({ jsonrpc: '2.0', id: 3, method: 'ping' }), undefined);
  assert.equal(s.check({ jsonrpc: '2.0', method: 'notifications/initialized' }), undefined);
  assert.equal(s.check({ jsonrpc: '2.0', id: 4, method: 'initialize', params: {} }), undefined);
});
