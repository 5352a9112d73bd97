import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js';
import { findForbiddenKey, isPlainRequest, ScreenedTransport } from './screen.js';

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

test('a request that skips the schema parse is one the schema accepts unchanged; the rest are parsed', () => {
  const messages: unknown[] = [
    {
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'a.b', arguments: { x: [1, { y: 'z' }] } },
    },
    { jsonrpc: '2.0', id: 'k', method: 'tools/list' },
    { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'a', _meta: { progressToken: 1 } } },
    { jsonrpc: '2.0', id: 3, method: 'tools/call', params: [] },
    { jsonrpc: '2.0', id: 4, method: 'tools/call', params: null },
    { jsonrpc: '2.0', id: 5, method: 'tools/call', extra: true },
    { jsonrpc: '1.0', id: 6, method: 'ping' },
    { jsonrpc: '2.0', id: 2 ** 60, method: 'ping' },
    { jsonrpc: '2.0', id: 7, method: 7 },
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { jsonrpc: '2.0', id: 8, result: {} },
    { jsonrpc: '2.0', id: 9, error: { code: 1, message: 'x' } },
  ];
  const skipped = messages.filter(isPlainRequest);
  assert.equal(skipped.length, 2);
  for (const m of skipped) {
    const parsed = JSONRPCMessageSchema.safeParse(m);
    assert.ok(parsed.success, JSON.stringify(m));
    assert.deepEqual(parsed.data, m);
  }
});
