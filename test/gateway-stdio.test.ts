/**
 * `execlayer mcp` as a real process over stdio: the SDK client end to end, and raw bad input line by line
 * (batches, duplicate/missing/null ids, unknown methods, oversized messages, invalid UTF-8, calls before
 * initialize, `__proto__` keys). Uses the SQLite store, so pins and the audit trail are real files.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { FILESYSTEM, REPO, text } from './gateway-helpers.js';

const dir = realpathSync(mkdtempSync(join(tmpdir(), 'gw-stdio-')));
const kb = join(dir, 'kb');
const out = join(kb, 'out');
const cfgFile = join(dir, 'execlayer.yaml');
const CLI = ['--import', 'tsx', join(REPO, 'test/fixtures/cli.ts')];

before(() => {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(kb, 'a.txt'), 'alpha\n');
  writeFileSync(
    join(dir, 'policy.yaml'),
    `version: 1
agents:
  desk:
    owner: ops@example.com
    purpose: desktop assistant
    roles: [desk]
roles:
  desk:
    - id: read
      allow: [files.read_text_file, files.list_directory]
      when: { path: { under: [${kb}] } }
    - id: write-out
      allow: files.write_file
      when: { path: { under: [${out}] } }
`,
  );
  writeFileSync(
    cfgFile,
    `policy: ./policy.yaml
store: sqlite:./state/execlayer.db
agent: desk
upstreams:
  files:
    command: ${process.execPath}
    args: [${FILESYSTEM}, ${kb}]
limits:
  maxMessageBytes: 4096
`,
  );
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('the SDK client talks to `execlayer mcp` over stdio: list, allowed call, denied call', async () => {
  const client = new Client({ name: 'desktop', version: '1.0.0' });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [...CLI, 'mcp', '--config', cfgFile],
      cwd: REPO,
      stderr: 'ignore',
    }),
  );
  try {
    assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), [
      'files.list_directory',
      'files.read_text_file',
      'files.write_file',
    ]);
    assert.equal(
      text(await client.callTool({ name: 'files.read_text_file', arguments: { path: join(kb, 'a.txt') } })),
      'alpha\n',
    );
    const denied = await client.callTool({
      name: 'files.write_file',
      arguments: { path: join(kb, 'x.txt'), content: 'x' },
    });
    assert.equal(denied.isError, true);
    assert.equal(existsSync(join(kb, 'x.txt')), false);
  } finally {
    await client.close();
  }
  // The pins went into the SQLite store file; `execlayer tools list` reads them from there.
  const r = spawnSync(process.execPath, [...CLI, 'tools', 'list', '--config', cfgFile, '--json'], {
    cwd: REPO,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const tools = (JSON.parse(r.stdout) as { tools: Array<{ tool: string; status: string }> }).tools;
  assert.ok(tools.some((t) => t.tool === 'files.write_file' && t.status === 'pinned'));
  const approve = spawnSync(
    process.execPath,
    [...CLI, 'tools', 'approve', 'files.write_file', '--config', cfgFile],
    {
      cwd: REPO,
      encoding: 'utf8',
    },
  );
  assert.equal(approve.status, 4, 'nothing to approve: exit 4');
  assert.match(approve.stderr, /no changed definition/);
});

/** A raw line-oriented peer of the gateway process. */
class Raw {
  readonly proc: ChildProcessWithoutNullStreams;
  private buf = '';
  readonly messages: Array<Record<string, unknown>> = [];
  private waiters: Array<() => void> = [];

