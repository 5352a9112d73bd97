// The README's quick start, walked end to end with real MCP servers: `init` reads a Claude Desktop
// config and puts the gateway in front of its servers in shadow mode; the agent works through the
// gateway started exactly as the rewritten client config says (from `/`); `policy suggest` turns the
// recorded calls into a policy that validates strictly and replays with no newly denied call; with
// `mode: enforce` that policy refuses a write the agent never did before — the file is not written and
// the refusal is in the audit trail.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { parse } from 'yaml';

const exec = promisify(execFile);
const bin = new URL('../bin/execlayer.js', import.meta.url).pathname;
const require = createRequire(import.meta.url);
const filesystem = require.resolve('@modelcontextprotocol/server-filesystem/dist/index.js');
const memory = require.resolve('@modelcontextprotocol/server-memory/dist/index.js');

const root = mkdtempSync(join(tmpdir(), 'execlayer-quickstart-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function execlayer(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [bin, ...args], { timeout: 120_000, maxBuffer: 16 << 20 });
    return { code: 0, ...r };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** Starts what the client config says, as a desktop client does: only command, args and env, from `/`. */
async function agentFromClientConfig(file: string): Promise<Client> {
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as {
    mcpServers: Record<string, { command: string; args: string[] }>;
  };
  assert.deepEqual(Object.keys(cfg.mcpServers), ['execlayer']);
  const entry = cfg.mcpServers.execlayer as { command: string; args: string[] };
  const client = new Client({ name: 'claude-desktop', version: '1.0.0' });
  await client.connect(
    new StdioClientTransport({
      command: entry.command,
      args: entry.args,
      cwd: '/',
      env: { PATH: '/usr/bin:/bin' },
    }),
  );
  return client;
}

test('init → shadow → suggest → enforce, with the real filesystem and memory servers', async () => {
  const kb = join(root, 'kb');
  mkdirSync(kb);
  writeFileSync(join(kb, 'returns.md'), 'Returns within 30 days.\n');
  writeFileSync(join(kb, 'shipping.md'), 'Ships in 2 days.\n');
  const clientConfig = join(root, 'claude_desktop_config.json');
  writeFileSync(
    clientConfig,
    JSON.stringify({
      mcpServers: {
        files: { command: process.execPath, args: [filesystem, kb] },
        Memory: {
          command: process.execPath,
          args: [memory],
          env: { MEMORY_FILE_PATH: join(root, 'memory.jsonl') },
        },
      },
    }),
  );
  const gw = join(root, 'gw');

  // 1. init: gateway config, shadow policy naming every tool, client config rewritten after a backup.
  const init = await execlayer(['init', '--from', clientConfig, '--dir', gw, '--write', '--json']);
  assert.equal(init.code, 0, init.stderr);
  const summary = JSON.parse(init.stdout) as {
    upstreams: { name: string; tools: string[] }[];
    backup: string;
  };
  assert.deepEqual(
    summary.upstreams.map((u) => u.name),
    ['files', 'memory'],
  );
  assert.ok(summary.upstreams[0]?.tools.includes('write_file'));
  assert.ok(existsSync(summary.backup));
  assert.equal(statSync(join(gw, 'execlayer.yaml')).mode & 0o777, 0o600);
  const gatewayConfig = parse(readFileSync(join(gw, 'execlayer.yaml'), 'utf8')) as {
    upstreams: { memory: { env: Record<string, string> } };
  };
  assert.equal(gatewayConfig.upstreams.memory.env.MEMORY_FILE_PATH, join(root, 'memory.jsonl'));
  const starter = readFileSync(join(gw, 'policy.yaml'), 'utf8');
  assert.match(starter, /^mode: shadow$/m);
  assert.match(starter, /allow: "files\.write_file"/);
  assert.doesNotMatch(starter, /MEMORY_FILE_PATH/, 'secrets stay out of the policy');
  assert.equal((await execlayer(['validate', join(gw, 'policy.yaml')])).code, 0);

  // 2. shadow: the agent works through the gateway; every call runs and is recorded.
  let agent = await agentFromClientConfig(clientConfig);
  try {
    for (const f of ['returns.md', 'shipping.md']) {
      const r = await agent.callTool({ name: 'files.read_text_file', arguments: { path: join(kb, f) } });
      assert.equal(r.isError ?? false, false);
    }
    assert.equal(
      (await agent.callTool({ name: 'files.list_directory', arguments: { path: kb } })).isError ?? false,
      false,
    );
    assert.equal(
      (await agent.callTool({ name: 'memory.read_graph', arguments: {} })).isError ?? false,
      false,
    );
  } finally {
    await agent.close();
  }

  // 3. suggest: a least-privilege draft that validates strictly and replays with no newly denied call.
  const store = `sqlite:${join(gw, 'execlayer.db')}`;
  const draft = join(gw, 'suggested.yaml');
  const suggest = await execlayer(['policy', 'suggest', '--store', store, '--out', draft]);
  assert.equal(suggest.code, 0, suggest.stderr);
  const text = readFileSync(draft, 'utf8');
  assert.doesNotMatch(text, /write_file/, 'only tools the agent used');
  assert.match(text, /allow: files\.read_text_file\n\s+when: \{ path: \{ under: \[ .*kb \] \} \}/);
  assert.equal((await execlayer(['validate', '--strict', draft])).code, 0);
  const replay = await execlayer([
    'replay',
    '--policy',
    draft,
    '--store',
    store,
    '--fail-on',
    'newly-denied',
  ]);
  assert.equal(replay.code, 0, replay.stdout);

  // 4. enforce: the last step. A write the agent never did before is refused and recorded.
  writeFileSync(draft, text.replace(/^mode: shadow$/m, 'mode: enforce'));
  const configText = readFileSync(join(gw, 'execlayer.yaml'), 'utf8');
  writeFileSync(
    join(gw, 'execlayer.yaml'),
    configText.replace('policy: ./policy.yaml', 'policy: ./suggested.yaml'),
  );
  agent = await agentFromClientConfig(clientConfig);
  try {
    const read = await agent.callTool({
      name: 'files.read_text_file',
      arguments: { path: join(kb, 'returns.md') },
    });
    assert.equal(read.isError ?? false, false);
    const write = await agent.callTool({
      name: 'files.write_file',
      arguments: { path: join(kb, 'new.md'), content: 'x' },
    });
    assert.equal(write.isError, true);
    const outside = await agent.callTool({ name: 'files.read_text_file', arguments: { path: clientConfig } });
    assert.equal(outside.isError, true);
  } finally {
    await agent.close();
  }
  assert.equal(
    existsSync(join(kb, 'new.md')),
    false,
    'the refused write never reached the filesystem server',
  );
  assert.deepEqual(readdirSync(kb).sort(), ['returns.md', 'shipping.md']);
  const denied = await execlayer(['audit', 'query', '--store', store, '--effect', 'deny', '--json']);
  assert.equal(denied.code, 0, denied.stderr);
  assert.match(denied.stdout, /files\.write_file/);
  assert.equal((await execlayer(['audit', 'verify', '--store', store])).code === 1, false);
});
