import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BoundedLineReader, type OversizedLine } from './stdio-upstream.js';

function read(limit: number, chunks: Array<string | Buffer>): Array<string | OversizedLine> {
  const out: Array<string | OversizedLine> = [];
  const r = new BoundedLineReader(
    limit,
    (l) => out.push(l),
    (o) => out.push(o),
  );
  for (const c of chunks) r.push(typeof c === 'string' ? Buffer.from(c) : c);
  return out;
}

/** Every split of `s` into two chunks, and byte by byte. */
function splits(s: string): Array<Buffer[]> {
  const b = Buffer.from(s);
  const out: Array<Buffer[]> = [[...b].map((x) => Buffer.from([x]))];
  for (let i = 0; i <= b.length; i++) out.push([b.subarray(0, i), b.subarray(i)]);
  return out;
}

test('lines within the limit are handed on whole, however the bytes arrive', () => {
  const text = '{"jsonrpc":"2.0","id":1,"result":{"t":"é\\n"}}\r\n\n{"jsonrpc":"2.0","method":"x"}\n';
  for (const chunks of splits(text)) {
    assert.deepEqual(read(100, chunks), [
      '{"jsonrpc":"2.0","id":1,"result":{"t":"é\\n"}}',
      '{"jsonrpc":"2.0","method":"x"}',
    ]);
  }
});

test('a longer line is skipped and named by its top-level id, wherever the id is', () => {
  const pad = 'x'.repeat(200);
  const cases: Array<[string, OversizedLine]> = [
    // The SDK's server writes the id last.
    [`{"result":{"content":[{"text":"${pad}"}]},"jsonrpc":"2.0","id":7}`, { bytes: 0, id: 7, method: false }],
    [`{"jsonrpc":"2.0","id":"a\\"b","result":{"t":"${pad}"}}`, { bytes: 0, id: 'a"b', method: false }],
    // Nested `id` keys and braces or quotes inside strings are not the message's id.
    [
      `{"result":{"id":99,"t":"\\"id\\":5 } ${pad}"},"error":null,"id" : 3 }`,
      { bytes: 0, id: 3, method: false },
    ],
    [
      `{"jsonrpc":"2.0","id":4,"method":"sampling/createMessage","params":{"p":"${pad}"}}`,
      { bytes: 0, id: 4, method: true },
    ],
    [
      `{"jsonrpc":"2.0","method":"notifications/message","params":{"p":"${pad}"}}`,
      { bytes: 0, method: true },
    ],
    [`not json at all ${pad}`, { bytes: 0, method: false }],
    [`{"id":1.5,"result":"${pad}"}`, { bytes: 0, method: false }],
  ];
  for (const [line, want] of cases) {
    for (const chunks of [[`${line}\n`], splits(`${line}\n`)[0]!]) {
      const got = read(64, [...chunks, '{"id":8}\n']);
      assert.deepEqual(got, [{ ...want, bytes: Buffer.byteLength(line) }, '{"id":8}'], line);
    }
  }
});

test('memory stays bounded: a 64 MiB line in 64 KiB chunks keeps nothing of it', () => {
  const r = new BoundedLineReader(
    1024,
    () => assert.fail('no line'),
    (o) => assert.equal(o.bytes, 64 * 1024 * 1024 + 20),
  );
  const chunk = Buffer.alloc(64 * 1024, 'a');
  r.push(Buffer.from('{"id":1,"result":"'));
  const before = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 1024; i++) r.push(chunk);
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < 16 * 1024 * 1024, `grew by ${grown} bytes`);
  r.push(Buffer.from('"}\n'));
});