  constructor(agentFlag: string[] = []) {
    this.proc = spawn(process.execPath, [...CLI, 'mcp', '--config', cfgFile, ...agentFlag], { cwd: REPO });
    this.proc.stdout.on('data', (c: Buffer) => {
      this.buf += c.toString('utf8');
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (line.trim()) this.messages.push(JSON.parse(line));
        for (const w of this.waiters.splice(0)) w();
      }
    });
  }

  write(data: string | Buffer): void {
    this.proc.stdin.write(data);
  }

  send(msg: unknown): void {
    this.write(`${JSON.stringify(msg)}\n`);
  }

  async next(
    pred: (m: Record<string, unknown>) => boolean,
    timeoutMs = 15_000,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex(pred);
      if (i >= 0) return this.messages.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error(`no matching message; got ${JSON.stringify(this.messages)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  byId(id: unknown) {
    return this.next((m) => m.id === id);
  }

  async initialize(): Promise<void> {
    this.send({
      jsonrpc: '2.0',
      id: 'init',
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    });
    const r = await this.byId('init');
    assert.ok(r.result, JSON.stringify(r));
    this.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  async close(): Promise<number | null> {
    this.proc.stdin.end();
    return new Promise((r) => this.proc.once('exit', (code) => r(code)));
  }
}

function errorOf(m: Record<string, unknown>): { code: number; message: string } {
  return m.error as { code: number; message: string };
}

test('bad input over stdio gets JSON-RPC errors and never reaches the upstream', async () => {
  const raw = new Raw();
  try {
    // Before initialize.
    raw.send({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    assert.equal(errorOf(await raw.byId(1)).code, -32600);
    raw.send({
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'files.write_file', arguments: { path: join(out, 'early.txt'), content: 'x' } },
    });
    assert.match(errorOf(await raw.byId(2)).message, /before `initialize`/);

    await raw.initialize();
    raw.send({
      jsonrpc: '2.0',
      id: 'again',
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    });
    assert.match(errorOf(await raw.byId('again')).message, /already initialized/);

    // Invalid UTF-8, unparsable JSON, batches, null ids: errors with id null (or the id when known).
    raw.write(
      Buffer.concat([
        Buffer.from('{"jsonrpc":"2.0","id":3,"method":"ping","params":{"x":"'),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('"}}\n'),
      ]),
    );
    assert.match(errorOf(await raw.next((m) => m.id === null)).message, /not valid utf-8/);
    raw.write('{"jsonrpc":"2.0","id":4,"method":\n');
    assert.equal(errorOf(await raw.next((m) => m.id === null)).code, -32700);
    raw.send([{ jsonrpc: '2.0', id: 5, method: 'ping' }]);
    assert.match(errorOf(await raw.next((m) => m.id === null)).message, /batches are not supported/);
    raw.send({ jsonrpc: '2.0', id: null, method: 'ping' });
    assert.match(errorOf(await raw.next((m) => m.id === null)).message, /invalid request id/);

    // Oversized message (limit 4096 bytes in the config).
    raw.send({
      jsonrpc: '2.0',
      id: 6,
      method: 'tools/call',
      params: {
        name: 'files.write_file',
        arguments: { path: join(out, 'big.txt'), content: 'x'.repeat(10_000) },
      },
    });
    assert.match(errorOf(await raw.next((m) => m.id === null)).message, /exceeds the limit of 4096 bytes/);
    assert.equal(existsSync(join(out, 'big.txt')), false);

    // Unknown method.
    raw.send({ jsonrpc: '2.0', id: 7, method: 'files/delete_everything', params: {} });
    assert.equal(errorOf(await raw.byId(7)).code, -32601);

    // Malformed tools/call params (arguments not an object, name not a string) are refused with
    // invalid-params and a reason, and never run.
    raw.send({
      jsonrpc: '2.0',
      id: 71,
      method: 'tools/call',
      params: { name: 'files.write_file', arguments: [join(out, 'array.txt'), 'x'] },
    });
    assert.deepEqual(errorOf(await raw.byId(71)), {
      code: -32602,
      message: 'invalid tools/call request: `params.arguments` must be an object',
    });
    raw.send({ jsonrpc: '2.0', id: 72, method: 'tools/call', params: { name: 5, arguments: {} } });
    assert.deepEqual(errorOf(await raw.byId(72)), {
      code: -32602,
      message: 'invalid tools/call request: `params.name` must be a string',
    });
    assert.equal(existsSync(join(out, 'array.txt')), false);
    // Every other method with malformed params: invalid-params naming the field, not an internal error.
    const malformed: Array<[string, unknown, RegExp]> = [
      ['resources/read', { uri: 5 }, /^invalid resources\/read request: `params\.uri`: .*expected string/],
      ['prompts/get', { arguments: {} }, /^invalid prompts\/get request: `params\.name`: .*expected string/],
      ['logging/setLevel', { level: 'loud' }, /^invalid logging\/setLevel request: `params\.level`: /],
      [
        'completion/complete',
        { ref: { type: 'ref/none' } },
        /^invalid completion\/complete request: `params\./,
      ],
      ['tools/list', { cursor: 7 }, /^invalid tools\/list request: `params\.cursor`: /],
    ];
    for (const [i, [method, params, message]] of malformed.entries()) {
      raw.send({ jsonrpc: '2.0', id: 80 + i, method, params });
      const e = errorOf(await raw.byId(80 + i));
      assert.equal(e.code, -32602, `${method}: ${JSON.stringify(e)}`);
      assert.match(e.message, message);
    }

    // Missing id: a tools/call without id is a notification; it is never executed.
    raw.send({
      jsonrpc: '2.0',
      method: 'tools/call',
      params: { name: 'files.write_file', arguments: { path: join(out, 'noid.txt'), content: 'x' } },
    });
    raw.send({ jsonrpc: '2.0', id: 8, method: 'ping' });
    assert.deepEqual((await raw.byId(8)).result, {});
    assert.equal(existsSync(join(out, 'noid.txt')), false);

    // Duplicate in-flight ids: the second is refused, the first is answered once.
    const call = (id: number, file: string) =>
      JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name: 'files.write_file', arguments: { path: join(out, file), content: file } },
      });
    raw.write(`${call(9, 'dup-a.txt')}\n${call(9, 'dup-b.txt')}\n`);
    assert.match(errorOf(await raw.next((m) => m.id === null)).message, /already in use/);
    const first = await raw.byId(9);
    assert.ok(first.result);
    assert.equal(existsSync(join(out, 'dup-a.txt')), true);
    assert.equal(existsSync(join(out, 'dup-b.txt')), false);

    // __proto__ keys: refused before any parse could drop them.
    raw.write(
      `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"files.write_file","arguments":{"__proto__":{"path":"/etc/x"},"path":${JSON.stringify(join(out, 'proto.txt'))},"content":"x"}}}\n`,
    );
    assert.match(errorOf(await raw.byId(10)).message, /`__proto__` is not allowed/);
    assert.equal(existsSync(join(out, 'proto.txt')), false);

    // After all that the session still works.
    raw.send({
      jsonrpc: '2.0',
      id: 11,
      method: 'tools/call',
      params: { name: 'files.read_text_file', arguments: { path: join(kb, 'a.txt') } },
    });
    assert.equal(
      ((await raw.byId(11)).result as { content: Array<{ text: string }> }).content[0]?.text,
      'alpha\n',
    );
  } finally {
    assert.equal(await raw.close(), 0, 'closing stdin stops the gateway with exit 0');
  }
});

test('`execlayer mcp` refuses to start without an agent id, with an invalid config, or with --help', () => {
  const bare = join(dir, 'noagent.yaml');
  writeFileSync(bare, 'policy: ./policy.yaml\nstore: "memory:"\n');
  const r = spawnSync(process.execPath, [...CLI, 'mcp', '--config', bare], { cwd: REPO, encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no agent id/);
  const badCfg = join(dir, 'bad.yaml');
  writeFileSync(badCfg, 'policy: ./policy.yaml\nupstream: {}\n');
  const b = spawnSync(process.execPath, [...CLI, 'mcp', '--config', badCfg, '--agent', 'desk'], {
    cwd: REPO,
    encoding: 'utf8',
  });
  assert.equal(b.status, 1);
  assert.match(b.stderr, /bad\.yaml:2:1: error: unknown key `upstream`/);
  const h = spawnSync(process.execPath, [...CLI, 'mcp', '--help'], { cwd: REPO, encoding: 'utf8' });
  assert.equal(h.status, 0);
  assert.match(h.stdout, /mcpServers/);
});
